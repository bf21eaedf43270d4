"""File facts: what a parse learns of the networks' files is remembered while they are unchanged,
and learnt again as soon as one changes (content, size, times), never served stale."""

import json
import os
import time

import numpy as np
import pytest
from test_networks import MLPS, _config, _validate, _write_probe, workdir  # noqa: F401

from nnmanifold.core import storage
from nnmanifold.extract import sources


@pytest.fixture
def not_racy(monkeypatch):
    """Remember facts of files changed just now (the tests' files are all new)."""
    monkeypatch.setattr(storage, "RACY_NS", 0)


def _counting(monkeypatch, module, name) -> list[str]:
    """Calls of ``module.name`` (by first argument), still calling it."""
    calls, real = [], getattr(module, name)

    def counted(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_fact_is_remembered_until_the_file_changes(tmp_path, not_racy):
    path, facts_file = tmp_path / "w.pt", tmp_path / "cache" / "files.json"
    path.write_bytes(b"a" * 100)
    learnt = []

    def learn():
        learnt.append(1)
        return storage.file_hash(path)

    facts = storage.FileFacts(facts_file)
    first = facts.get(path, "hash", learn)
    facts.save()
    again = storage.FileFacts(facts_file)  # a later parse
    assert again.get(path, "hash", learn) == first and len(learnt) == 1
    # same size, same modification time, new content: the change time tells (a pause first, so
    # that kernels with coarse timestamps see a new tick)
    st = os.stat(path)
    time.sleep(0.05)
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert again.get(path, "hash", learn) != first and len(learnt) == 2
    path.write_bytes(b"c" * 101)
    assert again.get(path, "hash", learn) == storage.file_hash(path) and len(learnt) == 3
    # replaced by another file of the same size and times (a rename): the inode tells
    st, other = os.stat(path), tmp_path / "other.pt"
    other.write_bytes(b"d" * 101)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)
    assert again.get(path, "hash", learn) == storage.file_hash(path) and len(learnt) == 4


def test_facts_of_deleted_files_are_forgotten_and_an_unwritable_file_is_a_warning(
    tmp_path, not_racy, caplog
):
    kept, deleted = tmp_path / "kept.pt", tmp_path / "deleted.pt"
    kept.write_bytes(b"a"), deleted.write_bytes(b"b")
    facts_file = tmp_path / "cache" / "files.json"
    facts = storage.FileFacts(facts_file)
    facts.get(kept, "hash", lambda: "h1"), facts.get(deleted, "hash", lambda: "h2")
    facts.save()
    deleted.unlink()
    storage.FileFacts(facts_file).save()  # a parse that saw neither: only the gone one goes
    assert list(json.loads(facts_file.read_text())) == [str(kept)]
    blocked = tmp_path / "not_a_folder" / "files.json"  # its folder cannot be made
    blocked.parent.write_text("")
    again = storage.FileFacts(blocked)
    assert again.get(kept, "hash", lambda: "h1") == "h1"
    again.save()
    assert "not written" in caplog.text


def test_facts_of_a_file_changed_just_now_are_not_remembered(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"a")
    facts = storage.FileFacts(tmp_path / "files.json")
    learnt = []
    for _ in range(2):
        facts.get(path, "hash", lambda: learnt.append(1) or "h")
    facts.save()
    assert len(learnt) == 2 and not (tmp_path / "files.json").exists()


def test_a_corrupt_facts_file_is_learnt_afresh(tmp_path, not_racy, caplog):
    path, facts_file = tmp_path / "w.pt", tmp_path / "files.json"
    path.write_bytes(b"a")
    facts_file.write_text('{"truncated": ')
    facts = storage.FileFacts(facts_file)
    assert facts.get(path, "hash", lambda: "h1") == "h1"
    assert "unreadable" in caplog.text
    facts.save()
    assert json.loads(facts_file.read_text())[str(path)]["hash"] == "h1"


def test_a_parse_reads_only_the_files_that_changed(workdir, digits, monkeypatch, caplog, not_racy):  # noqa: F811
    """`nnmanifold validate` twice over checkpoints and activations files reads none of them the
    second time; a file rewritten with too few rows is read again and refused."""
    probe = _write_probe(workdir, digits)
    rows = np.random.default_rng(0).normal(size=(len(probe["x"]), 4))
    (workdir / "arrays").mkdir()
    for i in range(3):
        np.savez(workdir / "arrays" / f"a{i}.npz", activations=rows + i, probe_hash=probe["hash"])
    config = _config(
        networks=[
            {**MLPS, "checkpoints": "ckpt/*.pt"},
            {"name": "arr", "activations": "arrays/*.npz"},
        ]
    )
    hashed = _counting(monkeypatch, sources, "file_hash")
    read = _counting(monkeypatch, sources, "read_array")
    assert _validate(workdir, config, monkeypatch, caplog)[0] == 0
    assert len(hashed) == 5 and len(read) == 3
    hashed.clear(), read.clear()
    assert _validate(workdir, config, monkeypatch, caplog)[0] == 0
    assert hashed == [] and read == []
    short = workdir / "arrays" / "a1.npz"
    np.savez(short, activations=rows[:-1], probe_hash=probe["hash"])
    status, logged = _validate(workdir, config, monkeypatch, caplog)
    assert status == 1 and "a1.npz: shape" in logged
    assert hashed == ["arrays/a1.npz"] and read == ["arrays/a1.npz"]
    hashed.clear(), read.clear()  # what the failed parse learnt is kept
    assert _validate(workdir, config, monkeypatch, caplog)[0] == 1
    assert hashed == [] and read == []
