# `snakemake sensitivity`, and part of the default run unless sensitivity.in_default_run is false.
# Reuses the activations; recomputes operators and distances for every setting.
rule sensitivity:
    input:
        manifests=network_manifests(),
        probe=P.probe,
    output:
        table=P.stats("sensitivity"),
        figure=report(
            P.figure("sensitivity"),
            caption="../report/sensitivity.rst",
            category="Informativeness",
        ),
    log:
        P.log("sensitivity"),
    benchmark:
        P.benchmark("sensitivity")
    conda:
        "../../envs/analysis.yaml"
    params:
        batches=list(MAP_BATCHES),
        sensitivity=S.sensitivity.identity_json(),
        stats=S.stats.identity_json(),
    shell:
        step("sensitivity") + " --batches {params.batches:q}"
        " --sensitivity {params.sensitivity:q} --stats {params.stats:q} > {log:q} 2>&1"
