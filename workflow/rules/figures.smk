rule figures:
    input:
        embedding=P.embedding,
        distances=P.distances,
        correlations=P.stats("feature_correlations"),
        informativeness=P.stats("map_informativeness"),
        topology_map=P.wasserstein_embedding,
        features=feature_manifests(),
        baseline_maps=[P.embedding_of(k) for k in S.baselines.distances],
    output:
        **{
            name: report(
                P.figure(name), caption=f"../report/{name}.rst", category=category
            )
            for name, category in FIGURES.items()
        },
    log:
        P.log("figures"),
    benchmark:
        P.benchmark("figures")
    conda:
        "../../envs/analysis.yaml"
    # the last job of a run: its figures render side by side on the cores left free
    threads: min(workflow.cores, 4)
    resources:
        **zoo_resources(4, 4000, 20, 1),
    params:
        baselines=list(S.baselines.distances),
    shell:
        step("figures")
        + " --baselines {params.baselines:q} --threads {threads} > {log:q} 2>&1"


rule interactive_map:
    input:
        embedding=P.embedding,
        topology_map=P.wasserstein_embedding,
        excluded=P.excluded,
        placed=lambda wildcards: [P.placed] if place_manifests() else [],
    output:
        report(
            P.interactive_map, caption="../report/interactive_map.rst", category="Map"
        ),
    log:
        P.log("interactive_map"),
    benchmark:
        P.benchmark("interactive_map")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **zoo_resources(0, 2000, 10, 0),
    shell:
        step("map") + " > {log:q} 2>&1"
