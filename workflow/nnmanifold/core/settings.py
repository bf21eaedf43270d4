"""Typed, frozen settings: one object per config section, built from the validated config.

The rule of thumb for what reruns what, written once: a section's ``identity()`` holds exactly the
fields its results depend on. Rules pass identities as Snakemake ``params`` (so changing one reruns
exactly the jobs that depend on it), and run-time choices — where data live, devices, threads,
memory — as command-line flags, which rerun nothing. Defaults live in the config schema only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nnmanifold.geometry.diffusion import OperatorSettings
from nnmanifold.zoo.layout import npz_layout


@dataclass(frozen=True)
class Section:
    """A config section; subclasses name their run-time fields in ``RUN``."""

    RUN: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def of(cls, section: Mapping[str, Any]) -> Section:
        """The settings of a validated config section (unknown keys are a programming error)."""
        return cls(**section)

    @classmethod
    def parse(cls, identity: str, **run: Any) -> Section:
        """Rebuild the settings from an identity (JSON, as rules pass it) and run-time flags."""
        return cls(**json.loads(identity), **run)

    def identity(self) -> dict[str, Any]:
        """Exactly the fields results depend on."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUN}

    def identity_json(self) -> str:
        from nnmanifold.core.storage import canonical_json

        return canonical_json(self.identity())


@dataclass(frozen=True)
class DataSettings(Section):
    name: str
    data_dir: str
    download: bool
    npz_path: str | None
    test_fraction: float
    validation_fraction: float
    split_seed: int
    n_probe: int
    probe_seed: int
    max_train: int | None
    #: Defaults here only so that an identity without them (their defaults are left out of it,
    #: keeping older probe jobs) parses back; the schema's defaults are the same.
    layout: str = "auto"
    probe_split: str = "test"
    RUN: ClassVar[tuple[str, ...]] = ("data_dir", "download")

    def identity(self) -> dict[str, Any]:
        """The section's identity; ``layout`` and ``probe_split`` only when not their defaults,
        so configs from before them keep their probe job."""
        identity = super().identity()
        if self.layout == "auto":
            identity.pop("layout")
        if self.probe_split == "test":
            identity.pop("probe_split")
        return identity

    def training_identity(self) -> dict[str, Any]:
        """What a model is trained on (part of every model id): the probe set aside."""
        identity = {
            "name": self.name,
            "test_fraction": self.test_fraction,
            "validation_fraction": self.validation_fraction,
            "split_seed": self.split_seed,
            "max_train": self.max_train,
        }
        if self.name == "npz":
            identity["npz_path"] = self.npz_path
            if npz_layout(self.npz_path, self.layout) == "nhwc":  # as read today otherwise
                identity["layout"] = "nhwc"
        return identity

    def loader_config(self) -> dict[str, Any]:
        """The section as ``data.load_dataset`` takes it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainSettings(Section):
    models_per_job: int | None
    accelerator: str
    jobs_per_gpu: int
    threads: int | None
    RUN: ClassVar[tuple[str, ...]] = ("models_per_job", "accelerator", "jobs_per_gpu", "threads")


@dataclass(frozen=True)
class GeometrySettings(Section):
    layer: str | None
    sigma: float | str
    normalization: str
    t: int
    memory_budget_mb: int
    device: str
    RUN: ClassVar[tuple[str, ...]] = ("memory_budget_mb", "device")

    @functools.cached_property
    def operator(self) -> OperatorSettings:
        """The operator settings, built (and checked) once per settings object."""
        return OperatorSettings(self.sigma, self.normalization, self.t)

    def representation_identity(self) -> dict[str, Any]:
        """What the representations compared depend on (not the kernel): layer, normalisation."""
        return {"layer": self.layer, "normalization": self.normalization}

    @property
    def layer_name(self) -> str:
        """The layer as recorded with operators: its name, or "penultimate"."""
        return self.layer or "penultimate"


@dataclass(frozen=True)
class BaselineSettings(Section):
    distances: tuple
    max_networks: int

    @classmethod
    def of(cls, section: Mapping[str, Any]) -> BaselineSettings:
        return cls(tuple(section["distances"]), section["max_networks"])

    def identity(self) -> dict[str, Any]:
        return {"distances": list(self.distances), "max_networks": self.max_networks}


@dataclass(frozen=True)
class WassersteinSettings(Section):
    """The Wasserstein map: exact up to ``max_networks`` models, a stable subset beyond."""

    max_networks: int


@dataclass(frozen=True)
class EmbeddingSettings(Section):
    n_components: int
    knn: int
    decay: float
    seed: int


@dataclass(frozen=True)
class FeatureSettings(Section):
    max_points: int
    h1_threshold: float
    seed: int


@dataclass(frozen=True)
class StatsSettings(Section):
    knn: int
    n_permutations: int
    n_bootstrap: int
    seed: int


@dataclass(frozen=True)
class SensitivitySettings(Section):
    in_default_run: bool
    sigmas: tuple
    normalizations: tuple
    ts: tuple
    max_models: int
    RUN: ClassVar[tuple[str, ...]] = ("in_default_run",)

    @classmethod
    def of(cls, section: Mapping[str, Any]) -> SensitivitySettings:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})

    @classmethod
    def parse(cls, identity: str, **run: Any) -> SensitivitySettings:
        return cls.of({**json.loads(identity), **run})

    def identity(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in super().identity().items()}


@dataclass(frozen=True)
class SearchSettings(Section):
    """Manifold-guided search: ``rounds`` of ``per_round`` proposals, drawn by ``method``."""

    rounds: int
    per_round: int
    seed: int
    name: str
    method: str


@dataclass(frozen=True)
class SearchBenchmarkSettings(Section):
    """Table-mode comparison of guided, TPE and random search on the trained zoo (target
    ``search_benchmark``): ``repeats`` x each method, ``budget`` models incl. ``initial``."""

    repeats: int
    initial: int
    budget: int
    per_round: int
    map: str
    seed: int


@dataclass(frozen=True)
class Settings:
    """Every section of a validated config (the zoo spec stays plain data: ``zoo.expand``)."""

    results: str
    code_version: int
    zoo: dict
    data: DataSettings
    train: TrainSettings
    geometry: GeometrySettings
    baselines: BaselineSettings
    wasserstein: WassersteinSettings
    embedding: EmbeddingSettings
    features: FeatureSettings
    stats: StatsSettings
    sensitivity: SensitivitySettings
    search: SearchSettings
    search_benchmark: SearchBenchmarkSettings

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            results=config["results"],
            code_version=config["code_version"],
            zoo=config["zoo"],
            data=DataSettings.of(config["data"]),
            train=TrainSettings.of(config["train"]),
            geometry=GeometrySettings.of(config["geometry"]),
            baselines=BaselineSettings.of(config["baselines"]),
            wasserstein=WassersteinSettings.of(config["wasserstein"]),
            embedding=EmbeddingSettings.of(config["embedding"]),
            features=FeatureSettings.of(config["features"]),
            stats=StatsSettings.of(config["stats"]),
            sensitivity=SensitivitySettings.of(config["sensitivity"]),
            search=SearchSettings.of(config["search"]),
            search_benchmark=SearchBenchmarkSettings.of(config["search_benchmark"]),
        )
