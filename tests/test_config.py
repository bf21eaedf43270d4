from pathlib import Path

import pytest

from nnmanifold.core.config import ConfigError, load_config, validate


def test_defaults_filled_from_schema():
    config = validate({})
    assert config["data"]["name"] == "digits"
    assert config["geometry"]["sigma"] == 0.5
    assert config["zoo"]["space"]["lr"] == [0.01]


def test_default_config_file_is_valid():
    config = load_config(Path(__file__).parent.parent / "config" / "config.yaml")
    assert config["zoo"]["mode"] == "grid"


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"zoo": {"learning_rate": [0.1]}}, "'learning_rate'"),
        ({"zoo": {"space": {"lrr": [0.1]}}}, "'lrr'"),
        ({"typo": 1}, "'typo'"),
        ({"zoo": {"space": {"lr": "fast"}}}, "zoo.space.lr"),
        ({"zoo": {"space": {"lr": [-1.0]}}}, "zoo.space.lr"),
        ({"train": {"models_per_job": 0}}, "train.models_per_job"),
        ({"data": {"name": "imagenet"}}, "data.name"),
        ({"data": {"n_probe": "many"}}, "data.n_probe"),
        ({"geometry": {"sigma": 0}}, "geometry.sigma"),
        ({"geometry": {"sigma": float("inf")}}, "geometry.sigma"),
        ({"geometry": {"sigma": "mean"}}, "geometry.sigma"),
        ({"sensitivity": {"sigmas": [0.5, -1]}}, "sensitivity.sigmas.1"),
        ({"zoo": {"space": {"lr": {"low": 0.1, "high": 1}}}}, "zoo.space.lr"),
        ({"data": {"name": "npz"}}, "data.npz_path"),
        ({"zoo": {"space": {"depth": [0]}}}, "minimum of 1"),
        ({"zoo": {"mode": "random", "space": {"epochs": {"low": 0, "high": 3}}}}, "at least 1"),
        ({"zoo": {"mode": "random", "space": {"lr": {"low": 0, "high": 1}}}}, "above 0"),
    ],
)
def test_bad_config_names_the_key(config, named):
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert named in str(err.value)


def test_unknown_key_message_lists_allowed_keys():
    with pytest.raises(ConfigError, match="allowed: .*n_samples"):
        validate({"zoo": {"nsamples": 3}})


def _keys(schema, prefix=""):
    for key, sub in schema.get("properties", {}).items():
        yield prefix + key
        if sub.get("type") == "object" and key != "space":
            yield from _keys(sub, prefix + key + ".")


def test_every_config_key_is_documented():
    from nnmanifold.core.config import load_schema

    text = (Path(__file__).parent.parent / "config" / "README.md").read_text()
    undocumented = [k for k in _keys(load_schema()) if f"`{k.split('.')[-1]}`" not in text]
    assert not undocumented
