"""Shell command lines for the rules: ``python -m nnmanifold <step>`` with quoted run-time flags.

Snakemake formats a rule's shell command, so every value is shell-quoted and its braces escaped:
no value (config or path) can end a command or run another.
"""

from __future__ import annotations

import os
import shlex
from typing import Any


def quoted(value: Any) -> str:
    """One shell word for a value in a shell command Snakemake formats: shell-quoted, braces
    escaped."""
    return shlex.quote(str(value)).replace("{", "{{").replace("}", "}}")


def flags(**values: Any) -> str:
    """Run-time flags for a shell command (``--name value``, each value ``quoted``; ``True``
    is a bare flag, ``False`` none). Identities go to ``params`` instead: a flag reruns nothing."""
    words = []
    for name, value in values.items():
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            words.append(flag)
        elif value is not False:
            words += [flag, quoted(value)]
    return " ".join(words)


def step(results: str, name: str, *run_flags: str) -> str:
    """The command line of a workflow step: results folder and run-time flags included."""
    return " ".join(["python -m nnmanifold", name, flags(results=results), *run_flags])


def shell_prefix(source: str, python: str | None) -> str:
    """What every rule's shell runs first: find the package in its ``source`` folder, and run
    ``python``'s interpreter (the one that runs Snakemake) unless rules get conda environments
    (``python`` None)."""
    prefix = f"export PYTHONPATH={quoted(source)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    if python is not None:
        prefix += f"export PATH={quoted(os.path.dirname(python))}:$PATH; "
    return prefix
