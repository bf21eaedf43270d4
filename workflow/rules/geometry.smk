# Zoo-level geometry: the network distance matrix (cached, incremental), its PHATE map, and the
# second distance between persistence diagrams.
rule distances:
    input:
        manifests=train_manifests(),
        probe=f"{R}/probe.h5",
    output:
        distances=f"{R}/geometry/distances.h5",
        excluded=report(
            f"{R}/geometry/excluded.csv",
            caption="../report/excluded.rst",
            category="Zoo",
        ),
        diagnostics=f"{R}/geometry/kernel_diagnostics.csv",
    log:
        f"{R}/logs/distances.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        models=MODEL_IDS,
        results=lambda w, input: Path(input.probe).parent,
        geometry=OPERATOR_PARAM,
    shell:
        "python -m nnmanifold distances --manifests {input.manifests} --probe {input.probe}"
        " --results {params.results} --geometry {params.geometry:q} --out {output.distances}"
        " --excluded {output.excluded} --diagnostics {output.diagnostics}"
        f" --memory-budget-mb {config['geometry']['memory_budget_mb']}"
        f" --device {config['geometry']['device']} > {{log}} 2>&1"


rule embedding:
    input:
        distances=f"{R}/geometry/distances.h5",
        zoo=f"{R}/zoo.csv",
        manifests=train_manifests(),
        features=feature_manifests(),
    output:
        f"{R}/geometry/embedding.csv",
    log:
        f"{R}/logs/embedding.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        embedding=as_param(config["embedding"]),
    shell:
        "python -m nnmanifold embed --distances {input.distances} --zoo {input.zoo}"
        " --manifests {input.manifests} --features {input.features}"
        " --embedding {params.embedding:q} --out {output} > {log} 2>&1"


rule wasserstein:
    input:
        feature_manifests(),
    output:
        f"{R}/geometry/wasserstein.h5",
    log:
        f"{R}/logs/wasserstein.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        results=lambda w, output: Path(output[0]).parents[1],
    shell:
        "python -m nnmanifold wasserstein --features {input} --results {params.results}"
        " --out {output} > {log} 2>&1"


use rule embedding as wasserstein_embedding with:
    input:
        distances=f"{R}/geometry/wasserstein.h5",
        zoo=f"{R}/zoo.csv",
        manifests=train_manifests(),
        features=feature_manifests(),
    output:
        f"{R}/geometry/wasserstein_embedding.csv",
    log:
        f"{R}/logs/wasserstein_embedding.log",
