"""The conda environments (for --sdm conda) pin the same versions as constraints.txt (make)."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[name.lower().replace("_", "-")] = version
    return pins


@pytest.mark.parametrize("env", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_match_constraints(env):
    pins = _constraints()
    spec = yaml.safe_load(env.read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    assert pip, f"{env.name} pins nothing"
    for requirement in pip:
        name, _, version = requirement.partition("==")
        assert pins.get(name.lower()) == version, f"{env.name}: {requirement} vs constraints.txt"
