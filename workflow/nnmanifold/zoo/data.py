"""Data sets as arrays and the class-balanced probe set (NumPy only: the probe step and the
analysis read them without importing torch; the training side is ``train.datamodule``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnmanifold.core.errors import UserError
from nnmanifold.zoo.layout import channels_first, resolve

TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


class DataError(UserError, ValueError):
    """A data set is missing, malformed or too small for the requested probe set."""


@dataclass
class Dataset:
    """Train, test and validation arrays (float32 inputs, int64 labels); images are (N, C, H, W).

    The validation split is held out of the training data by ``load_dataset``; a Dataset built
    by hand has none (``x_val`` is None) and its models record no validation accuracy.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max()) + 1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_dataset(data: dict[str, Any]) -> Dataset:
    """Load the data set named in a validated ``data`` config section."""
    name = data["name"]
    if name == "digits":
        ds = _digits(data["test_fraction"], data["split_seed"])
    elif name == "mnist1d":
        ds = _mnist1d()
    elif name in TORCHVISION:
        ds = _torchvision(name, Path(data["data_dir"]), data["download"])
    elif name == "npz":
        ds = _npz(Path(data["npz_path"]), data.get("layout", "auto"))
    else:
        raise DataError(f"unknown data set {name!r}")
    if data.get("max_train"):
        keep = _stratified_subset(ds.y_train, data["max_train"], data["split_seed"])
        ds.x_train, ds.y_train = ds.x_train[keep], ds.y_train[keep]
    train, val = validation_split(ds.y_train, data["validation_fraction"], data["split_seed"])
    ds.x_val, ds.y_val = ds.x_train[val], ds.y_train[val]
    ds.x_train, ds.y_train = ds.x_train[train], ds.y_train[train]
    return ds


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices of the training labels y: a seeded share held out.

    Stratified by class when every class has at least two points, so each class is scored. The
    same seed and labels give the same split, hence every model of a zoo is scored on the same
    points.
    """
    from sklearn.model_selection import train_test_split

    n_val = max(1, round(fraction * len(y)))
    if n_val >= len(y):
        raise DataError(
            f"data.validation_fraction {fraction} leaves no training points out of {len(y)}; "
            "lower it"
        )
    counts = np.unique(y, return_counts=True)[1]
    stratify = y if counts.min() >= 2 and n_val >= len(counts) else None
    train, val = train_test_split(
        np.arange(len(y)), test_size=n_val, random_state=seed, stratify=stratify
    )
    return np.sort(train), np.sort(val)


def probe_pool(ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels of the split the probe set is drawn from (``data.probe_split``)."""
    if split == "test":
        return ds.x_test, ds.y_test
    if split == "validation" and ds.x_val is not None:
        return ds.x_val, ds.y_val
    raise DataError(f"data.probe_split {split!r}: {ds.name} has no such split; use test")


def probe_indices(y_test: np.ndarray, n_probe: int, seed: int, split: str = "test") -> np.ndarray:
    """Indices of a class-balanced probe set drawn from a split's labels (the test split's by
    default), sorted by class.

    Each class gets n_probe // K points; the remainder goes to classes picked with the same seed.
    """
    classes = np.unique(y_test)
    if n_probe > len(y_test):
        raise DataError(
            f"data.n_probe is {n_probe} but the {split} split has only {len(y_test)} points; "
            "lower data.n_probe"
        )
    rng = np.random.default_rng(seed)
    quota = np.full(len(classes), n_probe // len(classes))
    quota[rng.choice(len(classes), n_probe % len(classes), replace=False)] += 1
    chosen = []
    for c, q in zip(classes, quota, strict=True):
        pool = np.flatnonzero(y_test == c)
        if q > len(pool):
            raise DataError(
                f"class {c} has {len(pool)} {split} points but the balanced probe set needs {q}; "
                "lower data.n_probe"
            )
        chosen.append(np.sort(rng.choice(pool, q, replace=False)))
    return np.concatenate(chosen)


def chance_accuracy(y_test: np.ndarray) -> float:
    """Accuracy of always answering the most common class of the test split."""
    return float(np.bincount(y_test).max() / len(y_test))


def probe_hash(dataset: str, indices: np.ndarray, labels: np.ndarray, x: np.ndarray) -> str:
    """A hash of the probe set (data set, indices, labels and input values)."""
    h = hashlib.sha256(dataset.encode())
    for arr in (indices.astype(np.int64), labels.astype(np.int64), x.astype(np.float32)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _digits(test_fraction: float, seed: int) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    return Dataset("digits", x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64))


def _mnist1d() -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    return Dataset(
        "mnist1d",
        np.asarray(d["x"], np.float32),
        np.asarray(d["y"], np.int64),
        np.asarray(d["x_test"], np.float32),
        np.asarray(d["y_test"], np.int64),
    )


def _torchvision(name: str, root: Path, download: bool) -> Dataset:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION[name])
    splits = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=download)
        except RuntimeError as err:
            raise DataError(
                f"{TORCHVISION[name]} not found under {root}/ ({err}). Set data.download: true "
                "on a machine with network access, or point data.data_dir at a copy"
            ) from err
        x = np.asarray(ds.data, dtype=np.float32) / 255.0
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        splits += [x, np.asarray(ds.targets, dtype=np.int64)]
    return Dataset(name, *splits)


def _npz(path: Path, layout: str) -> Dataset:
    if not path.is_file():
        raise DataError(f"data.npz_path: no file at {path}")
    with np.load(path, allow_pickle=False) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise DataError(f"{path} lacks arrays {sorted(missing)} (needs x/y train and test)")
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"{path}: x_{split} has {len(x)} rows but y_{split} has shape {y.shape}; "
                "labels must be one integer per row"
            )
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(f"{path}: y_{split} must hold non-negative integer class labels")
        arrays[f"x_{split}"] = npz_inputs(x, f"{path}: x_{split}", layout)
        if x.ndim == 4:  # x_test is read as x_train is
            layout = resolve(x.shape, layout, f"{path}: x_{split}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{path}: x_train rows have shape {arrays['x_train'].shape[1:]} but x_test rows "
            f"{arrays['x_test'].shape[1:]}"
        )
    if not set(np.unique(arrays["y_test"])) <= set(np.unique(arrays["y_train"])):
        raise DataError(f"{path}: y_test has classes that never occur in y_train")
    return Dataset(
        "npz",
        arrays["x_train"],
        arrays["y_train"].astype(np.int64),
        arrays["x_test"],
        arrays["y_test"].astype(np.int64),
    )


def npz_inputs(x: np.ndarray, name: str, layout: str = "auto") -> np.ndarray:
    """An ``npz`` input array as float32 model inputs, the way torchvision's images arrive.

    Integer arrays are 8-bit pixels (0-255) and are divided by 255; float arrays are taken as
    given. ``(N, F)`` is a feature vector per row, ``(N, H, W)`` a one-channel image (the channel
    axis is added), and a rank-4 array an image read channels first or last as ``layout`` says
    (``zoo.layout.resolve``).
    """
    if np.issubdtype(x.dtype, np.integer):
        low, high = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if low < 0 or high > 255:
            raise DataError(
                f"{name} holds integers from {low} to {high}; integer inputs are read as 8-bit "
                "pixels (0-255). Save other integer data as float (it is then used as given)"
            )
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise DataError(f"{name} has {bad} non-finite values (NaN or inf); clean the array")
    else:
        raise DataError(f"{name} has dtype {x.dtype}; use integer pixels (0-255) or floats")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise DataError(
            f"{name} has shape {x.shape}; use (N, features), (N, H, W), (N, C, H, W) or "
            "(N, H, W, C) images"
        )
    return channels_first(x, layout, name)


def check_architectures(ds: Dataset, archs: Iterable[str], source: str) -> None:
    """Fail early if the zoo holds an architecture this data set's input shape cannot feed."""
    for arch in ("cnn", "resnet"):
        if arch in set(archs) and len(ds.input_shape) != 3:
            raise DataError(
                f"zoo.space.arch has {arch}, which needs images (N, C, H, W), (N, H, W, C) or "
                f"(N, H, W), but {source} gives inputs of shape {ds.input_shape} per row; drop "
                f"{arch} or use image data"
            )


def _stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=n, random_state=seed, stratify=y)
    return np.sort(keep)


def data_order_seed(seed: int, epoch: int) -> int:
    """The generator seed of a model's data order in one epoch (one-model and group paths)."""
    return seed * 100_003 + epoch
