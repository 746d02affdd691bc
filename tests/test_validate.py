"""``synthbench validate``: the conformance report on any adapter, a pass for a
well-behaved one and a named failure for each broken promise."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch

from synthbench.benchmark.options import Option
from synthbench.plugins import GENERATORS
from synthbench.generators.base import Generator

from test_cli import run_cli


class _Stamp(Generator):
    """Well behaved: the class's real image picked by the seed, plus seeded noise."""

    name = "stamp-ok"
    version = 1

    def fit(self, ctx):
        self.train = ctx.train
        return super().fit(ctx)

    def _one(self, label: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        pool = (self.train.labels == label).nonzero().flatten()
        img = self.train.images[pool[torch.randint(len(pool), (1,), generator=g)]][0].int()
        return (img + torch.randint(-8, 9, img.shape, generator=g)).clamp(0, 255).to(torch.uint8)

    def sample(self, labels, seeds):
        return torch.stack([self._one(int(y), int(s)) for y, s in zip(labels, seeds)])


class _BatchDependent(_Stamp):
    """Broken: one generator for the whole batch, seeded by the first seed."""

    name = "stamp-batchy"

    def sample(self, labels, seeds):
        g = torch.Generator().manual_seed(int(seeds[0]))
        out = []
        for y in labels.tolist():
            pool = (self.train.labels == y).nonzero().flatten()
            out.append(self.train.images[pool[torch.randint(len(pool), (1,), generator=g)]][0])
        return torch.stack(out)


class _Ignores(_Stamp):
    """Broken: ignores the label, and returns float images."""

    name = "stamp-deaf"

    def sample(self, labels, seeds):
        return super().sample(torch.zeros_like(labels), seeds).float()


class _UnitRange(_Stamp):
    """Broken: images in [0, 1] cast to uint8, so every pixel is 0 or 1."""

    name = "stamp-unit"

    def sample(self, labels, seeds):
        return (super().sample(labels, seeds).double() / 255).to(torch.uint8)


class _Squeezed(_Stamp):
    """Broken: drops the channel axis ([N, H, W])."""

    name = "stamp-squeezed"

    def sample(self, labels, seeds):
        return super().sample(labels, seeds)[:, 0]


class _NoIdentity(_Stamp):
    """Broken: fit returns nothing instead of its identity (the sample cache keys on it)."""

    name = "stamp-anonymous"

    def fit(self, ctx):
        super().fit(ctx)


class _KeylessBrightness(_Stamp):
    """Broken: declares an option outside the cell key that changes the images."""

    name = "stamp-keyless"
    options = {"brightness": Option("brightness", 0, "Added to every pixel.", int, in_key=False)}

    def sample(self, labels, seeds):
        return (super().sample(labels, seeds).int() + self.opts["brightness"]).clamp(0, 255).to(torch.uint8)


class _BatchShaded(_Stamp):
    """Broken: an unset (device-default) eval_batch outside the key whose value shows in the images."""

    name = "stamp-shaded"
    options = {"eval_batch": Option.positive_int("eval_batch", "Network batch; default: the device's.", in_key=False)}

    def sample(self, labels, seeds):
        shade = 0 if self.opts["eval_batch"] is None else 9
        return (super().sample(labels, seeds).int() + shade).clamp(0, 255).to(torch.uint8)


@pytest.fixture
def registered():
    names = []
    for cls in (_Stamp, _BatchDependent, _Ignores, _UnitRange, _Squeezed, _NoIdentity, _KeylessBrightness,
                _BatchShaded):
        GENERATORS.register(cls.name, cls)
        names.append(cls.name)
    yield
    for name in names:
        GENERATORS.unregister(name)


def _report(out: str) -> dict[str, str]:
    rows = {}
    for line in out.splitlines():
        for check in ("declaration", "fit", "shape, dtype, range", "determinism", "batch-size independence",
                      "label adherence", "reconstruct", "options outside the key", "speed"):
            if line.startswith(check + " "):
                rows[check] = line[len(check):].split()[0]
    return rows


def test_a_well_behaved_adapter_passes(registered, tmp_path, capsys):
    code, out, _ = run_cli(["validate", "stamp-ok", "-q", "--results", str(tmp_path)], capsys)
    rows = _report(out)
    assert code == 0, out
    assert rows["determinism"] == rows["batch-size independence"] == rows["label adherence"] == "pass"
    assert "samples/s" in out and "all checks passed" in out


def test_each_broken_promise_is_named(registered, tmp_path, capsys):
    code, out, _ = run_cli(["validate", "stamp-batchy", "-q", "--results", str(tmp_path)], capsys)
    rows = _report(out)
    assert code == 1 and rows["batch-size independence"] == "FAIL" and rows["determinism"] == "pass"
    code, out, _ = run_cli(["validate", "stamp-deaf", "-q", "--results", str(tmp_path)], capsys)
    rows = _report(out)
    assert code == 1 and rows["shape, dtype, range"] == "FAIL" and rows["label adherence"] == "FAIL"
    code, out, _ = run_cli(["validate", "stamp-unit", "-q", "--min-adherence", "0", "--results", str(tmp_path)],
                           capsys)
    rows = _report(out)  # before: pass, the only failure being label adherence, and only when it happened to fail
    assert code == 1 and rows["shape, dtype, range"] == "FAIL" and "every pixel is 0 or 1" in out, out
    code, out, _ = run_cli(["validate", "stamp-squeezed", "-q", "--results", str(tmp_path)], capsys)
    rows = _report(out)  # before: label adherence 'raised RuntimeError: Given groups=1, weight of size [32, 1, 3, 3]...'
    assert code == 1 and rows["shape, dtype, range"] == "FAIL" and rows["label adherence"] == "-", out
    assert "Given groups" not in out
    code, out, _ = run_cli(["validate", "stamp-anonymous", "-q", "--results", str(tmp_path)], capsys)
    rows = _report(out)
    assert code == 1 and rows["fit"] == "FAIL" and "not its identity" in out
    code, out, _ = run_cli(["validate", "stamp-keyless", "-o", "brightness=9", "-q", "--results", str(tmp_path)],
                           capsys)
    rows = _report(out)
    assert code == 1 and rows["options outside the key"] == "FAIL" and "brightness=4: DIFFERENT" in out
    code, out, _ = run_cli(["validate", "stamp-shaded", "-q", "--results", str(tmp_path)], capsys)
    rows = _report(out)  # before: '-', "eval_batch not checked (not a number: spec_extras keys what it names)"
    assert code == 1 and rows["options outside the key"] == "FAIL" and "eval_batch=5: DIFFERENT" in out, out


def test_unknown_adapter_and_bad_option_are_one_paragraph(tmp_path, capsys):
    code, _, err = run_cli(["validate", "edn", "--results", str(tmp_path)], capsys)
    assert code == 2 and "Did you mean 'edm'" in err and "Traceback" not in err
    code, _, err = run_cli(["validate", "edm", "-o", "nonsense=1", "--results", str(tmp_path)], capsys)
    assert code == 2 and "no option nonsense" in err


def test_the_example_plugin_is_found_through_its_entry_point():
    eps = {ep.name: ep.value for ep in entry_points(group="synthbench.generators")}
    if "classgauss" not in eps:
        pytest.skip("examples/synthbench-classgauss is not installed (.ci/run installs it)")
    assert eps["classgauss"] == "synthbench_classgauss:ClassGaussianGenerator"
    assert GENERATORS.origin("classgauss").startswith("entry point")
