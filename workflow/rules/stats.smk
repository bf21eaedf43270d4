rule stats:
    input:
        embedding=f"{R}/geometry/embedding.csv",
        distances=f"{R}/geometry/distances.h5",
        probe=f"{R}/probe.h5",
    output:
        summary=report(
            f"{R}/stats/zoo_summary.csv",
            caption="../report/zoo_summary.rst",
            category="Summary",
        ),
        correlations=report(
            f"{R}/stats/feature_correlations.csv",
            caption="../report/feature_correlations.rst",
            category="Informativeness",
        ),
        informativeness=report(
            f"{R}/stats/map_informativeness.csv",
            caption="../report/map_informativeness.rst",
            category="Informativeness",
        ),
    log:
        f"{R}/logs/stats.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        stats=as_param(config["stats"]),
    shell:
        "python -m nnmanifold stats --embedding {input.embedding} --distances {input.distances}"
        " --stats {params.stats:q} --probe {input.probe} --summary {output.summary}"
        " --correlations {output.correlations}"
        " --informativeness {output.informativeness} > {log} 2>&1"
