# One job trains a few models in one process (train.models_per_job); outputs stay per model under
# results/models/<id>/ and the job's manifest lists them. A job is named by its members' ids and
# gets their specs as a parameter, so editing one model's spec reruns only the job that holds it.
rule train:
    input:
        probe=P.probe,
        previous=previous_outputs("train"),
    output:
        P.train_manifest("{batch}"),
    log:
        P.log("train", "{batch}"),
    benchmark:
        P.benchmark("train", "{batch}")
    conda:
        "../../envs/train.yaml"
    threads: S.train.threads
    resources:
        gpu=train_gpus(),
    params:
        rerun_mark=rerun_mark("train"),
        specs=lambda w: canonical_json(job_specs(w.batch)),
    shell:
        step("train", DATA_ACCESS, TRAIN_RUN)
        + " --batch {wildcards.batch:q} --specs {params.specs:q} --threads {threads} > {log:q} 2>&1"


rule trained:
    input:
        P.zoo,
        train_manifests(),
