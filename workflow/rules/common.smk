import sys

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

sys.path.insert(0, f"{workflow.basedir}/workflow")

from nnmanifold.core.errors import UserError
from nnmanifold.core.commands import flags, shell_prefix
from nnmanifold.core import commands, jobs
from nnmanifold.zoo import specs as zoo_lib
from nnmanifold.core.config import ConfigError, validate
from nnmanifold.geometry.embedding import MIN_MODELS
from nnmanifold.core.paths import FIGURES, Layout
from nnmanifold.core import plan
from nnmanifold.core.settings import Settings
from nnmanifold.core.storage import canonical_json
from nnmanifold.extract import checks as network_checks
from nnmanifold.extract import sources as network_sources

try:
    config.update(validate(config))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

S = Settings.of(config)
P = Layout(S.results)
ZOO_SPECS = zoo_lib.expand(config)
PER_JOB, PER_JOB_WHY = plan.models_per_job(S.train.models_per_job, len(ZOO_SPECS))
# Cores of a training, extraction or features job (its groups or networks side by side).
JOB_THREADS = plan.job_threads(S.train.threads, workflow.cores)
# What model ids depend on (the zoo step and the search rounds make specs from it).
ZOO_IDENTITY = canonical_json(
    {
        "zoo": config["zoo"],
        "data": S.data.training_identity(),
        "code_version": S.code_version,
    }
)


def with_rounds(rounds):
    """Specs and training jobs of the zoo plus the given search rounds (jobs.with_rounds)."""
    return jobs.with_rounds(ZOO_SPECS, rounds, PER_JOB)


# The zoo-level rules use the initial zoo plus every recorded round of the search (search.name).
SPECS, BATCHES = with_rounds(jobs.recorded_rounds(P, S.search.name))
try:
    zoo_lib.check_layer(list(SPECS.values()), S.geometry.layer)
except UserError as err:
    raise WorkflowError(str(err)) from None
MODEL_IDS = list(SPECS)
# Networks from elsewhere (config `networks`: mapped beside the zoo; `place`: placed on the
# finished map), each file one network, checked before any job (extract.checks); extraction
# jobs "xb..." and "pb..." hold them.
try:
    _resolved = network_checks.resolve_and_check(config)
except UserError as err:
    raise WorkflowError(str(err)) from None
NETWORKS = {n["model_id"]: n for n in _resolved["networks"]}
PLACE_NETWORKS = {n["model_id"]: n for n in _resolved["place"]}
NETWORK_BATCHES = network_sources.batches(list(NETWORKS.values()), PER_JOB, "xb")
PLACE_BATCHES = network_sources.batches(list(PLACE_NETWORKS.values()), PER_JOB, "pb")
# The jobs whose networks the map holds: the zoo's training jobs and the extraction jobs.
MAP_BATCHES = {**BATCHES, **NETWORK_BATCHES}


def network_job(batch):
    """An extraction job's network specs (mapped or placed networks)."""
    if batch in NETWORK_BATCHES:
        return [NETWORKS[m] for m in NETWORK_BATCHES[batch]]
    return [PLACE_NETWORKS[m] for m in PLACE_BATCHES[batch]]


def train_threads(wildcards):
    """A training job's cores (plan.job_threads)."""
    return plan.job_threads(
        S.train.threads, workflow.cores, specs_of_job(wildcards.batch)
    )


def specs_of_job(batch):
    """A training or extraction job's specs (what its job_specs file holds)."""
    if batch in NETWORK_BATCHES or batch in PLACE_BATCHES:
        return network_job(batch)
    return job_specs(batch)


def job_members(batch):
    """The ids of a training or extraction job's networks."""
    return [s["model_id"] for s in specs_of_job(batch)]


def job_specs(batch):
    """A training job's specs; a job of a search round recorded during this run is read from
    the round files."""
    specs, batches = SPECS, BATCHES
    if batch not in batches:
        specs, batches = with_rounds(jobs.recorded_rounds(P, S.search.name))
    return [specs[m] for m in batches[batch]]


# The rules run `python -m nnmanifold ...`: find the package from its source folder, and run the
# Python that runs Snakemake (the project's venv) unless rules get conda environments.
_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
shell.prefix(
    shell_prefix(f"{workflow.basedir}/workflow", None if _conda else sys.executable)
)


def step(name, *run_flags):
    """The command line of a workflow step (commands.step) in this results folder."""
    return commands.step(S.results, name, *run_flags)


DATA_ACCESS = flags(data_dir=S.data.data_dir, download=S.data.download)
TRAIN_RUN = flags(
    data=S.data.identity_json(),
    accelerator=S.train.accelerator,
    jobs_per_gpu=S.train.jobs_per_gpu,
)
GEOMETRY_RUN = flags(
    memory_budget_mb=S.geometry.memory_budget_mb, device=S.geometry.device
)


logger.info(plan.plan_line(list(SPECS.values()), P, S.data))
logger.info(f"{len(BATCHES)} training jobs of at most {PER_JOB} models ({PER_JOB_WHY})")


wildcard_constraints:
    batch=zoo_lib.BATCH_PATTERN,


def final_targets():
    targets = [
        *(P.figure(name) for name in FIGURES),
        P.interactive_map,
        *(
            P.stats(name)
            for name in ("zoo_summary", "map_informativeness", "distance_comparison")
        ),
        P.report_metadata,
        P.provenance,
    ]
    if S.sensitivity.in_default_run:
        targets.append(P.stats("sensitivity"))
    if P.search_round(S.search.name, S.search.rounds).exists():
        targets += search_targets()  # the search ran: its section stays in the report
    return targets


def search_targets():
    return [
        *(P.search_table(S.search.name, t) for t in ("progress", "models")),
        *(P.search_figure(S.search.name, f) for f in ("progress", "map")),
    ]


def train_manifests():
    return [P.train_manifest(b) for b in BATCHES]


def network_manifests():
    """The manifests of every network on the map: training and extraction jobs, one format."""
    return [P.network_manifest(b) for b in MAP_BATCHES]


def map_manifests(wildcards):
    """``network_manifests``, for the distances rule: a map of fewer than MIN_MODELS networks
    is refused here, while Snakemake plans (before any job), whenever a target needs the map.
    """
    if (n := len(SPECS) + len(NETWORKS)) < MIN_MODELS:
        raise WorkflowError(
            f"the map needs at least {MIN_MODELS} networks; this config gives {n} "
            f"({len(SPECS)} zoo models, {len(NETWORKS)} networks from elsewhere). Fix: more "
            "zoo.seeds or zoo.space values, or more files in the networks section; or ask for "
            "a target without the map (snakemake trained)"
        )
    return network_manifests()


def place_manifests():
    """The extraction manifests of the networks to place (config `place`)."""
    return [P.place_manifest(b) for b in PLACE_BATCHES]


def feature_manifests():
    return [P.features_manifest(b) for b in MAP_BATCHES]


def rerun_mark(stage):
    """A job's rerun mark as a parameter (see paths.Layout.rerun_mark): "" until verify marks it."""

    def mark(wildcards):
        path = P.rerun_mark(stage, wildcards.batch)
        return path.read_text() if path.exists() else ""

    return mark


def previous_outputs(stage):
    """A per-batch job's per-model files changed since its manifest, as an input function:
    such a file makes the job rerun (jobs.changed_outputs)."""

    def changed(wildcards):
        ids = job_members(wildcards.batch)
        return jobs.changed_outputs(P, stage, wildcards.batch, ids)

    return changed


def zoo_resources(matrices, base_mb, minutes, pair_us):
    """A zoo-level job's memory and runtime for this map (plan.zoo_resources)."""
    n = len(MODEL_IDS) + len(NETWORKS)
    return plan.zoo_resources(n, matrices, base_mb, minutes, pair_us)


def train_gpus():
    """GPUs a training job asks the scheduler for (0 when training is pinned to the CPU)."""
    return 0 if S.train.accelerator == "cpu" else 1


def zoo_summary_line(path):
    """The run's headline (models ok/diverged/failed, near chance) for the end of the log."""
    import pandas as pd

    from nnmanifold.analysis.stats import summary_line

    return summary_line(pd.read_csv(path))


def search_batches(k):
    """Training jobs of the zoo and of search rounds 1 .. k-1 (each waits for its checkpoint)."""
    for j in range(1, k):
        checkpoints.search_round.get(round=str(j))
    return list(with_rounds(jobs.recorded_rounds(P, S.search.name)[: k - 1])[1])


SEARCH_RUN = " ".join(
    [
        GEOMETRY_RUN,
        "--search {params.search:q} --geometry {params.geometry:q}",
        "--embedding {params.embedding:q} --batches {params.batches:q}",
    ]
)


for line in jobs.size_warnings(P, BATCHES):
    logger.warning(line)


def placed_map():
    """What `snakemake place` builds; refused, with the fix, when nothing is to be placed."""
    if not place_manifests():
        raise ValueError(
            "nothing to place: list the networks under the config's `place` section "
            "(config/README.md), then run `snakemake place`"
        )
    return [P.placed, P.interactive_map]
