"""replace and augment, end to end through the run grid at the smoke preset."""

from __future__ import annotations

import torch

from synthbench.benchmark.cell import Status
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.provenance import cpu_model
from synthbench.benchmark.store import ResultStore
from synthbench.generators.real import RealGenerator
from synthbench.plugins import GENERATORS

from conftest import run_cells

CPU = torch.device("cpu")
SMOKE = PRESETS["smoke"]


def _run(ds, store, gens, proto, opts=None, seeds=(0,)):
    return run_cells(ds, list(gens), {proto: opts or {}}, list(seeds), store)


def test_replace_real_and_edm_write_full_records(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = _run(smoke_digits, store, ["real", "edm"], "replace")
    assert [c.record.status for c in cells] == [Status.OK, Status.OK]
    for c in cells:
        rec = c.record
        m = rec.metrics["top1"]
        assert 0 <= m["value"] <= 1 and m["higher_is_better"] is True and m["n"] == len(smoke_digits.test)
        assert len(rec.details["per_class_accuracy"]) == 10
        assert sum(map(sum, rec.details["confusion_matrix"])) == len(smoke_digits.test)
        assert rec.spec.dataset_digest == smoke_digits.digest
        assert rec.cost["wall_s"]["cell_s"] > 0 and rec.provenance["torch_version"]
        assert rec.provenance["cpu"] == cpu_model()  # fp32 bytes repeat only on the same kind of CPU
        # the sample grid: two training images of each class, with their labels
        assert rec.details["sample_labels"] == sorted(list(range(10)) * 2)
        assert torch.tensor(rec.details["samples"]).shape == (20, *smoke_digits.image_shape)
        assert len(rec.details["gradcam"]["maps"]) == 10
        assert store.lookup(c.spec).to_json() == rec.to_json()  # the record on disk is the one returned
    assert cells[0].record.metrics["top1"]["value"] > 0.5  # real at smoke beats chance
    # the real row's grid shows the real train split's own images
    real = cells[0].record.details
    first = (smoke_digits.train.labels == 0).nonzero().flatten()[:2]
    assert real["samples"][:2] == smoke_digits.train.images[first].tolist()


def test_rerun_is_a_cache_hit_and_resume_skips_finished_cells(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    first = _run(smoke_digits, store, ["real"], "replace", seeds=(0,))
    # "killed" after seed 0: a run over seeds 0..1 computes only seed 1
    second = _run(smoke_digits, store, ["real"], "replace", seeds=(0, 1))
    assert [c.cached for c in second] == [True, False]
    assert second[0].record == first[0].record
    third = _run(smoke_digits, store, ["real"], "replace", seeds=(0, 1))
    assert all(c.cached for c in third)


def test_augment_sizes_and_partial_replacement(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    n = len(smoke_digits.train)
    cells = _run(smoke_digits, store, ["edm"], "augment", {"ratio": 0.5, "replace_fraction": 0.1})
    d = cells[0].record.details
    assert d["train_size"] == n + round(0.5 * n)
    assert d["synthetic_added"] == round(0.5 * n) and d["real_replaced"] == round(0.1 * n)


def test_real_replace_is_the_real_split(smoke_digits, tmp_path):
    """The oracle row trains on exactly the real train split."""
    from synthbench.benchmark.context import CellContext
    from synthbench.benchmark.sample_cache import SampleCache
    from synthbench.generators.base import FitContext

    gen = RealGenerator()
    gen.fitted(FitContext.from_dataset(smoke_digits, SMOKE, CPU, tmp_path))
    ctx = CellContext(smoke_digits, gen, SMOKE, 0, CPU, {}, SampleCache(tmp_path), tmp_path)
    split = ctx.synthetic(len(smoke_digits.train))
    assert torch.equal(split.images, smoke_digits.train.images)
    assert len(ctx.synthetic(2 * len(smoke_digits.train))) == 2 * len(smoke_digits.train)


class BrokenGenerator(RealGenerator):
    name = "broken-test"
    oracle = False

    def sample(self, labels, seeds):
        raise RuntimeError("boom")


def test_a_crashing_cell_is_recorded_and_the_grid_goes_on(smoke_digits, tmp_path):
    GENERATORS.register("broken-test", BrokenGenerator)
    try:
        store = ResultStore(tmp_path)
        cells = run_cells(smoke_digits, ["real", "broken-test"], "replace", [0], store)
    finally:
        GENERATORS.unregister("broken-test")
    assert cells[0].record.status == "ok"
    assert cells[1].record.status == "failed" and "boom" in cells[1].record.error
    assert store.path_for(cells[1].spec).exists()


def test_numbers_do_not_depend_on_how_the_grid_was_split(smoke_digits, tmp_path):
    """Seeds 0 and 1 in one run, or seed 1 then seed 0 in two runs with fresh
    caches: the same records (metrics and details) come out."""
    together = _run(smoke_digits, ResultStore(tmp_path / "a"), ["edm"], "augment", seeds=(0, 1))
    store_b = ResultStore(tmp_path / "b")
    apart = _run(smoke_digits, store_b, ["edm"], "augment", seeds=(1,)) + \
        _run(smoke_digits, store_b, ["edm"], "augment", seeds=(0,))
    by_seed = {c.spec.seed: c.record for c in apart}
    for c in together:
        assert c.record.metrics == by_seed[c.spec.seed].metrics
        assert c.record.details == by_seed[c.spec.seed].details
        assert c.record.cell_hash == by_seed[c.spec.seed].cell_hash


class FloatGenerator(RealGenerator):
    """Breaks the contract the way a user's adapter might: float images in [0, 1]."""

    name = "float-test"
    oracle = False

    def sample(self, labels, seeds):
        return super().sample(labels, seeds).float() / 255.0


class FitFailsGenerator(RealGenerator):
    name = "fit-fails-test"

    def fit(self, ctx):
        raise ValueError("no GPU memory left")


def test_contract_violations_and_fit_errors_are_failed_cells(smoke_digits, tmp_path):
    """A float-returning adapter gets failed records with the contract in the
    message (not ok records at chance accuracy), and an exception in fit fails
    that generator's cells while the grid goes on."""
    for cls in (FloatGenerator, FitFailsGenerator):
        GENERATORS.register(cls.name, cls)
    try:
        store = ResultStore(tmp_path)
        cells = run_cells(smoke_digits, ["real", "float-test", "fit-fails-test"], "replace", [0, 1], store)
    finally:
        for cls in (FloatGenerator, FitFailsGenerator):
            GENERATORS.unregister(cls.name)
    by_gen = {}
    for c in cells:
        by_gen.setdefault(c.spec.generator, []).append(c.record)
    assert [r.status for r in by_gen["real"]] == ["ok", "ok"]
    for r in by_gen["float-test"]:
        assert r.status == "failed" and "torch.float32 images; the contract is torch.uint8" in r.error
    for r in by_gen["fit-fails-test"]:
        assert r.status == "failed" and "fit-fails-test.fit failed: ValueError: no GPU memory left" in r.error
        assert "no GPU memory left" in r.traceback
    assert all(store.path_for(c.spec).exists() for c in cells)
