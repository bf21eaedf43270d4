# Per-model characterisation, one job per training job: results/models/<id>/features.json and
# diagrams.npz, plus the job's manifest of feature values.
rule features:
    input:
        manifest=lambda w: P.network_manifest(w.batch),
        probe=P.probe,
        previous=previous_outputs("features"),
    output:
        P.features_manifest("{batch}"),
    log:
        P.log("features", "{batch}"),
    benchmark:
        P.benchmark("features", "{batch}")
    # before the map-level jobs that do not need it (baselines, distances): the Wasserstein
    # distances and the embeddings wait for it
    priority: 20
    conda:
        "../../envs/analysis.yaml"
    threads: JOB_THREADS
    params:
        rerun_mark=rerun_mark("features"),
        geometry=S.geometry.identity_json(),
        features=S.features.identity_json(),
    shell:
        step("features", GEOMETRY_RUN)
        + " --batch {wildcards.batch:q} --geometry {params.geometry:q}"
        " --features {params.features:q} --threads {threads} > {log:q} 2>&1"
