"""Every failure a user can meet is one paragraph with exit status 2, never a
traceback, and never loses a finished record (issue 13, item 6): malformed config
values, a full or read-only disk, an unreadable image, a plugin without a
description; temporary files a killed write left are removed on the next run;
one image folder reached by two paths is one dataset."""

from __future__ import annotations

import errno
import os
import time

import numpy as np
import pytest
from PIL import Image

from synthbench.api import GENERATORS, Generator
from synthbench.benchmark.atomic import atomic_write_json, remove_orphans
from synthbench.benchmark.datasets import load_dataset
from synthbench.benchmark.store import ResultStore
from synthbench.errors import UserError
from test_cli import run_cli


@pytest.mark.parametrize("line, words", [
    ("seeds: true", "seeds=True is not a whole number"),
    ("seeds: 2.7", "seeds=2.7 is not a whole number"),
    ("seeds: [1, -2]", "give a count"),  # a list of seeds is fine; a negative seed is not
    ("seeds: 0-x", "give a count"),
    ("threads: yes", "threads=True is not a whole number"),
    ("adapter_timeout: -3", "--adapter-timeout -3"),
    ("adapter_timeout: soon", "--adapter-timeout 'soon'"),
    ("generator: [edm, 3]", "is not a name"),  # a list of names is fine (7deb1f1); a number in it is not
])
def test_malformed_config_values_are_refused(line, words, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(line + "\n")
    code, _, err = run_cli(["evaluate", "--config", str(cfg), "--results", str(tmp_path), "--dry-run"], capsys)
    assert code == 2 and words in err and "Traceback" not in err, err


@pytest.mark.parametrize("code_name", ["ENOSPC", "EROFS"])
def test_a_full_or_read_only_disk_stops_with_exit_2_keeping_records(code_name, tmp_path, capsys, monkeypatch):
    args = ["evaluate", "-g", "real", "--preset", "smoke", "--seeds", "2", "--results", str(tmp_path), "-q"]
    written = []
    original = ResultStore.write

    def write_once(self, record):  # the first record lands, then the disk is full
        if written:
            raise OSError(getattr(errno, code_name), os.strerror(getattr(errno, code_name)), str(self.path_for(record.spec)))
        written.append(record)
        return original(self, record)

    monkeypatch.setattr(ResultStore, "write", write_once)
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "Traceback" not in err and "every record already written is kept" in err
    assert os.strerror(getattr(errno, code_name)) in err
    assert len(list(ResultStore(tmp_path).records())) == 1


def test_a_plugin_without_a_description_is_listed(capsys):
    class Bare(Generator):
        name = "bare"

    GENERATORS.register("bare", Bare)
    try:
        code, out, err = run_cli(["list", "generators"], capsys)
    finally:
        GENERATORS.unregister("bare")
    assert code == 0 and "bare (v1, registered at run time): (no description)" in out, err


def test_orphan_temporary_files_are_removed_on_the_next_run(tmp_path):
    kept = atomic_write_json(tmp_path / "records" / "a.json", {"x": 1})
    orphan = tmp_path / "cache" / "generators" / ".edm-abc.pt.k2j3h4g5.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"\0" * 1000)
    fresh = tmp_path / "cache" / ".pool.npz.q8w7e6r5.tmp"  # may be another run's write in progress
    fresh.write_bytes(b"\0")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    assert remove_orphans(tmp_path) == 1
    assert not orphan.exists() and fresh.exists() and kept.exists()


def _folder(root, classes=("a", "b"), per_class=4):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_an_unreadable_image_names_the_file(tmp_path):
    root = _folder(tmp_path / "imgs")
    bad = root / "b" / "2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(UserError, match=r"cannot read the image .*2\.png.*Remove or replace that file"):
        load_dataset(f"imagefolder:{root}")


def test_one_folder_by_two_paths_is_one_dataset(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    relative, absolute = load_dataset("imagefolder:imgs"), load_dataset(f"imagefolder:{root}")
    assert relative.name == absolute.name and relative.digest == absolute.digest


def test_a_non_finite_metric_is_a_failed_cell_not_an_unreadable_record(smoke_digits, tmp_path):
    from synthbench.api import PROTOCOLS, Protocol, ProtocolResult, metric
    from synthbench.benchmark.runner import resolve_grid, run_protocol

    class NaNScore(Protocol):
        name = "nan-score"
        description = "returns NaN"
        metrics = {"score": True}

        def run(self, ctx):
            return ProtocolResult({"score": metric(float("nan"), None, 1, True)}, {})

    PROTOCOLS.register(NaNScore.name, NaNScore)
    try:
        grid = resolve_grid(smoke_digits, ["real"], NaNScore.name, "smoke", (0,), "cpu")
        [cell] = run_protocol(grid, grid.protocols[0], ResultStore(tmp_path))
    finally:
        PROTOCOLS.unregister(NaNScore.name)
    assert cell.record.status.value == "failed" and "metrics.score.value" in cell.record.error
    [stored] = ResultStore(tmp_path).records(strict=True)  # written, and readable by every reader
    assert stored.status.value == "failed"


def test_openmp_threads_wait_passively_unless_the_user_says_otherwise():
    """Set before torch loads its OpenMP runtime (which reads it once), so a
    fresh process that imports synthbench first gets it; a user's setting wins."""
    import subprocess
    import sys

    probe = "import synthbench, os, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
