# One job trains a few models in one process (train.models_per_job); outputs stay per model under
# results/models/<id>/, and the job's manifest lists them. The zoo table is `ancient`: editing one
# model's spec rewrites it, but only the job holding the changed id reruns.
rule train:
    input:
        zoo=ancient(f"{R}/zoo.csv"),
        probe=f"{R}/probe.h5",
    output:
        f"{R}/train/{{batch}}.json",
    params:
        ids=lambda w: ",".join(BATCHES[w.batch]),
        data=json.dumps(config["data"]),
        results=R,
        accelerator=config["train"]["accelerator"],
        jobs_per_gpu=config["train"]["jobs_per_gpu"],
    log:
        f"{R}/logs/train/{{batch}}.log",
    threads: config["train"]["threads"]
    resources:
        gpu=train_gpus(),
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m nnmanifold train --zoo {input.zoo} --probe {input.probe} --ids {params.ids}"
        " --data {params.data:q} --results {params.results} --manifest {output}"
        " --accelerator {params.accelerator} --jobs-per-gpu {params.jobs_per_gpu}"
        " --threads {threads} > {log} 2>&1"
