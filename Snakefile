# nnmanifold: config -> zoo -> train -> activations -> distances -> PHATE map -> features -> report.
from snakemake.utils import min_version

min_version("9.0")


# The default config applies only when none is given: `--configfile` replaces it rather than being
# merged into it, so a small zoo never inherits the default zoo's axes.
if not workflow.config_settings.configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_targets(),


include: "workflow/rules/zoo.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/geometry.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/sensitivity.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/place.smk"


onsuccess:
    if P.stats("zoo_summary").exists():
        logger.info(zoo_summary_line(P.stats("zoo_summary")))
