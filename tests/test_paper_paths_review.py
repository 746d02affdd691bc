"""Found by the paper-paths review: the code paths the ``paper`` and
``paper-r50`` presets take, which CI never runs at full size."""

from synthbench.generators.sd import StableDiffusionGenerator
from synthbench.protocols.mia import MIAProtocol


def test_mia_refuses_sd_whose_fit_ignores_the_members():
    # sd's fit loads pretrained weights whatever split it is handed: mia's "generator fitted on the members
    # only" never happens, and a smoke run scored tiny SD at online AUC 0.486 as if it had been measured.
    reason = MIAProtocol().unsupported_reason(StableDiffusionGenerator())
    assert reason is not None and "'sd'" in reason and "copies" in reason
    assert MIAProtocol().generator_fits(None, StableDiffusionGenerator()) == []


def test_readme_counts_mia_shadow_fits_at_paper():
    # paper's default is 16 shadows from the generator: 16 shadow fits besides the members' fit (the README
    # said 8, the smoke/fast shadow count).
    from pathlib import Path

    from synthbench.benchmark.datasets import load_dataset
    from synthbench.benchmark.options import resolve_options
    from synthbench.benchmark.presets import PRESETS
    from synthbench.generators.edm import EDMGenerator

    mia = MIAProtocol(**resolve_options(MIAProtocol.options, {}, "mia"))
    fits = mia.generator_fits(load_dataset("digits", None), EDMGenerator(), PRESETS["paper"])
    shadow_fits = sum(f.name.startswith("shadow-") for f in fits)
    assert shadow_fits == 16
    row = next(line for line in Path(__file__).parents[1].joinpath("README.md").read_text().splitlines()
               if line.startswith("| `mia` |"))
    assert f"{shadow_fits} at `paper`)" in row and "8 more generator fits" not in row


def test_shipped_paper_suites_give_realfake_on_sd_its_image_encoder():
    # RealFakeSD refuses visual guidance (on by default) without a CLIP image encoder, so the shipped paper
    # suites, which set only sd_model, stopped at the realfake fit with that UserError once the path was filled in.
    import pytest

    from synthbench.benchmark.options import resolve_options
    from synthbench.benchmark.suite import load_suite
    from synthbench.errors import UserError
    from synthbench.generators.realfake import RealFakeGenerator
    from synthbench.generators.realfake_sd import RealFakeSD

    for config in ("configs/paper-cifar10.yaml", "configs/paper-r50-cifar10.yaml"):
        given = load_suite(config).generators["realfake"]
        opts = resolve_options(RealFakeGenerator.options, given, "realfake")
        assert opts["sd_model"]
        RealFakeSD(opts["sd_model"], opts["image_encoder"] or None, opts)  # raised UserError before
    with pytest.raises(UserError, match="image_encoder"):
        RealFakeSD("sd", None, resolve_options(RealFakeGenerator.options, {"sd_model": "sd"}, "realfake"))


def test_paper_r50_cost_against_paper_is_what_the_docs_say():
    # README and the r50 suite said 'about 4x paper's classifier cost'; the arithmetic is about 15x.
    from pathlib import Path

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from synthbench.benchmark.classifiers import build_classifier
    from synthbench.benchmark.presets import PRESETS

    flops = {}
    for name in ("paper", "paper-r50"):
        model = build_classifier(PRESETS[name].classifier, 3, 10).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, 32, 32))
        flops[name] = counter.get_total_flops() * PRESETS[name].epochs
    ratio = flops["paper-r50"] / flops["paper"]
    assert 14 < ratio < 16
    root = Path(__file__).parents[1]
    for doc in ("README.md", "configs/paper-r50-cifar10.yaml"):
        text = " ".join(root.joinpath(doc).read_text().split())
        assert "about 4x" not in text.lower() and "about 15x" in text.lower(), doc


def _fake_gpu(monkeypatch, major: int) -> None:
    """torch.cuda as a machine with one GPU of compute capability ``major``.0
    on which bf16 tensors can be made (torch emulates them before 8.0)."""
    import types

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: types.SimpleNamespace(major=major))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)
    monkeypatch.setattr(torch.version, "hip", None)


def test_precision_auto_keeps_fp32_on_a_gpu_that_only_emulates_bf16(monkeypatch):
    # torch.cuda.is_bf16_supported() says yes on a V100 or T4 (emulated bf16, no bf16 tensor cores), so
    # --precision auto picked bf16 there and the paper preset's bf16 ran there unwarned.
    from synthbench.benchmark.presets import bf16_instructions, native_bf16, run_precision

    _fake_gpu(monkeypatch, 7)
    assert not native_bf16("cuda") and not bf16_instructions("cuda")
    assert run_precision("auto", "cuda") == "fp32"
    _fake_gpu(monkeypatch, 8)
    assert native_bf16("cuda") and run_precision("auto", "cuda") == "bf16"
