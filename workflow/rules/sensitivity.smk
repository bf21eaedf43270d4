# Not in the default run: `snakemake sensitivity` (reuses the activations; recomputes operators).
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
        sensitivity=json.dumps(config["sensitivity"]),
        stats=json.dumps(config["stats"]),
    shell:
        "python -m nnmanifold sensitivity --manifests {input.manifests} --probe {input.probe}"
        " --results {params.results} --sensitivity {params.sensitivity:q}"
        " --stats {params.stats:q} --out {output.table} --figure {output.figure} > {log} 2>&1"
