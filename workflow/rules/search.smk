# `snakemake search` (not part of the default run): rounds of search.per_round new models, each
# proposed from the models before it (round 0: the zoo), trained by the `train` rule. A recorded
# round (results/search/<name>/round<k>.json) is frozen: the step keeps it, so a later change of
# sigma or of the map redraws the figures but never redraws or retrains an earlier round.


checkpoint search_round:
    input:
        manifests=lambda w: [P.train_manifest(b) for b in search_batches(int(w.round))],
        probe=P.probe,
    output:
        P.search_batches(S.search.name, "{round}"),
    log:
        P.log("search", "round{round}"),
    benchmark:
        P.benchmark("search", "round{round}")
    wildcard_constraints:
        round="[1-9][0-9]*",
    conda:
        "../../envs/analysis.yaml"
    params:
        batches=lambda w: search_batches(int(w.round)),
        search=S.search.identity_json(),
        config=ZOO_IDENTITY,
        geometry=S.geometry.identity_json(),
        embedding=S.embedding.identity_json(),
    shell:
        step(
            "search-round",
            flags(models_per_job=PER_JOB),
            "--round {wildcards.round} --config {params.config:q}",
            SEARCH_RUN,
            "> {log:q} 2>&1",
        )


rule search_report:
    input:
        manifests=lambda w: [
            P.train_manifest(b) for b in search_batches(S.search.rounds + 1)
        ],
        probe=P.probe,
    output:
        progress=report(
            P.search_table(S.search.name, "progress"),
            caption="../report/search_table.rst",
            category="Search",
        ),
        models=P.search_table(S.search.name, "models"),
        progress_figure=report(
            P.search_figure(S.search.name, "progress"),
            caption="../report/search_progress.rst",
            category="Search",
        ),
        map=report(
            P.search_figure(S.search.name, "map"),
            caption="../report/search_map.rst",
            category="Search",
        ),
    log:
        P.log("search", "report"),
    benchmark:
        P.benchmark("search", "report")
    conda:
        "../../envs/analysis.yaml"
    params:
        batches=lambda w: search_batches(S.search.rounds + 1),
        search=S.search.identity_json(),
        geometry=S.geometry.identity_json(),
        embedding=S.embedding.identity_json(),
    shell:
        step("search-report", SEARCH_RUN, "> {log:q} 2>&1")


rule search:
    input:
        search_targets(),


# `snakemake search_benchmark`: guided vs TPE vs random search at an equal budget, with the
# trained zoo as the oracle (table mode); its own target, not part of the default run.
rule search_benchmark:
    input:
        distances=P.distances,
        manifests=train_manifests(),
    output:
        table=report(
            P.search_benchmark("table.csv"),
            caption="../report/search_benchmark_table.rst",
            category="Search",
        ),
        curves=report(
            P.search_benchmark("curves.png"),
            caption="../report/search_benchmark_curves.rst",
            category="Search",
        ),
    log:
        P.log("search_benchmark"),
    benchmark:
        P.benchmark("search_benchmark")
    conda:
        "../../envs/analysis.yaml"
    params:
        batches=list(BATCHES),
        benchmark=S.search_benchmark.identity_json(),
    shell:
        step("search-benchmark")
        + " --batches {params.batches:q} --benchmark {params.benchmark:q} > {log:q} 2>&1"
