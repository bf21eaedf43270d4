"""Manifold-guided search: propose configurations from the map's high-accuracy region.

An Optuna sampler (method.md §9): smooth the networks' validation accuracy over their map
coordinates, take the networks where the smoothed accuracy is highest, and blend the
hyperparameters of map neighbours among them (continuous values interpolated on their natural
scale, categorical ones voted, integers rounded); a share of proposals explores the search space
uniformly. Being a ``BaseSampler``, it runs in the same harness as Optuna's TPE and random search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from nnmanifold.core.errors import UserError
from nnmanifold.zoo.specs import INT_KEYS

#: Numeric hyperparameters searched on a log scale (when their range is positive): their effect
#: is multiplicative, so halfway between 0.001 and 0.1 is 0.01, not 0.05.
LOG_KEYS = frozenset({"lr", "weight_decay", "width", "channels", "batch_size"})

#: Map coordinates of completed trials, one row each, in the order given.
MapFunction = Callable[[Sequence[FrozenTrial]], np.ndarray]
#: The search methods (``search.method``): the map's guided sampler, Optuna's TPE and random.
METHODS = ("guided", "tpe", "random")

T = TypeVar("T")


def search_space(space: Mapping[str, Any]) -> tuple[dict[str, BaseDistribution], dict[str, Any]]:
    """The Optuna distributions of a ``zoo.space`` config section, and its fixed values.

    An axis with one value is fixed, not searched; a list of strings is categorical; a list of
    numbers spans its range (integers for integer hyperparameters); ``{low, high, log}`` is that
    range. Learning rates, weight decay and sizes are searched on a log scale.
    """
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for key, axis in sorted(space.items()):
        if isinstance(axis, Mapping):
            low, high, log = axis["low"], axis["high"], bool(axis.get("log", False))
        else:
            values = list(dict.fromkeys(axis))
            if len(values) == 1:
                fixed[key] = values[0]
                continue
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                distributions[key] = CategoricalDistribution(values)
                continue
            low, high = min(values), max(values)
            log = key in LOG_KEYS and low > 0
        if key in INT_KEYS:
            distributions[key] = IntDistribution(int(low), int(high), log=log)
        else:
            distributions[key] = FloatDistribution(float(low), float(high), log=log)
    return distributions, fixed


def smooth_accuracy(coords: np.ndarray, accuracy: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian-kernel (Nadaraya-Watson) regression of accuracy over the map, at each network.

    A network's smoothed value averages its neighbours' accuracies, so one lucky network among
    poor neighbours ranks below a network in a consistently good region.
    """
    sq = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    weights = np.exp(-sq / (2 * bandwidth**2))
    return weights @ accuracy / weights.sum(1)


def knn_bandwidth(coords: np.ndarray, k: int) -> float:
    """Median distance from a network to its k-th nearest neighbour on the map (k capped)."""
    d = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))
    k = min(k, len(coords) - 1)
    kth = np.sort(d, axis=1)[:, k]
    return float(np.median(kth)) or 1.0


def uniform(
    distributions: Mapping[str, BaseDistribution], rng: np.random.Generator
) -> dict[str, Any]:
    """One configuration drawn uniformly from the space (log-uniformly on log axes)."""
    return {k: _uniform(d, rng) for k, d in distributions.items()}


def blend(
    parents: Sequence[Mapping[str, Any]],
    weights: np.ndarray,
    distributions: Mapping[str, BaseDistribution],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """A configuration between parents: weighted means on each axis's scale, weighted votes.

    Weights are normalised; integers are rounded and every value is kept inside its distribution.
    A tied vote is broken at random.
    """
    w = np.asarray(weights, float) / np.sum(weights)
    out: dict[str, Any] = {}
    for key, dist in distributions.items():
        values = [p[key] for p in parents]
        if isinstance(dist, CategoricalDistribution):
            votes = np.zeros(len(dist.choices))
            for v, wi in zip(values, w, strict=True):
                votes[dist.to_internal_repr(v)] += wi
            best = np.flatnonzero(np.isclose(votes, votes.max()))
            out[key] = dist.choices[int(rng.choice(best))]
            continue
        x = np.asarray(values, float)
        mean = float(np.exp(w @ np.log(x))) if dist.log else float(w @ x)
        mean = min(max(mean, dist.low), dist.high)
        out[key] = int(round(mean)) if isinstance(dist, IntDistribution) else mean
    return out


def propose(
    coords: np.ndarray,
    accuracy: np.ndarray,
    params: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, BaseDistribution],
    rng: np.random.Generator,
    *,
    elite_fraction: float = 0.2,
    n_parents: int = 3,
    knn: int = 5,
) -> dict[str, Any]:
    """One configuration from the map's high-accuracy region.

    The elite are the networks with the highest smoothed accuracy (``elite_fraction`` of them, at
    least ``n_parents``); an anchor drawn among them and its nearest elite neighbours on the map
    are blended with random (Dirichlet) weights.
    """
    field = smooth_accuracy(coords, accuracy, knn_bandwidth(coords, knn))
    n_elite = min(len(field), max(n_parents, math.ceil(elite_fraction * len(field))))
    elite = np.argsort(-field, kind="stable")[:n_elite]
    anchor = elite[rng.integers(n_elite)]
    near = np.sqrt(((coords[elite] - coords[anchor]) ** 2).sum(1))
    family = elite[np.argsort(near, kind="stable")[: min(n_parents, n_elite)]]
    weights = rng.dirichlet(np.ones(len(family)))
    parents = [params[i] for i in family]
    return perturb(blend(parents, weights, distributions, rng), parents, distributions, rng)


def perturb(
    config: Mapping[str, Any],
    parents: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, BaseDistribution],
    rng: np.random.Generator,
    floor: float = 0.05,
    mutation: float = 0.2,
) -> dict[str, Any]:
    """Jitter a blend's numeric values by the parents' spread on each axis's scale; redraw each
    categorical value with probability ``mutation`` (a vote alone never revisits a lost choice).

    Blending alone never leaves the parents' hull; the jitter (standard deviation: the parents'
    spread, at least ``floor`` of the axis's range) lets the region drift toward better values
    and shrinks as the parents agree. Values stay inside their distributions.
    """
    out = dict(config)
    for key, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            if rng.random() < mutation:
                out[key] = dist.choices[int(rng.integers(len(dist.choices)))]
            continue
        scale = np.log if dist.log else np.asarray
        low, high = float(scale(float(dist.low))), float(scale(float(dist.high)))
        spread = float(np.std(scale(np.array([p[key] for p in parents], float))))
        sd = max(spread, floor * (high - low))
        x = min(max(float(scale(float(config[key]))) + rng.normal(0, sd), low), high)
        value = min(max(math.exp(x) if dist.log else x, dist.low), dist.high)
        out[key] = int(round(value)) if isinstance(dist, IntDistribution) else value
    return out


def propose_round(
    coords: np.ndarray,
    accuracy: np.ndarray,
    configs: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, BaseDistribution],
    per_round: int,
    seed: int,
    *,
    exploration: float = 0.2,
    max_draws: int = 100,
) -> list[dict[str, Any]]:
    """A round of ``per_round`` new configurations from a map of the trained ``configs``.

    Each is a guided proposal, or with probability ``exploration`` a uniform draw; a proposal
    identical (on the searched keys) to a trained configuration or an earlier proposal of the
    round is replaced by a fresh draw, so no model is trained twice. Meant for the workflow's
    search checkpoint: seeded, so a round is reproducible from the map it was drawn from.
    """
    rng = np.random.default_rng(seed)
    keys = list(distributions)

    def key(config: Mapping[str, Any]) -> tuple:
        return tuple(config[k] for k in keys)

    params = [{k: c[k] for k in keys} for c in configs]
    draws = (
        uniform(distributions, rng)
        if rng.random() < exploration
        else propose(coords, accuracy, params, distributions, rng)
        for _ in range(per_round * max_draws)
    )
    round_ = unique(draws, key, {key(c) for c in configs}, per_round)
    if len(round_) < per_round:
        raise UserError(
            f"search found only {len(round_)} of search.per_round = {per_round} configurations "
            f"not yet trained in {per_round * max_draws} draws; the space is nearly exhausted: "
            "lower search.per_round or widen zoo.space"
        )
    return round_


def unique(candidates: Iterable[T], key: Callable[[T], Hashable], seen: set, n: int) -> list[T]:
    """The first ``n`` candidates whose key is neither in ``seen`` nor repeated (``seen`` grows):
    the one de-duplication of proposals, so no model is trained twice. Candidates are drawn only
    until ``n`` are found."""
    out: list[T] = []
    if n < 1:
        return out
    for candidate in candidates:
        if (k := key(candidate)) not in seen:
            seen.add(k)
            out.append(candidate)
            if len(out) == n:
                break
    return out


def sampler_for(
    method: str,
    distributions: Mapping[str, BaseDistribution],
    map_of: MapFunction | None,
    seed: int,
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of a search method (``METHODS``), seeded; ``guided`` needs ``map_of``."""
    if method == "guided" and map_of is not None:
        return GuidedSampler(distributions, map_of, seed=seed)
    if method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"search.method is {method!r}; give one of {', '.join(METHODS)}")


class GuidedSampler(optuna.samplers.BaseSampler):
    """Proposes from the high-accuracy region of the map of completed trials (see module doc).

    ``map_of`` gives the map coordinates of completed trials (the workflow's PHATE embedding,
    or a stand-in); it is called again only when the set of completed trials changed. Until
    ``min_trials`` trials are complete, and for an ``exploration`` share afterwards, proposals
    are uniform over the space. Same seed and history give the same proposals.
    """

    def __init__(
        self,
        distributions: Mapping[str, BaseDistribution],
        map_of: MapFunction,
        *,
        exploration: float = 0.2,
        elite_fraction: float = 0.2,
        n_parents: int = 3,
        knn: int = 5,
        min_trials: int = 4,
        seed: int | None = None,
    ) -> None:
        if not 0 <= exploration <= 1:
            raise UserError(f"search exploration share is {exploration}; give one in [0, 1]")
        self._space = dict(distributions)
        self._map_of = map_of
        self._options = {"elite_fraction": elite_fraction, "n_parents": n_parents, "knn": knn}
        self._exploration, self._min_trials = exploration, max(min_trials, 2)
        self._rng = np.random.default_rng(seed)
        self._map: tuple[tuple[int, ...], np.ndarray] | None = None

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if search_space.keys() <= t.params.keys() and math.isfinite(t.value)
        ]
        if len(done) < self._min_trials or self._rng.random() < self._exploration:
            return uniform(search_space, self._rng)
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        accuracy = sign * np.array([t.value for t in done])
        return propose(
            self._coordinates(done),
            accuracy,
            [t.params for t in done],
            search_space,
            self._rng,
            **self._options,
        )

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return _uniform(param_distribution, self._rng)

    def _coordinates(self, done: Sequence[FrozenTrial]) -> np.ndarray:
        key = tuple(t.number for t in done)
        if self._map is None or self._map[0] != key:
            coords = np.asarray(self._map_of(done), float)
            if coords.shape[0] != len(done):
                raise UserError(
                    f"the search map gave {coords.shape[0]} coordinates for {len(done)} trials; "
                    "it must place every completed trial"
                )
            self._map = (key, coords)
        return self._map[1]


def _uniform(dist: BaseDistribution, rng: np.random.Generator) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    low, high = float(dist.low), float(dist.high)
    if isinstance(dist, IntDistribution):
        if dist.log:
            value = math.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
        else:
            value = rng.uniform(low - 0.5, high + 0.5)
        return int(min(max(round(value), dist.low), dist.high))
    value = (
        math.exp(rng.uniform(math.log(low), math.log(high))) if dist.log else rng.uniform(low, high)
    )
    return float(value)
