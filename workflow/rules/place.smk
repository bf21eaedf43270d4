# New networks placed on the finished map without refitting it (issue 22): geometry/placed.csv,
# and the interactive map redrawn with them marked. embedding.csv is read, never rewritten.
rule place_networks:
    input:
        distances=P.distances,
        embedding=P.embedding,
        probe=P.probe,
        map_manifests=network_manifests(),
        place_manifests=place_manifests(),
    output:
        P.placed,
    log:
        P.log("place"),
    conda:
        "../../envs/analysis.yaml"
    resources:
        **zoo_resources(4, 1000 + S.geometry.memory_budget_mb, 10, 1),
    params:
        geometry=S.geometry.identity_json(),
        embedding=S.embedding.identity_json(),
    shell:
        step("place", GEOMETRY_RUN)
        + " --geometry {params.geometry:q} --embedding {params.embedding:q}"
        " --map-manifests {input.map_manifests:q}"
        " --place-manifests {input.place_manifests:q} > {log:q} 2>&1"


rule place:
    input:
        lambda wildcards: placed_map(),
