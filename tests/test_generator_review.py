"""Regression tests from a review of the generator adapters against their papers
(Karras et al. 2022, arXiv 2206.00364; Nichol & Dhariwal 2021, arXiv 2102.09672;
Yuan et al. 2024, arXiv 2310.10402): each test failed on the code before its fix."""

from __future__ import annotations

import pytest
import torch

from synthbench.benchmark.options import resolve_options
from synthbench.errors import UserError
from synthbench.plugins import GENERATORS
from tiny_sd import tiny_clip_path, tiny_sd_path  # noqa: F401  (session fixtures)


def test_ddpm_sampler_steps_beyond_the_training_chain_is_refused_when_parsed():
    """The respaced chain has at most T = 1000 steps: 1001 passed validation and
    the fit, then every cell failed in diffusers' set_timesteps (ValueError)."""
    cls = GENERATORS.get("ddpm")
    assert resolve_options(cls.options, {"sampler_steps": "1000"}, "ddpm")["sampler_steps"] == 1000
    with pytest.raises(UserError, match="sampler_steps.*1..1000"):
        resolve_options(cls.options, {"sampler_steps": "1001"}, "ddpm")
    with pytest.raises(UserError, match="sampler_steps"):
        resolve_options(cls.options, {"sampler_steps": "0"}, "ddpm")


class LabelRecordingEDMPrecond(torch.nn.Module):
    """Stands in for a class-conditional NVlabs EDMPrecond in a pickle and records
    the one-hot labels it is given (module level, so pickle can find it)."""

    img_resolution, img_channels, label_dim = 8, 1, 10
    seen: list[torch.Tensor] = []

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, sigma, class_labels):
        LabelRecordingEDMPrecond.seen.append(class_labels.detach().clone())
        shift = class_labels.argmax(1).float().view(-1, 1, 1, 1) / 10
        return self.scale * x / (1 + sigma.view(-1, 1, 1, 1) ** 2) + shift


def test_edm_conditional_pickle_made_unconditional_samples_its_marginal(smoke_digits, session_cache, tmp_path):
    """``conditional=false`` (longtail's unconditional control) on a class-conditional
    EDM pickle fed it all-zero one-hot labels, an input it never saw in training
    (EDM trains without label dropout); NVlabs' generate.py samples such a
    network unconditionally by drawing a class per image. Now: a class per image
    from its seed, and reconstruct (which would need the class) is unsupported."""
    import pickle

    from conftest import fit_generator
    from synthbench.errors import Unsupported

    path = tmp_path / "edm-cond.pkl"
    with path.open("wb") as fh:
        pickle.dump({"ema": LabelRecordingEDMPrecond()}, fh)
    gen = fit_generator("edm", smoke_digits, session_cache, network_pkl=str(path), trust_pickle="true",
                        conditional="false", eval_batch="4", sampler_steps="2")
    assert not gen.conditional
    LabelRecordingEDMPrecond.seen.clear()
    seeds = list(range(12))
    x = gen.sample(torch.zeros(12, dtype=torch.long), seeds)
    onehots = torch.cat(LabelRecordingEDMPrecond.seen)
    assert torch.all(onehots.sum(1) == 1)  # a real class every time, never the all-zero vector
    first = LabelRecordingEDMPrecond.seen[0].argmax(1)[:4]
    assert len(set(first.tolist())) > 1  # drawn per image, not one class for all
    # the class follows the seed, not the placeholder label or the batch
    assert torch.equal(gen.sample(torch.full((2,), 7), [seeds[5], seeds[0]]), x[[5, 0]])
    with pytest.raises(Unsupported, match="conditional=false"):
        gen.reconstruct(smoke_digits.train.images[:2], smoke_digits.train.labels[:2], 30, [0, 1])
    cond = fit_generator("edm", smoke_digits, session_cache, network_pkl=str(path), trust_pickle="true",
                         eval_batch="4", sampler_steps="2")
    LabelRecordingEDMPrecond.seen.clear()
    cond.sample(torch.tensor([3, 3]), [0, 1])
    assert LabelRecordingEDMPrecond.seen[0].argmax(1)[:2].tolist() == [3, 3]
    # a key of its own: cells and samples of the zero-label behaviour are not reused
    from synthbench.plugins import GENERATORS as G

    extras = G.get("edm").spec_extras({"network_pkl": str(path), "conditional": False})
    assert extras["unconditional_pickle"] == gen.fit_identity()["unconditional_pickle"] == "class-per-seed"
    assert G.get("edm").spec_extras({}) == {}  # the in-suite network keeps its keys


def test_realfake_sd_without_fine_tuning_has_no_guidance_token(smoke_digits, tiny_sd_path, tiny_clip_path,
                                                                tmp_path):
    """``finetune_steps=0`` is Table 2's "no fine-tuning" rows (Yuan et al. 2024,
    arXiv 2310.10402), none with visual guidance, and the option says visual
    guidance then does nothing. On Stable Diffusion it still appended the zero
    projection's token, whose zero key takes a share of every cross-attention, so
    the samples moved (and an image encoder was demanded)."""
    from conftest import fit_generator

    common = dict(sd_model=str(tiny_sd_path), finetune_steps="0", sampler_steps="2")
    on = fit_generator("realfake", smoke_digits, tmp_path, visual_guidance="true", image_encoder=str(tiny_clip_path),
                       **common)
    off = fit_generator("realfake", smoke_digits, tmp_path, visual_guidance="false", **common)
    labels, seeds = torch.tensor([0, 1, 2, 3]), [1, 2, 3, 4]
    assert torch.equal(on.sample(labels, seeds), off.sample(labels, seeds))
    # no encoder needed for a component that does not run
    no_encoder = fit_generator("realfake", smoke_digits, tmp_path, visual_guidance="true", **common)
    assert torch.equal(no_encoder.sample(labels, seeds), off.sample(labels, seeds))
    with pytest.raises(UserError, match="image_encoder"):
        fit_generator("realfake", smoke_digits, tmp_path, visual_guidance="true",
                      **{**common, "finetune_steps": "1"})


def test_realfake_guidance_scale_is_validated_like_sds():
    """realfake's guidance_scale took any float (-3 ran Stable Diffusion silently
    without guidance); sd's guidance already had to be >= 0."""
    cls = GENERATORS.get("realfake")
    assert resolve_options(cls.options, {"guidance_scale": "2"}, "realfake")["guidance_scale"] == 2.0
    with pytest.raises(UserError, match="guidance_scale.*>= 0"):
        resolve_options(cls.options, {"guidance_scale": "-3"}, "realfake")
