"""A flipped byte in any cached file is caught before the file is used, and the
run stops naming it (issue 13). torch's own reader loads a weights file with a
flipped byte silently (one of the reasons every cached file carries the digest
of its content, ``benchmark/cache.py``); end to end, a damaged classifier once
turned ``real`` x ``replace`` from 0.97 into 0.40 with status ``ok``."""

from __future__ import annotations

import shutil

import pytest

from synthbench.cli import main

ARGS = ["evaluate", "-g", "edm", "--preset", "smoke", "--seeds", "1", "-q", "--threads", "1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    with pytest.raises(SystemExit) as done:
        main([*ARGS, "--results", str(root)])
        raise SystemExit(0)
    assert (done.value.code or 0) == 0
    return root


@pytest.mark.parametrize("folder", ["classifiers", "generators", "samples"])
def test_a_flipped_byte_in_a_cached_file_stops_the_run_naming_it(folder, store, tmp_path, capsys):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    shutil.rmtree(copy / "records")  # the cells are computed again and read their caches
    files = sorted((copy / "cache" / folder).glob("*"))
    assert files, folder
    for path in files:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*ARGS, "--results", str(copy)])
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert any(str(path) in err for path in files) and "Delete that file" in err and "Traceback" not in err


def test_a_cache_files_label_is_one_safe_file_name(tmp_path):
    """fidelity labels its feature files with the dataset's name, which for an
    own folder is ``imagefolder:/abs/path``: the file landed in nested folders
    under ``cache/features/imagefolder:`` (a colon no Windows path may hold).
    Labels that are safe already (every built-in one) keep their paths, so no
    cached file moves."""
    from synthbench.benchmark.cache import JSON, DiskCache

    cache = DiskCache(tmp_path)
    odd = cache.path("features", "imagefolder:/data/my set-train-classifier", ("id",), JSON)
    assert odd.parent == tmp_path / "features" and ":" not in odd.name and "/" not in odd.name
    assert odd.name.startswith("imagefolder_data_my_set-train-classifier-")
    plain = cache.path("classifiers", "classifier", ("id",), JSON)
    assert plain.name.startswith("classifier-") and plain.parent == tmp_path / "classifiers"
