import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from synthbench.benchmark.atomic import atomic_write_json
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.cell import CellSpec, Record, Status, cell_hash, seal
from synthbench.benchmark.store import ResultStore
from synthbench.errors import UserError
from synthbench.generators.base import Generator

SPEC = {"schema_version": 1, "synthbench_version": "0.1.0", "dataset": "digits", "dataset_digest": "d" * 64,
        "generator": "edm", "generator_version": 1, "generator_options": {}, "generator_extra": {},
        "protocol": "replace", "protocol_version": 1, "protocol_options": {}, "preset": {"name": "smoke"},
        "seed": 0, "device_type": "cpu"}


def record(status: str, spec: dict = SPEC, **fields) -> Record:
    body = {"schema_version": 1, "spec": spec, "cell_hash": cell_hash(spec), "status": status, "error": None,
            "metrics": {}, "details": {}, "cost": {}, "provenance": {}}
    return Record.from_json(seal({**body, **fields}))


def test_cell_hash_covers_every_field():
    assert cell_hash(SPEC) == cell_hash(dict(reversed(list(SPEC.items()))))
    assert cell_hash(SPEC) != cell_hash({**SPEC, "seed": 1})
    assert cell_hash(SPEC) != cell_hash({**SPEC, "preset": {"name": "fast"}})
    spec = CellSpec.from_json(SPEC)
    assert spec.to_json() == SPEC and spec.key == cell_hash(SPEC)  # the spec's JSON is the record format's


def test_lookup_returns_only_finished_records(tmp_path):
    store = ResultStore(tmp_path)
    spec = CellSpec.from_json(SPEC)
    assert store.lookup(spec) is None
    store.write(record("failed"))
    assert store.lookup(spec) is None  # failed cells are retried
    store.write(record("ok", metrics={}))
    assert store.lookup(spec).status == Status.OK == "ok"
    store.path_for(spec).write_text("{ truncated")
    assert store.lookup(spec) is None  # unreadable -> recomputed, with a warning


def test_malformed_records_are_refused(tmp_path):
    good = record("ok").to_json()
    with pytest.raises(ValueError, match="cell_hash"):
        Record.from_json({**good, "spec": {**SPEC, "seed": 1}})  # an edited spec no longer matches its hash
    with pytest.raises(ValueError, match="status"):
        Record.from_json({**good, "status": "done"})
    with pytest.raises(ValueError, match="device_type"):
        Record.from_json({**good, "spec": {k: v for k, v in SPEC.items() if k != "device_type"}})
    store = ResultStore(tmp_path)
    store.write(record("ok"))
    bad = store.path_for(CellSpec.from_json(SPEC)).with_name("seed9-broken.json")
    bad.write_text(json.dumps({**good, "status": "done"}))
    assert [r.cell_hash for r in store.records()] == [cell_hash(SPEC)]  # skipped
    with pytest.raises(UserError, match="seed9-broken.json"):
        list(store.records(strict=True))


def test_the_store_reads_every_committed_record_back_unchanged():
    """The spec's JSON is the record format's: every record committed under
    results/ must still validate, hash to its cell_hash, sit at the path the store
    gives its spec, and read back to exactly the JSON on disk."""
    root = Path(__file__).resolve().parents[1] / "results"
    store = ResultStore(root)
    paths = sorted((root / "records").rglob("*.json"))
    assert len(paths) >= 50  # not vacuous: the published store holds at least the digits grid's first protocols
    for path in paths:
        data = json.loads(path.read_text())
        rec = Record.from_json(data)
        assert rec.cell_hash == data["cell_hash"] == cell_hash(data["spec"]), path
        assert store.path_for(rec.spec) == path
        assert rec.to_json() == data, path
    assert len(list(store.records(strict=True))) == len(paths)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_write_gives_the_mode_open_would(tmp_path):
    """The temporary file behind an atomic write is made 0600; the kept file must
    not stay so, or a group sharing the store could not read its records."""
    ref = tmp_path / "ref.json"
    ref.write_text("{}")  # the mode the process's umask gives a plainly created file
    kept = atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert stat.S_IMODE(kept.stat().st_mode) == stat.S_IMODE(ref.stat().st_mode)
    assert stat.S_IMODE(ref.stat().st_mode) != 0o600  # not vacuous under the usual umasks (022, 002)


class CountingGenerator(Generator):
    """Image i is a constant image of value (seed mod 251): checks prefix logic."""

    name = "counting"

    def __init__(self):
        super().__init__()
        self.generated = 0

    def sample(self, labels, seeds):
        self.generated += len(seeds)
        return torch.stack([torch.full((1, 2, 2), s % 251, dtype=torch.uint8) for s in seeds])


def test_pools_are_prefixes_and_extend_lazily(tmp_path):
    gen = CountingGenerator()
    cache = SampleCache(tmp_path)
    labels = torch.arange(10)
    small = cache.pool(gen, 0, labels, 7)
    assert gen.generated == 7
    big = cache.pool(gen, 0, labels, 25)
    assert gen.generated == 25  # only the missing 18 were drawn
    assert torch.equal(big.images[:7], small.images)
    assert big.labels.tolist() == (list(range(10)) * 3)[:25]
    again = cache.pool(gen, 0, labels, 12)
    assert gen.generated == 25 and torch.equal(again.images, big.images[:12])
    other_seed = cache.pool(gen, 1, labels, 7)
    assert not torch.equal(other_seed.images, small.images)


def test_corrupt_pool_is_a_clear_error(tmp_path):
    gen = CountingGenerator()
    cache = SampleCache(tmp_path)
    cache.pool(gen, 0, torch.arange(3), 3)
    path = cache.path(gen, 0, torch.arange(3))
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="Delete that file"):
        cache.pool(gen, 0, torch.arange(3), 3)


def test_pools_refuse_pickles(tmp_path):
    gen = CountingGenerator()
    cache = SampleCache(tmp_path)
    path = cache.path(gen, 0, torch.arange(3))
    path.parent.mkdir(parents=True)
    np.savez(path, images=np.array([object()], dtype=object), labels=np.arange(3))
    with pytest.raises(UserError):
        cache.pool(gen, 0, torch.arange(3), 3)
