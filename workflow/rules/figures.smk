rule figures:
    input:
        embedding=f"{R}/geometry/embedding.csv",
        distances=f"{R}/geometry/distances.h5",
        correlations=f"{R}/stats/feature_correlations.csv",
        informativeness=f"{R}/stats/map_informativeness.csv",
        topology_map=f"{R}/geometry/wasserstein_embedding.csv",
    output:
        summary=report(
            f"{R}/figures/summary.png",
            caption="../report/summary.rst",
            category="Summary",
        ),
        map_accuracy=report(
            f"{R}/figures/map_accuracy.png",
            caption="../report/map_accuracy.rst",
            category="Map",
        ),
        map_features=report(
            f"{R}/figures/map_features.png",
            caption="../report/map_features.rst",
            category="Map",
        ),
        map_hyperparameters=report(
            f"{R}/figures/map_hyperparameters.png",
            caption="../report/map_hyperparameters.rst",
            category="Map",
        ),
        features_vs_accuracy=report(
            f"{R}/figures/features_vs_accuracy.png",
            caption="../report/features_vs_accuracy.rst",
            category="Features",
        ),
        distance_heatmap=report(
            f"{R}/figures/distance_heatmap.png",
            caption="../report/distance_heatmap.rst",
            category="Distances",
        ),
        persistence=report(
            f"{R}/figures/persistence.png",
            caption="../report/persistence.rst",
            category="Features",
        ),
        informativeness=report(
            f"{R}/figures/informativeness.png",
            caption="../report/informativeness.rst",
            category="Informativeness",
        ),
        map_topology=report(
            f"{R}/figures/map_topology.png",
            caption="../report/map_topology.rst",
            category="Map",
        ),
    log:
        f"{R}/logs/figures.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        results=lambda w, input: Path(input.embedding).parents[1],
        out=lambda w, output: Path(output.summary).parent,
    shell:
        "python -m nnmanifold figures --embedding {input.embedding}"
        " --distances {input.distances} --correlations {input.correlations}"
        " --informativeness {input.informativeness} --topology-map {input.topology_map}"
        " --results {params.results} --out {params.out} > {log} 2>&1"
