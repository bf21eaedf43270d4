rule stats:
    input:
        embedding=P.embedding,
        distances=P.distances,
        probe=P.probe,
        baselines=[P.distances_of(k) for k in S.baselines.distances],
    output:
        summary=report(
            P.stats("zoo_summary"),
            caption="../report/zoo_summary.rst",
            category="Summary",
        ),
        correlations=report(
            P.stats("feature_correlations"),
            caption="../report/feature_correlations.rst",
            category="Informativeness",
        ),
        informativeness=report(
            P.stats("map_informativeness"),
            caption="../report/map_informativeness.rst",
            category="Informativeness",
        ),
        comparison=report(
            P.stats("distance_comparison"),
            caption="../report/distance_comparison.rst",
            category="Informativeness",
        ),
        landing_page=P.report_metadata,
    log:
        P.log("stats"),
    benchmark:
        P.benchmark("stats")
    priority: 15  # on the way to the figures (see rule baselines)
    conda:
        "../../envs/analysis.yaml"
    resources:
        **zoo_resources(6, 2000, 10, 20),
    params:
        stats=S.stats.identity_json(),
        baselines=list(S.baselines.distances),
    shell:
        step("stats") + " --stats {params.stats:q} --baselines {params.baselines:q}"
        " > {log:q} 2>&1"
