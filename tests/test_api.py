"""The public interface (``synthbench.api``), the plugin contract the harness
enforces, and the one disk cache's policy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import synthbench.api as api
from synthbench.benchmark.cache import JSON, TORCH, DiskCache, cache_key, digest
from synthbench.benchmark.context import FitContext
from synthbench.benchmark.presets import PRESETS
from synthbench.plugins import GENERATORS, PROTOCOLS

ROOT = Path(__file__).resolve().parents[1]


def test_api_exports_resolve():
    for name in api.__all__:
        assert getattr(api, name) is not None, name


def test_example_plugin_imports_only_the_public_api():
    source = ROOT / "examples" / "synthbench-classgauss" / "synthbench_classgauss" / "__init__.py"
    modules = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    assert {m for m in modules if m.startswith("synthbench")} == {"synthbench.api"}


def test_harness_never_imports_a_plugin_package():
    for path in (ROOT / "synthbench" / "benchmark").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith(("synthbench.generators", "synthbench.protocols")), (path, name)


def test_registry_refuses_a_plugin_of_the_wrong_kind():
    class NotAGenerator:
        name = "imposter"

    with pytest.raises(api.UserError, match="does not subclass synthbench.api.Generator"):
        GENERATORS.register("imposter", NotAGenerator)
    assert "imposter" not in GENERATORS.names()
    with pytest.raises(api.UserError, match="synthbench.api.Protocol"):
        PROTOCOLS.register("imposter-p", api.Generator)
    assert "imposter-p" not in PROTOCOLS.names()


class _ForgetfulGenerator(api.Generator):
    """An adapter in the old style: sets state but returns no identity."""

    name = "forgetful"

    def fit(self, ctx):
        self.device = ctx.device


def test_fit_must_return_its_identity(smoke_digits, tmp_path):
    ctx = FitContext.from_dataset(smoke_digits, PRESETS["smoke"], torch.device("cpu"), tmp_path)
    with pytest.raises(api.UserError, match="returned NoneType, not its identity"):
        _ForgetfulGenerator().fitted(ctx)
    real = GENERATORS.get("real")().fitted(ctx)
    assert real.identity == {"dataset_digest": smoke_digits.digest}
    assert real.fit_identity()["dataset_digest"] == smoke_digits.digest


def test_preset_dependent_defaults_stay_unset_in_the_spec():
    ddpm = GENERATORS.get("ddpm")
    opts = api.Option  # the helper builds the same check everywhere
    steps = ddpm.options["sampler_steps"]
    assert steps.default is None and steps.check(None) and not steps.check(0)
    assert [steps.effective(None, PRESETS[p]) for p in ("smoke", "fast", "paper")] == [4, 50, 250]
    assert steps.effective(7, PRESETS["paper"]) == 7
    edm = GENERATORS.get("edm")(sampler_steps=None)
    assert edm.setting("sampler_steps", PRESETS["fast"]) == PRESETS["fast"].gen_sampler_steps
    with pytest.raises(api.UserError, match="must be a positive integer"):
        opts.positive_int("n", "help").parse("0", "test")


def test_evaluate_returns_the_records_the_store_holds(tmp_path):
    records = api.evaluate("real", "replace", preset="smoke", seeds=[0], results=tmp_path, device="cpu",
                           with_real=False)
    (record,) = records
    assert record.status is api.Status.OK and record.spec.generator == "real"
    assert 0.5 < record.metrics["top1"]["value"] <= 1.0
    stored = list(api.ResultStore(tmp_path).records(strict=True))
    assert [r.to_json() for r in stored] == [record.to_json()]
    again = api.evaluate("real", "replace", preset="smoke", seeds=[0], results=tmp_path, device="cpu",
                         with_real=False)
    assert again[0].to_json() == record.to_json()  # a cache hit: the same record


def test_record_validation_is_one_policy(tmp_path):
    from synthbench.benchmark.cell import Record

    records = api.evaluate("real", "replace", preset="smoke", seeds=[0], results=tmp_path, device="cpu",
                           with_real=False)
    data = records[0].to_json()
    assert Record.from_json(data) == records[0]
    edited = dict(data, spec=dict(data["spec"], seed=5))  # a spec edited without its hash
    with pytest.raises(ValueError, match="cell_hash does not match"):
        Record.from_json(edited)
    with pytest.raises(ValueError, match="status"):
        Record.from_json(dict(data, status="done"))


# ---------------------------------------------------------------- the disk cache


def test_cache_keys_cover_tensor_values_not_their_repr():
    a, b = torch.zeros(2000), torch.zeros(2000)
    b[1000] = 1.0  # str() of both elides the middle
    assert digest(a) != digest(b)
    assert cache_key(("x", a)) != cache_key(("x", b))
    with pytest.raises(TypeError, match="parts of their own"):
        digest({"weights": a})
    assert digest("ab", "c") != digest("a", "bc")


@pytest.mark.parametrize("fmt", [TORCH, JSON])
def test_an_unreadable_cached_file_is_a_clear_error_naming_it(tmp_path, fmt):
    cache = DiskCache(tmp_path)
    content = {"w": torch.ones(3)} if fmt is TORCH else {"clean": 0.5}
    calls = []

    def compute():
        calls.append(1)
        return content

    first = cache.load_or_compute("things", "thing", ("id", 1), fmt, "thing file", compute)
    second = cache.load_or_compute("things", "thing", ("id", 1), fmt, "thing file", compute)
    assert len(calls) == 1 and str(first) == str(second)
    path = cache.path("things", "thing", ("id", 1), fmt)
    path.write_bytes(path.read_bytes()[:10])  # truncated
    with pytest.raises(api.UserError, match=f"cached thing file {path} is unreadable or damaged.*Delete that file"):
        cache.load_or_compute("things", "thing", ("id", 1), fmt, "thing file", compute)
    assert len(calls) == 1  # never silently recomputed


def test_a_flipped_byte_in_cached_weights_is_caught(tmp_path):
    """torch's reader loads a weights file with one flipped bit in a tensor without
    complaint; the digest written with the file catches it before use."""
    cache = DiskCache(tmp_path)
    weights = {"ema": {"w": torch.full((512,), 7.0), "b": torch.zeros(3)}}
    cache.load_or_compute("generators", "net", "id", TORCH, "net weights file", lambda: weights)
    path = cache.path("generators", "net", "id", TORCH)
    blob = bytearray(path.read_bytes())
    at = blob.find(torch.full((8,), 7.0).numpy().tobytes())
    assert at > 0
    blob[at + 1] ^= 0x01
    path.write_bytes(bytes(blob))
    flipped = torch.load(path, weights_only=True)["ema"]["w"]
    assert not torch.equal(flipped, weights["ema"]["w"])  # loads silently, with a changed value
    with pytest.raises(api.UserError, match="does not match the digest written with it"):
        cache.load_or_compute("generators", "net", "id", TORCH, "net weights file", lambda: weights)


def test_a_cached_file_without_its_digest_is_refused(tmp_path):
    cache = DiskCache(tmp_path)
    path = cache.path("ood", "suite-accuracy", "id", JSON)
    JSON.save(path, {"clean": 0.5})  # written by hand, not through the cache
    with pytest.raises(api.UserError, match="carries no digest"):
        cache.load_or_compute("ood", "suite-accuracy", "id", JSON, "accuracies", lambda: {"clean": 0.5})
