"""What a cell's killed run computed and kept is charged to the cell's record
when it runs again (``synthbench/benchmark/charges.py``), once, and to no other
cell."""

import json
import time

import numpy as np
import pytest
import torch

from synthbench.benchmark import sample_cache
from synthbench.benchmark.cache import JSON, MADE_KEY, NPZ, SAFETENSORS, TORCH, DiskCache
from synthbench.benchmark.charges import Charge, charging
from synthbench.benchmark.store import ResultStore
from synthbench.generators.base import Generator
from synthbench.protocols import fidelity

from conftest import run_cells

CONTENT = {
    NPZ: lambda: {"x": np.arange(4)},
    TORCH: lambda: {"x": torch.arange(4)},
    JSON: lambda: {"x": [0, 1, 2, 3]},
    SAFETENSORS: lambda: {"x": torch.arange(4.0)},
}


def _slowly(make):
    """A computation that takes a measurable time."""
    def compute():
        time.sleep(0.05)
        return make()
    return compute


@pytest.mark.parametrize("fmt", list(CONTENT), ids=[f.suffix for f in CONTENT])
def test_a_file_made_in_a_cell_charges_that_cell_once_when_read_back(fmt, tmp_path):
    cache = DiskCache(tmp_path)
    with charging(Charge("cell-a")) as made:
        cache.load_or_compute("f", "x", 1, fmt, "test file", _slowly(CONTENT[fmt]))
        cache.load_or_compute("f", "x", 1, fmt, "test file", CONTENT[fmt])
    assert made.resumed_s == 0  # computed by this run: its time is inside the cell's own
    path = cache.path("f", "x", 1, fmt)
    with charging(Charge("cell-a")) as again:
        content = cache.load_or_compute("f", "x", 1, fmt, "test file", lambda: pytest.fail("recomputed"))
        cache.read(path, fmt, "test file")
    assert MADE_KEY not in content  # the note is the cache's, not the caller's
    note = json.loads(str(fmt.load(path)[MADE_KEY]))
    assert note["cell"] == "cell-a" and note["seconds"] >= 0.05
    assert again.resumed_s == note["seconds"]  # once, though read twice
    with charging(Charge("cell-b")) as other:
        cache.read(path, fmt, "test file")
    assert other.resumed_s == 0


def test_outside_a_cell_nothing_is_noted(tmp_path):
    cache = DiskCache(tmp_path)
    cache.load_or_compute("f", "x", 1, JSON, "test file", lambda: {"x": 1})
    assert MADE_KEY not in cache.path("f", "x", 1, JSON).read_text()


def test_a_killed_cell_run_again_charges_what_it_kept(smoke_digits, tmp_path, monkeypatch):
    """``fidelity`` caches the real splits' features, then computes metrics; a
    run killed in between keeps the features, and the next run's record
    carries their seconds as ``resumed_s`` (outside ``cell_s``)."""
    store = ResultStore(tmp_path)
    metrics = fidelity.feature_metrics

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fidelity, "feature_metrics", killed)
    with pytest.raises(KeyboardInterrupt):
        run_cells(smoke_digits, ["real"], "fidelity", [0], store)
    monkeypatch.setattr(fidelity, "feature_metrics", metrics)
    kept = sorted((tmp_path / "cache" / "features").glob("*.npz"))
    assert len(kept) == 2
    seconds = sum(json.loads(str(NPZ.load(p)[MADE_KEY]))["seconds"] for p in kept)

    (cell,) = run_cells(smoke_digits, ["real"], "fidelity", [0], store)
    wall = cell.record.cost["wall_s"]
    assert cell.record.status == "ok", cell.record.error
    assert wall["resumed_s"] == pytest.approx(seconds, abs=2e-3) and wall["resumed_s"] > 0
    (other,) = run_cells(smoke_digits, ["real"], "fidelity", [1], store)  # reads them too: not its work
    assert "resumed_s" not in other.record.cost["wall_s"]


class SlowGenerator(Generator):
    """Image i is a constant image of value (seed mod 251), 10 ms a call; it dies
    on the call that starts at ``die_at``."""

    name = "slow"

    def __init__(self, die_at: int | None = None):
        super().__init__()
        self.die_at = die_at

    def sample_pool(self, labels, run_seed, start):
        if start == self.die_at:
            raise KeyboardInterrupt
        return super().sample_pool(labels, run_seed, start)

    def sample(self, labels, seeds):
        time.sleep(0.01)
        return torch.stack([torch.full((1, 2, 2), s % 251, dtype=torch.uint8) for s in seeds])


def test_a_pool_task_charges_the_blocks_a_killed_run_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_cache, "BLOCK", 4)
    cache, labels = sample_cache.SampleCache(tmp_path), torch.arange(10)
    with pytest.raises(KeyboardInterrupt):
        cache.pool(SlowGenerator(die_at=8), 0, labels, 12)  # blocks 0-3 and 4-7 kept, then killed
    cache.pool(SlowGenerator(), 0, labels, 12)  # the task run again: block 8-11
    pool = NPZ.load(cache.path(SlowGenerator(), 0, labels))
    assert len(pool["images"]) == 12 and len(pool["block_s"]) == 3 and not pool["block_charged"].any()
    assert cache.claim_seconds(SlowGenerator(), 0, labels) == pytest.approx(pool["block_s"].sum())
    assert pool["block_s"].sum() >= 0.03
    assert cache.claim_seconds(SlowGenerator(), 0, labels) == 0  # charged once
    before = cache.pool(SlowGenerator(), 0, labels, 12).images
    with charging(Charge("cell-a")):  # a cell that extends the pool pays with its own time
        grown = cache.pool(SlowGenerator(), 0, labels, 16).images
    assert torch.equal(grown[:12], before)
    assert cache.claim_seconds(SlowGenerator(), 0, labels) == 0


def test_a_pool_written_before_blocks_kept_their_seconds_claims_nothing(tmp_path):
    cache, labels = sample_cache.SampleCache(tmp_path), torch.arange(3)
    path = cache.path(SlowGenerator(), 0, labels)
    path.parent.mkdir(parents=True)
    cache.cache.save(path, NPZ, {"images": np.zeros((3, 1, 2, 2), np.uint8), "labels": np.arange(3)})
    assert cache.claim_seconds(SlowGenerator(), 0, labels) is None
    assert cache.claim_seconds(SlowGenerator(), 5, labels) is None  # no pool at all


def test_a_resumed_cells_estimate_counts_its_whole_work():
    """``--dry-run`` estimates a cell from comparable records: one that was
    resumed did part of its work in a killed run (``resumed_s``)."""
    from synthbench.benchmark.plan import comparable_costs

    from test_store import record

    rec = record("ok", cost={"wall_s": {"cell_s": 10.0, "resumed_s": 90.0, "fit_s": 5.0}})
    assert [v for k, v in comparable_costs([rec]).items() if k[0] == "cell"] == [[100.0]]


def test_a_row_new_to_a_dataset_is_estimated_from_its_records_on_another():
    """``--dry-run`` on a row with no record on this dataset (ddpm on
    fashion-mnist) carries its cost on another dataset across, scaled by how
    much dearer the new dataset is for the generators measured on both; it
    says so, and it stays unknown where nothing can be carried."""
    from synthbench.benchmark.plan import Estimate, estimate_for_key

    costs = {
        ("cell", "digits", "fast", "edm", "replace"): [10.0, 12.0, 14.0],
        ("cell", "fashion", "fast", "edm", "replace"): [120.0],   # x10 for edm
        ("cell", "digits", "fast", "real", "replace"): [2.0],
        ("cell", "fashion", "fast", "real", "replace"): [40.0],   # x20 for real
        ("cell", "digits", "fast", "ddpm", "replace"): [30.0],
        ("cell", "digits", "fast", "ddpm", "detect"): [5.0],     # no reference measured detect on both
        ("cell", "digits", "fast", "gan", "recon"): [0.0],       # unsupported: costs nothing anywhere
        ("cell", "fashion", "fast", "edm", "recon"): [900.0],
        ("cell", "digits", "fast", "edm", "recon"): [90.0],
    }
    assert estimate_for_key(("cell", "fashion", "fast", "edm", "replace"), costs) == Estimate(120.0)
    assert estimate_for_key(("cell", "fashion", "fast", "ddpm", "replace"), costs) == Estimate(450.0, "digits")
    assert estimate_for_key(("cell", "fashion", "fast", "gan", "recon"), costs) == Estimate(0.0, "digits")
    assert estimate_for_key(("cell", "fashion", "fast", "ddpm", "detect"), costs) is None
    assert estimate_for_key(("cell", "fashion", "paper", "ddpm", "replace"), costs) is None  # other preset
    assert estimate_for_key(("classifier", "fashion", "fast"), costs) is None


def test_a_pool_is_estimated_per_image_where_records_name_its_size():
    """A suite with ``scaleup`` draws x10 pools, one without (the Real-Fake
    ablation) x1: records that name their pool's size (``cost.pool_images``)
    give a cost per image, times the size the plan asks for; older records,
    which do not, give their whole pool's seconds as before."""
    from synthbench.benchmark.cell import CellSpec, Record, Status
    from synthbench.benchmark.plan import Estimate, Setting, Task, comparable_costs, estimate_s

    def record(generator: str, dataset: str, pool_s: float, images: int | None) -> Record:
        spec = CellSpec(schema_version=1, synthbench_version="0", dataset=dataset, dataset_digest="d",
                        generator=generator, generator_version=1,
                        generator_options={}, generator_extra={}, protocol="replace", protocol_version=1,
                        protocol_options={}, preset={"name": "fast"}, seed=0, device_type="cpu")
        cost = {"wall_s": {"cell_s": 1.0, "pool_s": pool_s}, **({"pool_images": images} if images else {})}
        return Record(spec=spec, status=Status.OK, cost=cost)

    def pool(generator: str, dataset: str, n: int) -> Task:
        return Task("pool", f"pool-{generator}", "a pool", Setting(dataset, "fast", "r"), (generator, {}), seed=0,
                    n=n)

    costs = comparable_costs([record("edm", "fashion", 3000.0, 30000), record("edm", "fashion", 2000.0, 30000),
                              record("ddpm", "fashion", 900.0, None), record("edm", "digits", 100.0, 10000),
                              record("sg", "digits", 20.0, 10000)])
    assert estimate_s(pool("edm", "fashion", 3000), costs) == Estimate(pytest.approx(250.0))  # 1/12 s an image
    assert estimate_s(pool("ddpm", "fashion", 3000), costs) == Estimate(900.0)  # no size named: the pool's own
    # a generator new to the dataset: its seconds per image on digits (1/500), scaled as edm's (x8.3)
    assert estimate_s(pool("sg", "fashion", 3000), costs) == Estimate(pytest.approx(50.0), "digits")


def test_work_a_cell_shares_with_later_cells_is_estimated_once():
    """``recon``'s first seed reconstructs (``shared_s``), later seeds read the
    reconstructions: a later seed is estimated from the cells' own work, not
    from the median with the first seed's reconstructions (in a measured suite
    that median predicted 2,053 s for a cell that took 860). On a dataset new to
    the store, the first cell of the run pays the shared work, scaled."""
    from synthbench.benchmark.cell import CellSpec, Record, Status
    from synthbench.benchmark.plan import Estimate, Setting, Task, comparable_costs, estimate_tasks

    def record(generator: str, dataset: str, seed: int, wall: dict[str, float]) -> Record:
        spec = CellSpec(schema_version=1, synthbench_version="0", dataset=dataset, dataset_digest="d",
                        generator=generator, generator_version=1, generator_options={}, generator_extra={},
                        protocol="recon", protocol_version=1, protocol_options={}, preset={"name": "fast"},
                        seed=seed, device_type="cpu")
        return Record(spec=spec, status=Status.OK, cost={"wall_s": wall})

    def cell(generator: str, dataset: str, seed: int) -> Task:
        spec = record(generator, dataset, seed, {}).spec
        return Task("cell", f"cell-{generator}-{dataset}-{seed}", "a cell", Setting(dataset, "fast", "r"),
                    (generator, {}), ("recon", {}), seed=seed, spec=spec)

    costs = comparable_costs([
        record("edm", "fashion", 0, {"cell_s": 3300.0, "reconstruct_s": 2400.0, "shared_s": 2400.0}),
        record("edm", "fashion", 1, {"cell_s": 860.0}),
        record("edm", "digits", 0, {"cell_s": 330.0, "shared_s": 240.0}),
        record("edm", "digits", 1, {"cell_s": 90.0}),
        record("ddpm", "digits", 0, {"cell_s": 500.0, "shared_s": 400.0}),
        record("ddpm", "digits", 1, {"cell_s": 100.0}),
        record("edm", "mnist", 0, {"cell_s": 500.0}),  # written before shared_s: its seeds did the shared work
    ])
    got = estimate_tasks([cell("edm", "fashion", 2), cell("ddpm", "fashion", 0), cell("ddpm", "fashion", 1),
                          cell("edm", "mnist", 1)], costs)
    assert got["cell-edm-mnist-1"] == Estimate(500.0)  # as before: no shared work added to a row with records
    assert got["cell-edm-fashion-2"] == Estimate(880.0)  # its reconstructions are cached: the seeds' own work
    # ddpm is new to fashion: its digits figures scaled by edm's ratios (own work x880/90, reconstructions
    # x10); the first cell reconstructs, once
    assert got["cell-ddpm-fashion-0"] == Estimate(pytest.approx(100.0 * 880 / 90 + 400.0 * 10), "digits")
    assert got["cell-ddpm-fashion-1"] == Estimate(pytest.approx(100.0 * 880 / 90), "digits")


def test_a_fit_is_estimated_from_fits_that_trained_less_the_base_they_built_on():
    """A fit that read cached weights took seconds, one that trained took an
    hour: the estimate of a fit task (which runs only when nothing is cached)
    comes from the fits that trained. A fit that trained the network it builds
    on inside itself (``fit_base_s``, ``realfake`` on ``edm``'s) counts only its
    own part: the base is a task of its own in the plan."""
    from synthbench.benchmark.cell import CellSpec, Record, Status
    from synthbench.benchmark.plan import Estimate, Setting, Task, comparable_costs, estimate_s

    def record(generator: str, wall: dict[str, float]) -> Record:
        spec = CellSpec(schema_version=1, synthbench_version="0", dataset="fashion", dataset_digest="d",
                        generator=generator, generator_version=1, generator_options={}, generator_extra={},
                        protocol="replace", protocol_version=1, protocol_options={}, preset={"name": "fast"},
                        seed=0, device_type="cpu")
        return Record(spec=spec, status=Status.OK, cost={"wall_s": {"cell_s": 1.0, **wall}})

    def fit(generator: str) -> Task:
        return Task("fit", f"fit-{generator}", "a fit", Setting("fashion", "fast", "r"), (generator, {}))

    costs = comparable_costs([
        record("edm", {"fit_s": 2000.0, "fit_train_s": 1990.0}),
        record("edm", {"fit_s": 2200.0, "fit_train_s": 2190.0}),
        record("edm", {"fit_s": 2.0}), record("edm", {"fit_s": 3.0}), record("edm", {"fit_s": 2.5}),  # cache reads
        record("realfake", {"fit_s": 2400.0, "fit_base_s": 2000.0, "fit_finetune_s": 390.0}),
        record("realfake", {"fit_s": 420.0, "fit_finetune_s": 410.0}),
        record("stylegan3", {"fit_s": 300.0}),  # an adapter that names no phase: its fit_s as it is
    ])
    assert estimate_s(fit("edm"), costs) == Estimate(2100.0)  # not the median with the reads (3.0)
    assert estimate_s(fit("realfake"), costs) == Estimate(410.0)  # its own 400 and 420, not the base's 2000
    assert estimate_s(fit("stylegan3"), costs) == Estimate(300.0)


def test_a_cell_charges_the_fit_its_generator_builds_on_as_fit_base_s(tmp_path):
    """A cell claims the cost of the base fit task (``edm``'s network, which
    ``realfake`` fine-tunes) with its own fit's: both are in ``fit_s`` (the
    board's CPU-hours), the base's also as ``fit_base_s``."""
    from synthbench.benchmark.atomic import atomic_write_json
    from synthbench.benchmark.plan import task_marker
    from synthbench.benchmark.tasks import _claim_shared_cost

    atomic_write_json(task_marker(tmp_path, "fit-base"), {"cost": {"fit_s": 2000.0, "fit_train_s": 1990.0}})
    atomic_write_json(task_marker(tmp_path, "fit-own"), {"cost": {"fit_s": 400.0, "fit_finetune_s": 390.0}})
    cost, _ = _claim_shared_cost(tmp_path, ("fit-base", "fit-own"), "cell-1", bases=("fit-base",))
    assert cost == {"fit_s": 2400.0, "fit_base_s": 2000.0, "fit_finetune_s": 390.0}


def test_a_fit_trained_inside_a_cell_is_charged_once(smoke_digits, tmp_path):
    """A protocol may fit the generator on a subset its plan did not list (a
    third-party one may not declare ``generator_fits``): the fit is then trained
    inside the cell, so its time is already in ``cell_s`` and must not be charged
    again as a shared ``fit_s`` (cell.COST_PHASES adds both)."""
    from synthbench.api import GENERATORS, PROTOCOLS, Generator, Protocol, ProtocolResult, metric
    from synthbench.benchmark.cell import COST_PHASES
    from synthbench.benchmark.runner import resolve_grid, run_protocol

    class SlowFit(Generator):
        name = "slow-fit"

        def fit(self, ctx):
            time.sleep(0.5)
            self.shape = ctx.image_shape
            return {"n": len(ctx.train)}

        def sample(self, labels, seeds):
            return torch.zeros((len(labels), *self.shape), dtype=torch.uint8)

    class FitsASubset(Protocol):
        name = "fits-a-subset"
        description = "fits the generator on ten images inside the cell"
        metrics = {"score": True}
        uses_reference_classifier = False

        def needs_fitted_generator(self):
            return False

        def run(self, ctx):
            ctx.fit_generator(ctx.dataset.train.subset(torch.arange(10)))
            return ProtocolResult({"score": metric(1.0, None, 1, True)}, {})

    GENERATORS.register(SlowFit.name, SlowFit)
    PROTOCOLS.register(FitsASubset.name, FitsASubset)
    try:
        grid = resolve_grid(smoke_digits, [SlowFit.name], FitsASubset.name, "smoke", (0,), "cpu")
        [cell] = run_protocol(grid, grid.protocols[0], ResultStore(tmp_path))
    finally:
        GENERATORS.unregister(SlowFit.name)
        PROTOCOLS.unregister(FitsASubset.name)
    assert cell.record.status.value == "ok", cell.record.error
    wall = cell.record.cost["wall_s"]
    assert 0.5 <= wall["cell_fit_s"] <= wall["cell_s"]
    assert wall["shared_s"] == pytest.approx(wall["cell_fit_s"], abs=2e-3)  # later cells read the weights
    charged = sum(wall.get(k, 0.0) for k in COST_PHASES)
    assert charged == pytest.approx(wall["cell_s"] + wall.get("fit_s", 0.0))
    assert wall.get("fit_s", 0.0) < 0.5  # no planned fit: the in-cell one is not charged twice
