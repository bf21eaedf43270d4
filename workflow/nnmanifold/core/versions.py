"""The versions of the libraries that shape a result, recorded beside it."""

from __future__ import annotations

import functools


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a result, recorded beside it."""
    return dict(_library_versions())


@functools.cache
def _library_versions() -> tuple[tuple[str, str], ...]:
    """Looked up once per process: every file a job writes records them (7 ms each)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "nnmanifold",
        "torch",
        "pytorch-lightning",
        "numpy",
        "scipy",
        "scikit-learn",
        "h5py",
        "phate",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return tuple(out.items())
