# A training or extraction job's specs as a file: a job of hundreds of networks holds more than one
# shell argument can (128 KiB). Written in the Snakemake process, and rewritten only when a
# member's spec changes (a parameter), which reruns the job that holds it and no other.
rule job_specs:
    output:
        P.job_specs("{batch}"),
    log:
        P.log("job_specs", "{batch}"),
    localrule: True
    params:
        specs=lambda w: canonical_json(specs_of_job(w.batch)),
    run:
        jobs.write_specs(output[0], log[0], params.specs)


# One job trains many models in one process (train.models_per_job); outputs stay per model under
# results/models/<id>/ and the job's manifest lists them. A job is named by its members' ids.
rule train:
    input:
        probe=P.probe,
        specs=P.job_specs("{batch}"),
        previous=previous_outputs("train"),
    output:
        P.train_manifest("{batch}"),
    log:
        P.log("train", "{batch}"),
    benchmark:
        P.benchmark("train", "{batch}")
    # training first: everything after it waits for the last training job
    priority: 30
    conda:
        "../../envs/train.yaml"
    threads: train_threads
    resources:
        gpu=train_gpus(),
    params:
        rerun_mark=rerun_mark("train"),
    shell:
        step("train", DATA_ACCESS, TRAIN_RUN)
        + " --batch {wildcards.batch:q} --specs {input.specs:q} --threads {threads} > {log:q} 2>&1"


rule trained:
    input:
        P.zoo,
        train_manifests(),
