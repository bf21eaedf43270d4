import subprocess
import sys

import yaml


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nnmanifold", *args], capture_output=True, text=True, cwd=cwd
    )


def test_help_lists_every_step():
    out = _cli("--help").stdout
    for step in ("zoo", "probe", "train", "features", "distances", "embed", "stats", "figures"):
        assert step in out


def test_validate_prints_the_config_with_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("zoo: {seeds: [3]}\n")
    proc = _cli("validate", str(tmp_path / "c.yaml"))
    assert proc.returncode == 0
    config = yaml.safe_load(proc.stdout)
    assert config["zoo"]["seeds"] == [3] and config["geometry"]["sigma"] == 0.5


def test_user_errors_are_one_line_not_a_traceback(tmp_path):
    (tmp_path / "c.yaml").write_text("zoo: {sedes: [3]}\n")
    proc = _cli("validate", str(tmp_path / "c.yaml"))
    assert proc.returncode == 1
    assert "'sedes'" in proc.stderr and "Traceback" not in proc.stderr
