"""A fit killed part-way resumes from its snapshot and ends with the same bytes
as one that was never stopped (``synthbench/benchmark/snapshots.py``)."""

import time

import pytest
import torch

from synthbench.benchmark.context import FitContext
from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.snapshots import Resumable
from synthbench.errors import UserError
from synthbench.plugins import GENERATORS

from conftest import killed_after

KILL_AFTER = 2
"""The step after whose snapshot the first run is killed."""

# Each in-suite training loop, at 6 steps; realfake's kill falls in its fine-tuning.
LOOPS = [
    ("edm", {"train_steps": "6"}),
    ("ddpm", {"train_steps": "6"}),
    ("stylegan3", {"train_steps": "6"}),
    ("realfake", {"base_train_steps": "3", "finetune_steps": "6"}),
]


def _fit(name, options, dataset, cache_dir):
    cls = GENERATORS.get(name)
    gen = cls(**resolve_options(cls.options, options, name))
    ctx = FitContext.from_dataset(dataset, PRESETS["smoke"], torch.device("cpu"), cache_dir)
    ctx.snapshot_every_s = 0.0  # a snapshot after every step
    return gen.fitted(ctx), ctx


def _weights(cache_dir, name):
    (path,) = (cache_dir / "generators").glob(f"{name}-*[0-9a-f].pt")
    return torch.load(path, map_location="cpu", weights_only=True)


def _starts(monkeypatch) -> list[tuple[str, int]]:
    """From now on, each training loop's (snapshot name, first step), as it starts."""
    starts = []
    init = Resumable.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        starts.append((self.path.name if self.path else None, self.start))

    monkeypatch.setattr(Resumable, "__init__", spy)
    return starts


@pytest.mark.parametrize("name,options", LOOPS, ids=[n for n, _ in LOOPS])
def test_a_killed_fit_resumes_to_the_same_weights(name, options, smoke_digits, tmp_path, monkeypatch):
    whole, _ = _fit(name, options, smoke_digits, tmp_path / "whole")
    with killed_after(monkeypatch, KILL_AFTER, only=lambda run: run.path.name.startswith(f"{name}-")):
        _fit(name, options, smoke_digits, tmp_path / "killed")
    (snapshot,) = (tmp_path / "killed" / "generators").glob(f"{name}-*.snapshot.pt")
    starts = _starts(monkeypatch)
    resumed, ctx = _fit(name, options, smoke_digits, tmp_path / "killed")
    assert (snapshot.name, KILL_AFTER + 1) in starts  # it went on from the snapshot, not from step 0
    assert not snapshot.exists()  # spent once the weights file is written
    assert ctx.cost["fit_finetune_s" if name == "realfake" else "fit_train_s"] > 0

    a, b = _weights(tmp_path / "whole", name), _weights(tmp_path / "killed", name)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert a[key].keys() == b[key].keys()
            for k in a[key]:
                assert torch.equal(a[key][k], b[key][k]), (key, k)
    assert resumed.fingerprint() == whole.fingerprint()


def test_a_damaged_snapshot_is_a_clear_error(smoke_digits, tmp_path, monkeypatch):
    with killed_after(monkeypatch, 0):
        _fit("edm", {"train_steps": "6"}, smoke_digits, tmp_path)
    (snapshot,) = (tmp_path / "generators").glob("edm-*.snapshot.pt")
    snapshot.write_bytes(snapshot.read_bytes()[:-100])
    with pytest.raises(UserError, match="training snapshot .*Delete that file"):
        _fit("edm", {"train_steps": "6"}, smoke_digits, tmp_path)


def test_outside_the_weights_cache_nothing_is_written(smoke_digits, tmp_path):
    """A loop run directly, not through ``cached_weights``, has no snapshot to
    resume from or write."""
    ctx = FitContext.from_dataset(smoke_digits, PRESETS["smoke"], torch.device("cpu"), tmp_path)
    ctx.snapshot_every_s = 0.0
    run = ctx.resumable({"net": torch.nn.Linear(2, 2)})
    run.step_done(0)
    assert run.path is None and run.start == 0 and not list(tmp_path.iterdir())


def test_a_killed_classifier_training_resumes_to_the_same_weights(smoke_digits, tmp_path, monkeypatch):
    """Classifiers snapshot at epoch ends; a training killed after epoch 2 of 4
    goes on from epoch 3 and ends with the weights of one never stopped, and the
    cell that runs it again is charged the seconds before the kill."""
    from synthbench.benchmark import snapshots
    from synthbench.benchmark.charges import Charge, charging
    from synthbench.benchmark.context import cached_classifier

    monkeypatch.setattr(snapshots, "EVERY_S", 0.0)
    split = smoke_digits.train

    def train(cache_dir):
        return cached_classifier(split, 10, PRESETS["smoke"], 0, torch.device("cpu"), False, cache_dir, "test",
                                 epochs=4).state_dict()

    whole = train(tmp_path / "whole")
    with charging(Charge("cell-a")), killed_after(monkeypatch, 1):
        train(tmp_path / "killed")
    (snapshot,) = (tmp_path / "killed" / "classifiers").glob("*.snapshot.pt")
    before_kill = torch.load(snapshot, weights_only=True)["elapsed_s"]
    starts = _starts(monkeypatch)
    with charging(Charge("cell-a")) as again:
        resumed = train(tmp_path / "killed")
    assert starts == [(snapshot.name, 2)] and not snapshot.exists()
    assert again.resumed_s == pytest.approx(before_kill) and before_kill > 0
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_the_interval_comes_from_the_environment(tmp_path, monkeypatch):
    from synthbench.benchmark import snapshots
    from synthbench.errors import UserError

    monkeypatch.delenv("SYNTHBENCH_SNAPSHOT_S", raising=False)
    assert snapshots.interval_s() == snapshots.EVERY_S
    monkeypatch.setenv("SYNTHBENCH_SNAPSHOT_S", "1800")
    assert snapshots.interval_s() == 1800.0
    for setting, written in (("0", True), ("off", False)):
        monkeypatch.setenv("SYNTHBENCH_SNAPSHOT_S", setting)
        path = tmp_path / f"{setting}.snapshot.pt"
        Resumable(path, {"net": torch.nn.Linear(2, 2)}).step_done(0)
        assert path.exists() == written
    for bad in ("-5", "soon", "nan"):
        monkeypatch.setenv("SYNTHBENCH_SNAPSHOT_S", bad)
        with pytest.raises(UserError, match="SYNTHBENCH_SNAPSHOT_S"):
            snapshots.interval_s()


def test_the_record_charged_with_a_resumed_fit_pays_for_all_of_it(smoke_digits, tmp_path, monkeypatch):
    """The fit task that goes on from a killed run's snapshot charges the
    training before the kill too, in the ``fit_s`` its first cell carries."""
    from synthbench.benchmark import snapshots
    from synthbench.benchmark.store import ResultStore

    from conftest import run_cells

    from synthbench.generators import diffusion

    monkeypatch.setattr(snapshots, "EVERY_S", 0.0)
    store = ResultStore(tmp_path)
    edm = {"edm": {"train_steps": "6"}}
    loss_terms = diffusion.edm_loss_terms

    def slow(*args, **kwargs):  # the killed run's steps take 0.5 s more each, the resumed run's do not
        time.sleep(0.5)
        return loss_terms(*args, **kwargs)

    monkeypatch.setattr(diffusion, "edm_loss_terms", slow)
    with killed_after(monkeypatch, KILL_AFTER):
        run_cells(smoke_digits, edm, "replace", [0], store)
    monkeypatch.setattr(diffusion, "edm_loss_terms", loss_terms)
    (snapshot,) = (tmp_path / "cache" / "generators").glob("edm-*.snapshot.pt")
    before_kill = torch.load(snapshot, weights_only=True)["elapsed_s"]
    monkeypatch.setattr(snapshots, "EVERY_S", 1e9)  # no new snapshot: what was kept is what is charged
    (cell,) = [c for c in run_cells(smoke_digits, edm, "replace", [0], store) if c.spec.generator == "edm"]
    wall = cell.record.cost["wall_s"]
    assert before_kill >= 0.5 * (KILL_AFTER + 1)
    assert wall["fit_train_s"] >= before_kill and wall["fit_s"] >= before_kill
