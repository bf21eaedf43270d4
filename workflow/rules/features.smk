# Per-model characterisation, one job per training job: results/models/<id>/features.json and
# diagrams.npz, plus the job's manifest of feature values.
rule features:
    input:
        manifest=f"{R}/train/{{batch}}.json",
        probe=f"{R}/probe.h5",
        previous=previous_outputs("features.json", "diagrams.npz"),
    output:
        f"{R}/features/{{batch}}.json",
    log:
        f"{R}/logs/features/{{batch}}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        results=lambda w, input: Path(input.probe).parent,
        geometry=OPERATOR_PARAM,
        features=as_param(config["features"]),
    shell:
        "python -m nnmanifold features --manifest {input.manifest} --probe {input.probe}"
        " --results {params.results} --geometry {params.geometry:q}"
        " --features {params.features:q} --out {output} > {log} 2>&1"
