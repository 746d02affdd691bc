import contextlib
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import fit_generator

from conftest import run_cells

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.store import ResultStore
from synthbench.benchmark.seeding import derive_seed
from synthbench.errors import UserError
from synthbench.generators.diffusion import ddpm_linear_sigma, ddpm_linear_step
from synthbench.plugins import GENERATORS, PROTOCOLS

EDM = {"edm": {"eval_batch": "64"}}


def test_recon_sweep_gives_accuracy_and_entropy_per_t_re(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_cells(smoke_digits, EDM, {"recon": {"t_re": "0,20,100"}}, [0], store)
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    for t in (0, 20, 100):
        assert 0 <= rec.metrics[f"top1_t{t}"]["value"] <= 1
        assert rec.metrics[f"entropy_train_t{t}"]["value"] >= 0
        assert len(rec.details["pca"]["reconstructed"][f"t{t}"]) == len(rec.details["pca"]["real"])
    assert rec.details["curve"]["t_re"] == [0, 20, 100]
    # t_re = 0 is the real split: its projection is the real one, and its
    # feature-space distance to the real split is nil (Yamaguchi & Fukuda 2023, Fig. 3b's start)
    assert rec.details["pca"]["reconstructed"]["t0"] == rec.details["pca"]["real"]
    assert abs(rec.metrics["fid_t0"]["value"]) < 1e-6
    assert rec.metrics["precision_t0"]["value"] == rec.metrics["recall_t0"]["value"] == 1.0
    # full reconstruction (pure samples of a smoke-trained EDM) moves away from the real split
    assert rec.metrics["fid_t100"]["value"] > 10 * max(rec.metrics["fid_t0"]["value"], 1e-3)
    assert rec.details["curve"]["fid"][0] == rec.metrics["fid_t0"]["value"]
    cams = rec.details["gradcam"]
    assert set(cams) == {"t0", "t20", "t100"}
    assert cams["t0"]["labels"] == list(range(10))
    # a second seed reuses the cached reconstructions
    before = sorted(p.name for p in (tmp_path / "cache" / "recon").iterdir())
    # t_re = 0 is the input itself, never cached; the rest: CACHE/recon/<gen>-<split>-t<t>-<24 hex>.npz
    assert {re.fullmatch(r"edm-(train|test)-t(\d+)-[0-9a-f]{24}\.npz", n).group(2) for n in before} == {"20", "100"}
    later = run_cells(smoke_digits, EDM, {"recon": {"t_re": "0,20,100"}}, [1], store)[0].record
    assert sorted(p.name for p in (tmp_path / "cache" / "recon").iterdir()) == before
    # the first seed's record says which of its work the later seeds read (the dry run's estimate)
    assert rec.cost["wall_s"]["shared_s"] >= rec.cost["wall_s"]["reconstruct_s"] > 0
    assert "reconstruct_s" not in later.cost["wall_s"]


def test_recon_on_a_generator_that_cannot_reconstruct(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_cells(smoke_digits, ["real"], "recon", [0], store)
    rec = cells[0].record
    assert rec.status == "unsupported" and "cannot reconstruct" in rec.error
    again = run_cells(smoke_digits, ["real"], "recon", [0], store)
    assert again[0].cached


def test_recon_test_entropy_subset_is_stratified_and_seeded_by_full_index(smoke_digits, session_cache, tmp_path):
    """v3: the test-side entropy may use a subset; each image's reconstruction
    must be the one it gets in the full split, so the subset changes how many
    images are averaged, never what an image's reconstruction is."""
    gen = fit_generator("edm", smoke_digits, session_cache, eval_batch="64")
    cls = PROTOCOLS.get("recon")
    test = smoke_digits.test

    def ctx(preset):
        return SimpleNamespace(generator=gen, cache_dir=tmp_path, dataset=smoke_digits, preset=PRESETS[preset],
                               phase=lambda name, **_: contextlib.nullcontext())

    # defaults: 1,000 at smoke/fast (digits' 359 test images: all of them), all at paper
    assert cls(**resolve_options(cls.options, {}, "recon"))._entropy_test_index(ctx("smoke")) is None
    assert cls(**resolve_options(cls.options, {"test_images": "all"}, "recon"))._entropy_test_index(ctx("fast")) is None
    proto = cls(**resolve_options(cls.options, {"test_images": "50"}, "recon"))
    idx = proto._entropy_test_index(ctx("smoke"))
    assert len(idx) == 50 and len(set(idx.tolist())) == 50
    counts = torch.bincount(test.labels[idx], minlength=10)
    assert counts.min() >= 4 and counts.max() <= 6  # about 5 a class
    assert torch.equal(idx, proto._entropy_test_index(ctx("smoke")))  # seeded
    sub = proto._reconstruct(ctx("smoke"), test, 20, "test", idx)
    full = proto._reconstruct(ctx("smoke"), test, 20, "test")
    assert sub.shape == (50, *test.images.shape[1:])
    diff = (sub.int() - full[idx].int()).abs()
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.99  # uint8 rounding of float noise at most
    assert not torch.equal(sub, test.images[idx])  # and t_re = 20 did change them
    # a cached reconstruction that cannot be read stops the run, naming the file
    paths = list((tmp_path / "recon").glob("edm-test-t20-*.npz"))
    assert len(paths) == 2  # the subset's and the full split's
    for path in paths:
        path.write_bytes(b"not an npz")
    with pytest.raises(UserError, match=r"reconstructions .*edm-test-t20-[0-9a-f]{24}\.npz is unreadable"):
        proto._reconstruct(ctx("smoke"), test, 20, "test", idx)


def test_recon_records_the_entropy_subset(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_cells(smoke_digits, EDM, {"recon": {"t_re": "0,10", "test_images": "40"}}, [0], store)
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    assert rec.details["entropy_test_images"] == 40
    assert rec.metrics["entropy_test_t10"]["n"] == 40
    assert rec.metrics["entropy_train_t10"]["n"] == len(smoke_digits.train)
    assert 0 < rec.metrics["entropy_test_t10"]["stderr"] < rec.metrics["entropy_test_t10"]["value"]


def test_recon_does_not_train_a_generator_it_cannot_use(smoke_digits, tmp_path, monkeypatch):
    """stylegan3 cannot reconstruct: its `unsupported` record must not cost a fit."""
    cls = GENERATORS.get("stylegan3")

    def no_fit(self, ctx):
        raise AssertionError("fitted a generator that recon cannot use")

    monkeypatch.setattr(cls, "fit", no_fit)
    cells = run_cells(smoke_digits, ["stylegan3"], "recon", [0, 1], ResultStore(tmp_path))
    assert [c.record.status for c in cells] == ["unsupported", "unsupported"]
    assert "cannot reconstruct" in cells[0].record.error


def test_recon_records_noise_levels_and_the_augmentation_arm(smoke_digits, tmp_path):
    """v4: each t_re's start level with its DDPM-linear equivalent step, and the
    real + reconstructions arm (Yamaguchi & Fukuda, ACML 2025) at each t_re > 0."""
    cells = run_cells(smoke_digits, EDM, {"recon": {"t_re": "0,30", "test_images": "20"}}, [0], ResultStore(tmp_path))
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    d = rec.details
    assert d["t_re_scale"] == "steps" and d["churn"] == 0.0 and d["augment_arm"] is True
    assert "deterministic Heun" in d["reverse_process"] and "DDPM-linear" in d["reference_schedule"]
    assert [e["t_re"] for e in d["noise_levels"]] == [0, 30]
    assert d["noise_levels"][0] == {"t_re": 0, "sigma": 0.0, "ddpm_linear_step": 0.0}
    level = d["noise_levels"][1]
    assert level["sigma"] == pytest.approx(0.2922, rel=1e-3)  # the Karras T = 100 grid at step 30
    assert level["ddpm_linear_step"] == pytest.approx(ddpm_linear_step(level["sigma"])) and level["ddpm_linear_step"] < 10
    assert "aug_top1_t0" not in rec.metrics  # the real split twice is no arm
    aug = rec.metrics["aug_top1_t30"]
    assert 0 <= aug["value"] <= 1 and aug["higher_is_better"] is True and aug["n"] == len(smoke_digits.test)
    assert d["curve"]["aug_top1"] == [None, aug["value"]]
    assert PROTOCOLS.get("recon").declared("aug_top1_t30") == "aug_top1_t{t}"
    assert all(PROTOCOLS.get("recon").declared(m) for m in rec.metrics)  # v4 emits only declared metrics
    assert PROTOCOLS.get("recon").metrics["entropy_train_t{t}"] is None  # a diagnostic
    # ... and its record entries say so: no direction (the store read the record back through the schema)
    assert rec.metrics["entropy_train_t30"]["higher_is_better"] is None
    stored = next(r for r in ResultStore(tmp_path).records(strict=True) if r.spec.protocol == "recon")
    assert stored.metrics["entropy_train_t30"]["higher_is_better"] is None


def test_recon_sigma_mode_starts_at_the_reference_level(smoke_digits, tmp_path):
    opts = {"recon": {"t_re": "0,30", "t_re_scale": "sigma", "augment_arm": "false", "test_images": "20"}}
    cells = run_cells(smoke_digits, EDM, opts, [0], ResultStore(tmp_path))
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    level = rec.details["noise_levels"][1]
    assert level["requested_sigma"] == level["sigma"] == pytest.approx(ddpm_linear_sigma(30))
    assert level["ddpm_linear_step"] == pytest.approx(30)
    assert "aug_top1_t30" not in rec.metrics and "aug_top1" not in rec.details["curve"]
    names = [p.name for p in (tmp_path / "cache" / "recon").iterdir()]
    assert names and all(re.fullmatch(r"edm-(train|test)-t30-sigma-[0-9a-f]{24}\.npz", n) for n in names)


def test_recon_cache_keeps_steps_sigma_and_churn_apart(smoke_digits, session_cache, tmp_path):
    gen = fit_generator("edm", smoke_digits, session_cache, eval_batch="64")
    cls = PROTOCOLS.get("recon")
    ctx = SimpleNamespace(generator=gen, cache_dir=tmp_path, dataset=smoke_digits, preset=PRESETS["smoke"],
                          phase=lambda name, **_: contextlib.nullcontext())
    split = smoke_digits.train.subset(torch.arange(6))

    def recon(**options):
        return cls(**resolve_options(cls.options, options, "recon"))._reconstruct(ctx, split, 30, "train")

    steps, sigma, churn = recon(), recon(t_re_scale="sigma"), recon(churn="10")
    assert not torch.equal(steps, sigma) and not torch.equal(steps, churn)
    names = sorted(p.name for p in (tmp_path / "recon").iterdir())
    assert sorted(re.fullmatch(r"edm-train-t30(-[a-z]+)?-[0-9a-f]{24}\.npz", n).group(1) or "" for n in names) == [
        "", "-churn", "-sigma"]
    # each reads back its own entry; steps mode is the plain four-argument call (v3's entry)
    assert torch.equal(recon(t_re_scale="sigma"), sigma) and torch.equal(recon(churn="10"), churn)
    seeds = [derive_seed("recon", 0, "train", i) for i in range(6)]
    assert torch.equal(steps, gen.reconstruct(split.images, split.labels, 30, seeds))
    assert torch.equal(sigma, gen.reconstruct(split.images, split.labels, 30, seeds, sigma=ddpm_linear_sigma(30)))


def test_recon_sigma_mode_and_churn_need_an_adapter_that_takes_them(smoke_digits, tmp_path, monkeypatch):
    """sd's img2img cannot start from a given level nor take churn: unsupported,
    and without a fit; at the defaults it would take part."""
    cls = GENERATORS.get("sd")

    def no_fit(self, ctx):
        raise AssertionError("fitted a generator that recon cannot use")

    monkeypatch.setattr(cls, "fit", no_fit)
    store = ResultStore(tmp_path)
    [cell] = run_cells(smoke_digits, ["sd"], {"recon": {"t_re_scale": "sigma"}}, [0], store)
    assert cell.record.status == "unsupported" and "t_re_scale=steps" in cell.record.error
    [cell] = run_cells(smoke_digits, ["sd"], {"recon": {"churn": "0.5"}}, [0], store)
    assert cell.record.status == "unsupported" and "churn=0" in cell.record.error
    proto = PROTOCOLS.get("recon")
    assert proto(**resolve_options(proto.options, {}, "recon")).unsupported_reason(cls()) is None
    for name in ("edm", "ddpm", "realfake"):
        sigma_mode = proto(**resolve_options(proto.options, {"t_re_scale": "sigma", "churn": "1"}, "recon"))
        assert sigma_mode.unsupported_reason(GENERATORS.get(name)()) is None
