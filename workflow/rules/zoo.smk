rule zoo:
    output:
        f"{R}/zoo.csv",
    log:
        f"{R}/logs/zoo.log",
    conda:
        "../../envs/train.yaml"
    params:
        config=as_param(
            {
                "zoo": config["zoo"],
                "data": zoo_lib.data_identity(config["data"]),
                "code_version": config["code_version"],
            }
        ),
    shell:
        "python -m nnmanifold zoo --config {params.config:q} --out {output} > {log} 2>&1"


rule probe:
    output:
        f"{R}/probe.h5",
    log:
        f"{R}/logs/probe.log",
    conda:
        "../../envs/train.yaml"
    params:
        data=DATA_PARAM,
        access=DATA_ACCESS,
        archs=config["zoo"]["space"]["arch"],
    shell:
        "python -m nnmanifold probe --data {params.data:q} {params.access} --archs {params.archs:q}"
        " --out {output}"
        " > {log} 2>&1"


rule provenance:
    output:
        f"{R}/provenance.json",
    log:
        f"{R}/logs/provenance.log",
    conda:
        "../../envs/train.yaml"
    params:
        config=as_param(config),
    shell:
        "python -m nnmanifold provenance --config {params.config:q} --out {output} > {log} 2>&1"
