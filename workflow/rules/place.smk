# New networks placed on the finished map without refitting it (issue 22): geometry/placed.csv,
# and the interactive map redrawn with them marked. embedding.csv is read, never rewritten.
if "place_manifests" not in globals():

    # Stand-in until common.smk defines it with the `place` config section: nothing to place.
    def place_manifests():
        return []


def placed_map():
    """What `snakemake place` builds; refused, with the fix, when nothing is to be placed."""
    if not place_manifests():
        raise ValueError(
            "nothing to place: list the networks under the config's `place` section "
            "(config/README.md), then run `snakemake place`"
        )
    return [P.placed, P.interactive_map]


rule place_networks:
    input:
        distances=P.distances,
        embedding=P.embedding,
        probe=P.probe,
        map_manifests=train_manifests(),
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
