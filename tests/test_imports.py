"""The analysis and report modules never import torch or Lightning (they run in the analysis
environment and must start fast); checked in a fresh interpreter, module by module."""

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


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_no_torch(module):
    code = (
        f"import sys, {module}\n"
        "heavy = [m for m in ('torch', 'lightning', 'pytorch_lightning') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_every_subpackage_init_is_empty():
    """Package __init__ files stay empty, so importing a subpackage pulls in nothing."""
    inits = [p for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE]
    assert inits and all(p.read_text() == "" for p in inits)
