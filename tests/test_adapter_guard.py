"""The adapter contract enforced at run time (``benchmark/guard.py``) and the
held-out split kept from adapters (issue 13): adapters that break the contract,
raise in ``fit`` or hang get ``failed`` cells with a clear reason while the rest
of the grid finishes; an adapter that keeps everything it is handed never sees a
test image under any protocol, nor the dataset through its call stack."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
import torch

from synthbench.api import GENERATORS, PROTOCOLS, Dataset, FitContext, Generator
from synthbench.benchmark.runner import resolve_grid, run_protocol
from synthbench.benchmark.store import ResultStore
from synthbench.cli import main


def noise(labels: torch.Tensor, seeds, shape=(1, 8, 8)) -> torch.Tensor:
    """Image i drawn from seeds[i] alone (the contract's batch independence)."""
    return torch.stack([torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(int(s)),
                                      dtype=torch.uint8) for s in seeds]) if len(seeds) else \
        torch.zeros((0, *shape), dtype=torch.uint8)


class Noise(Generator):
    name = "guard-noise"
    description = "uint8 noise, by the contract"

    def sample(self, labels, seeds):
        return noise(labels, seeds)


class FloatImages(Noise):
    name = "guard-float"

    def sample(self, labels, seeds):
        return noise(labels, seeds).float() / 255


class UnitImages(Noise):
    name = "guard-unit"

    def sample(self, labels, seeds):
        return (noise(labels, seeds).float() / 255).round().to(torch.uint8)  # [0, 1] cast to uint8


class SmallImages(Noise):
    name = "guard-small"

    def sample(self, labels, seeds):
        return noise(labels, seeds, (1, 4, 4))


class OneShort(Noise):
    name = "guard-short"

    def sample(self, labels, seeds):
        return noise(labels, seeds)[1:]


class FitRaises(Noise):
    name = "guard-fit-raises"

    def fit(self, ctx):
        raise RuntimeError("the weights server is down")


class Hangs(Noise):
    name = "guard-hangs"

    def sample(self, labels, seeds):
        time.sleep(3600)  # abandoned by the harness after the timeout; a daemon thread, gone at exit


BAD = {FloatImages: "sample() returned torch.float32 images; the contract is torch.uint8",
       UnitImages: "whose every pixel is 0 or 1: images in [0, 1] cast to uint8",
       SmallImages: "sample() returned shape",
       OneShort: "requested images; the contract is",
       FitRaises: "guard-fit-raises.fit failed: RuntimeError: the weights server is down",
       Hangs: "timed out after 2 s"}


@pytest.fixture(scope="module")
def registered():
    classes = [Noise, *BAD]
    for cls in classes:
        GENERATORS.register(cls.name, cls)
    yield
    for cls in classes:
        GENERATORS.unregister(cls.name)


def test_contract_violations_fail_their_cells_and_the_grid_goes_on(registered, smoke_digits, tmp_path):
    names = ["real", Noise.name, *(cls.name for cls in BAD)]
    grid = resolve_grid(smoke_digits, names, "replace", "smoke", (0, 1), "cpu")
    cells = run_protocol(grid, grid.protocols[0], ResultStore(tmp_path), adapter_timeout_s=2)
    by_gen: dict[str, list[Any]] = {}
    for cell in cells:
        by_gen.setdefault(cell.spec.generator, []).append(cell.record)
    for good in ("real", Noise.name):
        assert [r.status for r in by_gen[good]] == ["ok", "ok"], good
    for cls, reason in BAD.items():
        records = by_gen[cls.name]
        assert [r.status for r in records] == ["failed", "failed"], cls.name
        assert reason in records[0].error, (cls.name, records[0].error)
    hang = by_gen[Hangs.name]  # the instance is abandoned after its timeout: seed 1 fails at once
    assert "not called again after sample() timed out" in hang[1].error  # so it did not wait out another timeout


def test_a_hang_is_exit_1_with_the_other_cells_kept(registered, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "-g", Hangs.name, "--preset", "smoke", "--seeds", "1", "--adapter-timeout", "2",
              "--results", str(tmp_path), "-q", "--threads", "1"])
    assert stop.value.code == 1
    out = capsys.readouterr()
    assert "Some cells failed" in out.err
    statuses = sorted(r.status.value for r in ResultStore(tmp_path).records())
    assert statuses == ["failed", "ok"]  # real finished, the hanging adapter failed


def test_the_run_ends_naming_each_failed_cells_error(registered, tmp_path, capsys):
    """The error of a failed record is printed, once per cell and error with its
    seeds; before, the run ended with '2 records hold the error' only, and the
    reason sat in the records' JSON."""
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "-g", f"{FloatImages.name},{FitRaises.name}", "-p", "replace", "--preset", "smoke",
              "--seeds", "2", "--results", str(tmp_path), "-q", "--threads", "1"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert (f"failed: {FloatImages.name} x replace x digits, seeds 0, 1: ContractViolation: generator "
            f"{FloatImages.name}: sample() returned torch.float32 images") in err
    assert f"failed: {FitRaises.name} x replace x digits, seeds 0, 1: " in err
    assert "the weights server is down" in err
    assert "Some cells failed (4 of 6): 4 records hold the error." in err
    assert "Traceback" not in err


# --------------------------------------------------------------------- held-out split


class Recorder(Generator):
    """Keeps every image it is handed, in class-level state that outlives its
    instances (as a careless or hostile adapter could), and walks its call stack
    looking for the dataset."""

    name = "guard-recorder"
    description = "records what the harness hands it"
    can_reconstruct = True
    seen: list[torch.Tensor] = []
    frames_with_data: list[str] = []

    def _walk(self) -> None:
        frame = sys._getframe(1)
        while frame is not None:
            for value in list(frame.f_locals.values()):
                if isinstance(value, Dataset) or getattr(value, "dataset", None) is not None:
                    Recorder.frames_with_data.append(frame.f_code.co_name)
            frame = frame.f_back

    def fit(self, ctx: FitContext):
        self._walk()
        Recorder.seen.append(ctx.train.images.clone())
        return super().fit(ctx)

    def sample(self, labels, seeds):
        self._walk()
        return noise(labels, seeds)

    def reconstruct(self, images, labels, t_re, seeds):
        self._walk()
        Recorder.seen.append(images.clone())
        return images.clone()


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in images.flatten(1).numpy()}


def test_no_protocol_hands_an_adapter_a_test_image(smoke_digits, tmp_path):
    GENERATORS.register(Recorder.name, Recorder)
    try:
        Recorder.seen.clear()
        Recorder.frames_with_data.clear()
        grid = resolve_grid(smoke_digits, [Recorder.name], PROTOCOLS.names(), "smoke", (0,), "cpu")
        store = ResultStore(tmp_path)
        statuses = {p.name: [c.record.status.value for c in run_protocol(grid, p, store)] for p in grid.protocols}
    finally:
        GENERATORS.unregister(Recorder.name)
    assert all(s == ["ok"] for s in statuses.values()), statuses  # every protocol ran (recon on train only)
    test_only = _rows(smoke_digits.test.images) - _rows(smoke_digits.train.images)
    assert len(test_only) > len(smoke_digits.test) // 2
    seen = set().union(*(_rows(x) for x in Recorder.seen))
    assert len(seen) > 0 and not seen & test_only
    assert Recorder.frames_with_data == []
    recon = [r for r in ResultStore(tmp_path).records() if r.spec.protocol == "recon"][0]
    assert "entropy_test_t30" not in recon.metrics and "built-in" in recon.details["entropy_test"]


def test_recon_hands_test_images_only_to_a_separate_built_in_instance(smoke_digits, tmp_path, monkeypatch):
    """A built-in adapter keeps its test-side entropy, computed by an instance
    fitted for it and discarded: the instance that samples sees train images only."""
    from synthbench.generators.ddpm import DDPMGenerator

    handed: dict[int, list[torch.Tensor]] = {}
    original = DDPMGenerator.reconstruct

    def spy(self, images, labels, t_re, seeds):
        handed.setdefault(id(self), []).append(images.clone())
        return original(self, images, labels, t_re, seeds)

    monkeypatch.setattr(DDPMGenerator, "reconstruct", spy)
    grid = resolve_grid(smoke_digits, {"ddpm": {}}, {"recon": {"t_re": "0,50", "test_images": "40"}}, "smoke", (0,),
                        "cpu")
    [cell] = run_protocol(grid, grid.protocols[0], ResultStore(tmp_path))
    assert cell.record.status.value == "ok" and "entropy_test_t50" in cell.record.metrics
    test_only = _rows(smoke_digits.test.images) - _rows(smoke_digits.train.images)
    with_test = [i for i, xs in handed.items() if any(_rows(x) & test_only for x in xs)]
    with_train = [i for i, xs in handed.items() if any(_rows(x) - test_only for x in xs)]
    assert len(with_test) == 1 and len(with_train) == 1 and with_test != with_train
