rule stats:
    input:
        embedding=f"{R}/geometry/embedding.csv",
        distances=f"{R}/geometry/distances.h5",
    output:
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
        " --stats {params.stats:q} --correlations {output.correlations}"
        " --informativeness {output.informativeness} > {log} 2>&1"
