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
        geometry=json.dumps(config["geometry"]),
    shell:
        "python -m nnmanifold distances --manifests {input.manifests} --probe {input.probe}"
        " --results {params.results} --geometry {params.geometry:q} --out {output.distances}"
        " --excluded {output.excluded} --diagnostics {output.diagnostics} > {log} 2>&1"


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
        embedding=json.dumps(config["embedding"]),
    shell:
        "python -m nnmanifold embed --distances {input.distances} --zoo {input.zoo}"
        " --manifests {input.manifests} --features {input.features}"
        " --embedding {params.embedding:q} --out {output} > {log} 2>&1"


rule topology:
    input:
        f"{R}/geometry/embedding.csv",
    output:
        distances=f"{R}/geometry/wasserstein.h5",
        map=f"{R}/geometry/wasserstein_embedding.csv",
    log:
        f"{R}/logs/topology.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        results=lambda w, input: Path(input[0]).parents[1],
        embedding=json.dumps(config["embedding"]),
    shell:
        "python -m nnmanifold topology --embedding {input} --results {params.results}"
        " --embedding-params {params.embedding:q} --out {output.distances}"
        " --map {output.map} > {log} 2>&1"
