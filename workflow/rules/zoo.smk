# The zoo table lists the initial zoo and the models of every recorded search round.
rule zoo:
    input:
        rounds=[
            P.search_round(S.search.name, k)
            for k in range(1, len(jobs.recorded_rounds(P, S.search.name)) + 1)
        ],
    output:
        P.zoo,
    log:
        P.log("zoo"),
    benchmark:
        P.benchmark("zoo")
    conda:
        "../../envs/train.yaml"
    params:
        config=ZOO_IDENTITY,
    shell:
        step("zoo", flags(search=S.search.name))
        + " --config {params.config:q} > {log:q} 2>&1"


rule probe:
    output:
        P.probe,
    log:
        P.log("probe"),
    benchmark:
        P.benchmark("probe")
    conda:
        "../../envs/train.yaml"
    params:
        data=S.data.identity_json(),
        archs=config["zoo"]["space"]["arch"],
    shell:
        step("probe", DATA_ACCESS) + " --data {params.data:q}"
        " --archs {params.archs:q} > {log:q} 2>&1"


rule provenance:
    output:
        P.provenance,
    log:
        P.log("provenance"),
    benchmark:
        P.benchmark("provenance")
    conda:
        "../../envs/train.yaml"
    params:
        config=canonical_json(config),
    shell:
        step("provenance") + " --config {params.config:q} > {log:q} 2>&1"


# `snakemake verify`: hash every per-model file the finished jobs list; a job with a failed file
# (deleted, truncated, corrupted) is marked to run again (nnmanifold verify --help).
rule verify:
    log:
        P.log("verify"),
    conda:
        "../../envs/analysis.yaml"
    params:
        batches=list(BATCHES),
    shell:
        step("verify") + " --batches {params.batches:q} 2>&1 | tee {log:q}"
