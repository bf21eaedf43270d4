# One job trains a few models in one process (train.models_per_job); outputs stay per model under
# results/models/<id>/ and the job's manifest lists them. A job is named by its members' ids and
# gets their specs as a parameter, so editing one model's spec reruns only the job that holds it.
rule train:
    input:
        probe=f"{R}/probe.h5",
        previous=previous_outputs("activations.h5", "metrics.json"),
    output:
        f"{R}/train/{{batch}}.json",
    log:
        f"{R}/logs/train/{{batch}}.log",
    conda:
        "../../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=train_gpus(),
    params:
        specs=lambda w: as_param([SPECS[i] for i in BATCHES[w.batch]]),
        results=lambda w, output: Path(output[0]).parents[1],
    shell:
        "python -m nnmanifold train --specs {params.specs:q} --probe {input.probe:q}"
        " --results {params.results:q} --manifest {output:q} "
        + DATA_ACCESS
        + f" --accelerator {config['train']['accelerator']}"
        f" --jobs-per-gpu {config['train']['jobs_per_gpu']}"
        " --threads {threads} > {log:q} 2>&1"


rule trained:
    input:
        f"{R}/zoo.csv",
        train_manifests(),
