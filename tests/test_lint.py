"""The project's own style gates: ruff, snakefmt and snakemake --lint stay clean."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_ruff_check_and_format():
    check = _run(str(BIN / "ruff"), "check", ".")
    assert check.returncode == 0, check.stdout
    fmt = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout


def test_snakefmt():
    proc = _run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert proc.returncode == 0, proc.stderr


def test_snakemake_lint():
    proc = _run(str(BIN / "snakemake"), "--lint", "--cores", "1")
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, proc.stdout
