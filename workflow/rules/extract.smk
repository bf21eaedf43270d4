# Networks trained elsewhere (config `networks` and `place`): one job records a few networks'
# chosen layer on the probe set, and their accuracy, into results/models/<id>/ as training jobs
# do (train.models_per_job networks a job, on train.accelerator). A job reads its networks' specs,
# file hashes included, from its job_specs file (train.smk): a changed file reruns its job, which
# keeps the others.
rule extract:
    input:
        probe=P.probe,
        specs=P.job_specs("{batch}"),
        previous=previous_outputs("extract"),
    output:
        P.extract_manifest("{batch}"),
    log:
        P.log("extract", "{batch}"),
    conda:
        "../../envs/train.yaml"
    threads: JOB_THREADS
    resources:
        gpu=train_gpus(),
    shell:
        step("extract", DATA_ACCESS, TRAIN_RUN)
        + " --batch {wildcards.batch:q} --networks {input.specs:q} --threads {threads}"
        " > {log:q} 2>&1"


use rule extract as extract_place with:
    input:
        probe=P.probe,
        specs=P.job_specs("{batch}"),
        previous=previous_outputs("place"),
    output:
        P.place_manifest("{batch}"),
    log:
        P.log("extract_place", "{batch}"),


rule extracted:
    input:
        [P.extract_manifest(b) for b in NETWORK_BATCHES],
        place_manifests(),
