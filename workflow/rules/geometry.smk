# Zoo-level geometry: the network distance matrix (cached, incremental), its PHATE map, and the
# second distance between persistence diagrams. The distance cache under
# results/cache/ is not an output: Snakemake would delete it before a rerun.
rule distances:
    input:
        manifests=map_manifests,
        probe=P.probe,
    output:
        distances=P.distances,
        excluded=report(P.excluded, caption="../report/excluded.rst", category="Zoo"),
        diagnostics=P.kernel_diagnostics,
    log:
        P.log("distances"),
    benchmark:
        P.benchmark("distances")
    priority: 15  # on the way to the statistics (see rule baselines)
    conda:
        "../../envs/analysis.yaml"
    resources:
        **zoo_resources(
            4, 1000 + S.geometry.memory_budget_mb, 10, S.data.n_probe**2 / 1e4
        ),
    params:
        batches=list(MAP_BATCHES),
        geometry=S.geometry.identity_json(),
    shell:
        step("distances", GEOMETRY_RUN)
        + " --batches {params.batches:q} --geometry {params.geometry:q} > {log:q} 2>&1"


rule embedding:
    input:
        distances=P.distances,
        zoo=P.zoo,
        manifests=network_manifests(),
        features=feature_manifests(),
    output:
        P.embedding,
    log:
        P.log("embedding"),
    benchmark:
        P.benchmark("embedding")
    priority: 15  # on the way to the statistics (see rule baselines)
    conda:
        "../../envs/analysis.yaml"
    resources:
        **zoo_resources(8, 2000, 10, 1),
    params:
        batches=list(MAP_BATCHES),
        embedding=S.embedding.identity_json(),
    shell:
        step("embed") + " --batches {params.batches:q}"
        " --embedding {params.embedding:q} > {log:q} 2>&1"


rule wasserstein:
    input:
        feature_manifests(),
    output:
        P.wasserstein,
    log:
        P.log("wasserstein"),
    benchmark:
        P.benchmark("wasserstein")
    # the longest map-level job, so among the first to start once the features are in; on half
    # the cores, so that the one-core jobs (baselines, distances, statistics) run beside it
    priority: 10
    conda:
        "../../envs/analysis.yaml"
    threads: max(1, workflow.cores // 2)
    resources:
        **zoo_resources(2, 2000, 10, 100),
    params:
        batches=list(MAP_BATCHES),
        wasserstein=S.wasserstein.identity_json(),
    shell:
        step("wasserstein")
        + " --batches {params.batches:q} --wasserstein {params.wasserstein:q}"
        " --threads {threads} > {log:q} 2>&1"


rule wasserstein_embedding:
    input:
        distances=P.wasserstein,
        zoo=P.zoo,
        manifests=network_manifests(),
        features=feature_manifests(),
    output:
        P.wasserstein_embedding,
    log:
        P.log("wasserstein_embedding"),
    benchmark:
        P.benchmark("wasserstein_embedding")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **zoo_resources(8, 2000, 10, 1),
    params:
        batches=list(MAP_BATCHES),
        embedding=S.embedding.identity_json(),
    shell:
        step("embed") + " --distances wasserstein --batches {params.batches:q}"
        " --embedding {params.embedding:q} > {log:q} 2>&1"


# Standard representation-similarity distances (baselines.distances), compared in the statistics:
# one job for all of them, which reads each network's representations once.
if S.baselines.distances:

    rule baselines:
        input:
            manifests=network_manifests(),
            probe=P.probe,
        output:
            [P.distances_of(kind) for kind in S.baselines.distances],
        log:
            P.log("baselines"),
        benchmark:
            P.benchmark("baselines")
        # ahead of the Wasserstein job, as every input of the statistics: the figures wait for
        # the statistics, which wait for Procrustes (the longest one-core computation)
        priority: 15
        conda:
            "../../envs/analysis.yaml"
        resources:
            **zoo_resources(4, 1000 + S.geometry.memory_budget_mb, 10, 500),
        params:
            batches=list(MAP_BATCHES),
            representation=canonical_json(S.geometry.representation_identity()),
            baselines=S.baselines.identity_json(),
        shell:
            step("baselines", GEOMETRY_RUN, flags(geometry=S.geometry.identity_json()))
            + " --batches {params.batches:q} --baselines {params.baselines:q} > {log:q} 2>&1"

    # the baselines' maps in one job: PHATE's imports (2.5 s) paid once
    rule baseline_embeddings:
        input:
            distances=[P.distances_of(kind) for kind in S.baselines.distances],
            zoo=P.zoo,
            manifests=network_manifests(),
            features=feature_manifests(),
        output:
            [P.embedding_of(kind) for kind in S.baselines.distances],
        log:
            P.log("baseline_embeddings"),
        benchmark:
            P.benchmark("baseline_embeddings")
        conda:
            "../../envs/analysis.yaml"
        resources:
            **zoo_resources(8, 2000, 10, 1),
        params:
            batches=list(MAP_BATCHES),
            kinds=list(S.baselines.distances),
            embedding=S.embedding.identity_json(),
        shell:
            step("embed")
            + " --distances {params.kinds:q} --batches {params.batches:q}"
            " --embedding {params.embedding:q} > {log:q} 2>&1"
