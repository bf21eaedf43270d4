"""Load and validate a run configuration against the JSON schema; defaults live in the schema."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from nnmanifold.core.errors import UserError
from nnmanifold.geometry.diffusion import check_sigma

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


#: Zoo axes that count things (layers, units, epochs): at least 1.
POSITIVE_INTEGER_AXES = {"depth", "width", "channels", "batch_size", "epochs"}


class ConfigError(UserError, ValueError):
    """The configuration names an unknown key or holds a value of the wrong type or range."""


def load_schema() -> dict:
    """The config JSON schema (YAML on disk)."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_config(path: str | Path) -> dict:
    """Read a YAML config (safe loader) and return it validated with defaults."""
    return validate(yaml.safe_load(Path(path).read_text()) or {})


def validate(config: Mapping[str, Any]) -> dict:
    """Return a validated copy of ``config`` with every default filled in.

    Raises ConfigError naming the offending key (e.g. ``zoo.space.lr``) and what is wrong.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"the config must be a mapping of keys to values, not {type(config)}")
    schema = load_schema()
    filled = copy.deepcopy(dict(config))
    errors = sorted(_DefaultFilling(schema).iter_errors(filled), key=lambda e: list(e.path))
    if errors:
        raise ConfigError("invalid config:\n" + "\n".join(_describe(e) for e in errors))
    _check_consistency(filled)
    return filled


def _check_consistency(config: dict) -> None:
    """Rules the schema cannot express: grid needs lists; npz needs a path; ranges ordered;
    sigma in range (checked where operators check it)."""
    zoo = config["zoo"]
    for key, axis in zoo["space"].items():
        if isinstance(axis, dict):
            if zoo["mode"] == "grid":
                raise ConfigError(
                    f"config key 'zoo.space.{key}': a range {{low, high}} needs zoo.mode: random; "
                    "grid mode takes a list of values"
                )
            if axis["low"] > axis["high"]:
                raise ConfigError(f"config key 'zoo.space.{key}': low must not exceed high")
            if axis.get("log") and axis["low"] <= 0:
                raise ConfigError(f"config key 'zoo.space.{key}': a log range needs low > 0")
            floor = 1 if key in POSITIVE_INTEGER_AXES else 0
            if axis["low"] < floor or (key == "lr" and axis["low"] <= 0):
                bound = "above 0" if key == "lr" else f"at least {floor}"
                raise ConfigError(f"config key 'zoo.space.{key}': low must be {bound}")
    sigmas = {"geometry.sigma": config["geometry"]["sigma"]}
    sigmas.update(
        {f"sensitivity.sigmas.{i}": s for i, s in enumerate(config["sensitivity"]["sigmas"])}
    )
    for key, sigma in sigmas.items():
        try:
            check_sigma(sigma)
        except ValueError as err:
            raise ConfigError(f"config key '{key}': {err}") from None
    if config["data"]["name"] == "npz" and not config["data"]["npz_path"]:
        raise ConfigError("config key 'data.npz_path': required when data.name is npz")
    _check_network_groups(config)


#: The three kinds of network group: the key that names the kind.
NETWORK_KINDS = ("factory", "torchscript", "activations")


def _check_network_groups(config: dict) -> None:
    """Each network group is of one kind, a factory comes with checkpoints, names are unique."""
    seen: set[str] = set()
    for section in ("networks", "place"):
        for i, group in enumerate(config[section]):
            key = f"config key '{section}[{i}]' (group {group['name']!r})"
            kinds = [k for k in NETWORK_KINDS if k in group]
            if len(kinds) != 1:
                raise ConfigError(
                    f"{key}: give exactly one of factory (with checkpoints), torchscript or "
                    f"activations, not {kinds or 'none'}"
                )
            if ("checkpoints" in group) != (kinds == ["factory"]):
                raise ConfigError(f"{key}: checkpoints goes with factory, and factory needs it")
            if group["name"] in seen:
                raise ConfigError(f"{key}: the name is used twice; network ids start with it")
            seen.add(group["name"])


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f" under '{key}'" if error.path else ""
        return (
            f"- unknown config key{where}: {', '.join(repr(x) for x in extra)} "
            f"(allowed: {', '.join(allowed)})"
        )
    if error.validator == "oneOf":
        deepest = max(error.context, key=lambda e: len(e.path), default=None)
        detail = f" ({deepest.message})" if deepest is not None else ""
        return f"- config key '{key}': {error.instance!r} is not an allowed value{detail}"
    if error.validator in ("pattern", "not") and "pattern_hint" in error.schema:
        return f"- config key '{key}': {error.instance!r} is not {error.schema['pattern_hint']}"
    return f"- config key '{key}': {error.message}"


def _from_text(validator, value: str) -> Any:
    """A string where the schema wants another type, read as YAML: Snakemake hands nested
    ``--config 'geometry={sigma: 0.7}'`` values over as text. Kept as text if that does not fit,
    or if it reads as other text (YAML folds newlines: a bad path must be named, not mended)."""
    if validator.is_valid(value):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if validator.is_valid(parsed) and not isinstance(parsed, str) else value


def _extend_with_default(validator_class: type) -> type:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
                elif isinstance(instance.get(name), str):
                    instance[name] = _from_text(validator.evolve(schema=subschema), instance[name])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFilling = _extend_with_default(jsonschema.Draft7Validator)
