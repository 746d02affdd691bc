import json

import numpy as np
import pytest
import torch

from synthbench.benchmark.atomic import atomic_write_json
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.store import ResultStore, cell_hash
from synthbench.errors import UserError
from synthbench.generators.base import Generator

SPEC = {"dataset": "digits", "protocol": "replace", "generator": "edm", "seed": 0, "preset": {"name": "smoke"}}


def test_cell_hash_covers_every_field():
    assert cell_hash(SPEC) == cell_hash(dict(reversed(list(SPEC.items()))))
    assert cell_hash(SPEC) != cell_hash({**SPEC, "seed": 1})
    assert cell_hash(SPEC) != cell_hash({**SPEC, "preset": {"name": "fast"}})


def test_lookup_returns_only_finished_records(tmp_path):
    store = ResultStore(tmp_path)
    assert store.lookup(SPEC) is None
    store.write({"spec": SPEC, "cell_hash": cell_hash(SPEC), "status": "failed"})
    assert store.lookup(SPEC) is None  # failed cells are retried
    store.write({"spec": SPEC, "cell_hash": cell_hash(SPEC), "status": "ok", "metrics": {}})
    assert store.lookup(SPEC)["status"] == "ok"
    store.path_for(SPEC).write_text("{ truncated")
    assert store.lookup(SPEC) is None  # unreadable -> recomputed, with a warning


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


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
