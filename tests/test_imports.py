"""The analysis and report modules never import torch or Lightning (they run in the analysis
environment and must start fast); checked in a fresh interpreter, module by module. Every job
imports the command line first, so it imports no large library at all."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import nnmanifold

PACKAGE = Path(nnmanifold.__file__).parent
TORCH_FREE = ["analysis", "report", "core", "search"]
MODULES = [
    m.name
    for sub in TORCH_FREE
    for m in pkgutil.iter_modules([str(PACKAGE / sub)], f"nnmanifold.{sub}.")
] + [
    f"nnmanifold.steps.{m}"
    for m in ("features", "stats", "sensitivity", "figures", "search", "verify", "zoo")
]
MODULES.append("nnmanifold.zoo.data")  # the probe step's data sets


def _imported(module: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` importing ``module`` brings in, in a fresh interpreter."""
    code = f"import sys, {module}\nprint(','.join(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_no_torch(module):
    heavy = _imported(module, ("torch", "lightning", "pytorch_lightning"))
    assert not heavy, f"{module} imports {heavy}"


def test_command_line_imports_no_large_library():
    """Each step imports what it needs when it runs; the parser alone costs no large import."""
    heavy = _imported("nnmanifold.cli", ("torch", "pandas", "scipy", "sklearn", "h5py", "yaml"))
    assert not heavy, f"nnmanifold.cli imports {heavy}"


def test_every_subpackage_init_is_empty():
    """Package __init__ files stay empty, so importing a subpackage pulls in nothing."""
    inits = [p for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE]
    assert inits and all(p.read_text() == "" for p in inits)
