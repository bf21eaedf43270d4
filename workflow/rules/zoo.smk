rule zoo:
    output:
        f"{R}/zoo.csv",
    params:
        config=json.dumps(config),
    log:
        f"{R}/logs/zoo.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m nnmanifold zoo --config {params.config:q} --out {output} > {log} 2>&1"


rule probe:
    output:
        f"{R}/probe.h5",
    params:
        data=json.dumps(config["data"]),
    log:
        f"{R}/logs/probe.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m nnmanifold probe --data {params.data:q} --out {output} > {log} 2>&1"
