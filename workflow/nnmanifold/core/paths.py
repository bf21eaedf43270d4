"""Every path under the results folder, in one place: the rules and the steps both ask here.

Results a rule declares (and Snakemake deletes before rerunning it) are the zoo-level files and the
per-job manifests. Per-model files are written by their job and listed, with checksums, in its
manifest. Resume points and caches (checkpoints, the distance cache) are never
declared: Snakemake would delete them before a rerun, ending resume and incremental distances.
They live under ``models/<id>/checkpoints/`` and ``cache/`` and are reused only when
``storage.is_current`` says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The figures the ``figures`` step draws, with their report category; each has a caption in
#: ``workflow/report/<name>.rst``.
FIGURES = {
    "summary": "Summary",
    "map_accuracy": "Map",
    "map_features": "Map",
    "map_hyperparameters": "Map",
    "features_vs_accuracy": "Features",
    "distance_heatmap": "Distances",
    "persistence": "Features",
    "informativeness": "Informativeness",
    "map_topology": "Map",
    "map_baselines": "Map",
}
#: Per-model files a training job writes, and those a features job writes.
TRAIN_FILES = ("activations.h5", "metrics.json")
FEATURE_FILES = ("features.json", "diagrams.npz")


@dataclass(frozen=True)
class ModelFiles:
    """One model's folder (``models/<id>/``, or any folder ``train.job.train_model`` is given):
    what its training writes, and the resume points it keeps there."""

    root: Path

    @property
    def activations(self) -> Path:
        return self.root / "activations.h5"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """The one-model path's Lightning checkpoint (``checkpoints/last.ckpt``)."""
        return self.checkpoints / "last.ckpt"

    @property
    def group_checkpoint(self) -> Path:
        """A group member's resume state (``checkpoints/group_last.pt``)."""
        return self.checkpoints / "group_last.pt"

    @property
    def train_log(self) -> Path:
        """Lightning's CSV log of the one-model path, and the group path's epoch log."""
        return self.root / "train_log"

    @property
    def epoch_log(self) -> Path:
        """A group member's training log: one line per finished epoch."""
        return self.train_log / "epochs.csv"


@dataclass(frozen=True)
class Layout:
    """The results folder's layout. Methods taking a ``batch`` accept ``"{batch}"`` for rules."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    # zoo level
    @property
    def zoo(self) -> Path:
        return self.root / "zoo.csv"

    @property
    def probe(self) -> Path:
        return self.root / "probe.h5"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    # per job
    def train_manifest(self, batch: str) -> Path:
        return self.root / "train" / f"{batch}.json"

    def job_specs(self, batch: str) -> Path:
        """A training or extraction job's specs (written by the plan; the job's command names
        the file)."""
        return self.root / "jobs" / f"{batch}.json"

    def extract_manifest(self, batch: str) -> Path:
        """An extraction job's manifest (networks from elsewhere, mapped with the zoo: "xb...")."""
        return self.root / "extract" / f"{batch}.json"

    def place_manifest(self, batch: str) -> Path:
        """An extraction job's manifest of networks to place on the finished map ("pb...")."""
        return self.root / "place" / f"{batch}.json"

    def network_manifest(self, batch: str) -> Path:
        """The manifest of any job that made networks' activations: training, extraction
        ("xb...") or extraction for placement ("pb..."); the rows have one format."""
        if batch.startswith("xb"):
            return self.extract_manifest(batch)
        if batch.startswith("pb"):
            return self.place_manifest(batch)
        return self.train_manifest(batch)

    def features_manifest(self, batch: str) -> Path:
        return self.root / "features" / f"{batch}.json"

    def manifest(self, stage: str, batch: str) -> Path:
        """``train`` or ``features`` manifest of a job."""
        return self.root / stage / f"{batch}.json"

    def rerun_mark(self, stage: str, batch: str) -> Path:
        """Written by ``nnmanifold verify`` for a job with failed files: its content is a
        parameter of the job, so a new mark makes the job run again (kept afterwards)."""
        return self.root / stage / f"{batch}.rerun"

    # per model
    def model_dir(self, model_id: str) -> Path:
        """Where one model's checkpoints, metrics, activations and features live."""
        return self.root / "models" / model_id

    def model_files(self, model_id: str) -> ModelFiles:
        """One model's files: activations, metrics, checkpoints, training logs."""
        return ModelFiles(self.model_dir(model_id))

    def activations(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "activations.h5"

    def metrics(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "metrics.json"

    def features(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "features.json"

    def diagrams(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "diagrams.npz"

    def checkpoints(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "checkpoints"

    # geometry
    @property
    def distances(self) -> Path:
        return self.root / "geometry" / "distances.h5"

    @property
    def excluded(self) -> Path:
        return self.root / "geometry" / "excluded.csv"

    @property
    def kernel_diagnostics(self) -> Path:
        return self.root / "geometry" / "kernel_diagnostics.csv"

    @property
    def embedding(self) -> Path:
        return self.root / "geometry" / "embedding.csv"

    @property
    def placed(self) -> Path:
        """Networks placed on the finished map without refitting it (``snakemake place``)."""
        return self.root / "geometry" / "placed.csv"

    @property
    def wasserstein(self) -> Path:
        return self.root / "geometry" / "wasserstein.h5"

    @property
    def wasserstein_embedding(self) -> Path:
        return self.root / "geometry" / "wasserstein_embedding.csv"

    def distances_of(self, name: str) -> Path:
        """A network distance by name: ``diffusion``, ``wasserstein`` or a baseline (``cka``,
        ``rsa``, ``procrustes``: ``geometry/<name>.h5``)."""
        named = {"diffusion": self.distances, "wasserstein": self.wasserstein}
        return named.get(name, self.root / "geometry" / f"{name}.h5")

    def embedding_of(self, name: str) -> Path:
        """The PHATE map of the distance ``name`` (see :meth:`distances_of`)."""
        named = {"diffusion": self.embedding, "wasserstein": self.wasserstein_embedding}
        return named.get(name, self.root / "geometry" / f"embedding_{name}.csv")

    # caches (never declared as outputs)
    @property
    def distance_cache(self) -> Path:
        return self.root / "cache" / "distances.h5"

    @property
    def file_facts(self) -> Path:
        """Content hashes and array shapes of the networks from elsewhere
        (``storage.FileFacts``)."""
        return self.root / "cache" / "files.json"

    @property
    def wasserstein_cache(self) -> Path:
        """Wasserstein rows with each model's diagrams-file digest (reused when unchanged)."""
        return self.root / "cache" / "wasserstein.h5"

    # search (results/search/<name>/)
    def search_benchmark(self, what: str) -> Path:
        """``search_benchmark/<what>``: ``table.csv`` and ``curves.png`` (its own target)."""
        return self.root / "search_benchmark" / what

    def search_dir(self, name: str) -> Path:
        return self.root / "search" / name

    def search_round(self, name: str, k: int | str) -> Path:
        """Round ``k``'s proposals (specs with ids): written once, never redrawn (not declared)."""
        return self.search_dir(name) / f"round{k}.json"

    def search_batches(self, name: str, k: int | str) -> Path:
        """Round ``k``'s training jobs: the search checkpoint's declared output."""
        return self.search_dir(name) / f"round{k}.batches.json"

    def search_table(self, name: str, table: str) -> Path:
        """``search/<name>/<table>.csv``: ``progress`` (per round) or ``models`` (per model)."""
        return self.search_dir(name) / f"{table}.csv"

    def search_figure(self, name: str, figure: str) -> Path:
        """``search/<name>/<figure>.png`` (PDF beside it): ``progress`` or ``map``."""
        return self.search_dir(name) / f"{figure}.png"

    # statistics, figures, logs
    def stats(self, name: str) -> Path:
        """``stats/<name>.csv``: zoo_summary, feature_correlations, map_informativeness, ..."""
        return self.root / "stats" / f"{name}.csv"

    def figure(self, name: str) -> Path:
        """``figures/<name>.png`` (a PDF is written beside it)."""
        return self.root / "figures" / f"{name}.png"

    @property
    def interactive_map(self) -> Path:
        """The interactive map: one self-contained HTML page (works offline)."""
        return self.root / "figures" / "map.html"

    def log(self, step: str, batch: str | None = None) -> Path:
        return self.root / "logs" / (f"{step}/{batch}.log" if batch else f"{step}.log")

    def benchmark(self, step: str, batch: str | None = None) -> Path:
        """A job's Snakemake benchmark (wall and CPU seconds to the millisecond, peak memory),
        named as its log is."""
        return self.root / "benchmarks" / (f"{step}/{batch}.tsv" if batch else f"{step}.tsv")

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def report_metadata(self) -> Path:
        """The report's landing page: the headline numbers (YAML for ``--report-metadata``;
        numbers only, since Snakemake 9 shows text values there as raw docutils parts)."""
        return self.root / "report_metadata.yaml"
