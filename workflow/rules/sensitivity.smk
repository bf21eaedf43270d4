# `snakemake sensitivity`, and part of the default run unless sensitivity.in_default_run is false.
# Reuses the activations; recomputes operators and distances for every setting.
rule sensitivity:
    input:
        manifests=train_manifests(),
        probe=f"{R}/probe.h5",
    output:
        table=f"{R}/stats/sensitivity.csv",
        figure=report(
            f"{R}/figures/sensitivity.png",
            caption="../report/sensitivity.rst",
            category="Informativeness",
        ),
    log:
        f"{R}/logs/sensitivity.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        results=lambda w, input: Path(input.probe).parent,
        models=MODEL_IDS,
        sensitivity=as_param(
            {k: v for k, v in config["sensitivity"].items() if k != "in_default_run"}
        ),
        stats=as_param(config["stats"]),
    shell:
        "python -m nnmanifold sensitivity --manifests {input.manifests} --probe {input.probe}"
        " --results {params.results} --sensitivity {params.sensitivity:q}"
        " --stats {params.stats:q} --out {output.table} --figure {output.figure} > {log} 2>&1"
