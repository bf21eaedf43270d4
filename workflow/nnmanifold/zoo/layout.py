"""Where an image array keeps its channels: the one rule for ``data.layout`` (no torch here).

Models take images channels first, ``(N, C, H, W)``; Keras and TensorFlow save them channels
last, ``(N, H, W, C)``. Under ``auto`` a rank-4 array is channels last when only its last axis
holds 1, 3 or 4 entries, channels first when only axis 1 does or when neither does (so
``(N, 5, H, W)`` reads as it always has), and ambiguous when both do: then ``data.layout`` decides.
The workflow's parse-time plan and the probe job both ask this module, so they never disagree.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np

from nnmanifold.core.errors import UserError

#: Channel counts an image axis is recognised by (grey, RGB, RGBA).
CHANNELS = (1, 3, 4)
LAYOUTS = ("auto", "nchw", "nhwc")


class LayoutError(UserError, ValueError):
    """An image array whose channel axis cannot be told without ``data.layout``."""


def resolve(shape: tuple[int, ...], layout: str, name: str) -> str:
    """``nchw`` or ``nhwc`` for a rank-4 array of ``shape`` under ``layout`` (auto/nchw/nhwc);
    ``name`` names the array in the error raised when ``auto`` cannot tell."""
    if layout != "auto":
        return layout
    first, last = shape[1] in CHANNELS, shape[-1] in CHANNELS
    if first and last:
        raise LayoutError(
            f"{name} has shape {tuple(shape)}: both axis 1 and the last axis could hold the "
            f"channels ({', '.join(map(str, CHANNELS))}). Set data.layout: nchw for "
            "(N, C, H, W) images or nhwc for (N, H, W, C) images (Keras, TensorFlow)"
        )
    return "nhwc" if last else "nchw"


def channels_first(x: np.ndarray, layout: str, name: str) -> np.ndarray:
    """A rank-4 image array as (N, C, H, W), read under ``layout``; other ranks as given."""
    if x.ndim != 4 or resolve(x.shape, layout, name) == "nchw":
        return x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def row_shape(shape: tuple[int, ...], layout: str, name: str) -> tuple[int, ...]:
    """The per-row input shape models see for an array of ``shape`` (rank 3 gains a channel)."""
    rows = tuple(shape[1:])
    if len(shape) == 3:
        return (1, *rows)
    if len(shape) == 4 and resolve(shape, layout, name) == "nhwc":
        return (rows[2], rows[0], rows[1])
    return rows


def npz_shape(path: str | Path, array: str = "x_train") -> tuple[int, ...]:
    """The shape of one array in an ``npz`` file, read from its header (the data stay on disk)."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{array}.npy") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        return tuple(read(fh)[0])


def npz_layout(path: str | Path, layout: str) -> str | None:
    """The layout an ``npz`` file's ``x_train`` resolves to, or None when it is no rank-4 image
    array, cannot be read, or is ambiguous under ``auto`` (the probe job then says why)."""
    try:
        stat = Path(path).stat()
    except (OSError, TypeError, ValueError):
        return None
    return _npz_layout(str(path), layout, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _npz_layout(path: str, layout: str, _mtime_ns: int, _size: int) -> str | None:
    """``npz_layout``, cached per file version: the zoo asks once per model spec."""
    try:
        shape = npz_shape(path)
        return resolve(shape, layout, path) if len(shape) == 4 else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
