"""Noise levels of real-sample reconstruction (Yamaguchi & Fukuda 2023, arXiv
2311.13090, Algorithm 1): the reference DDPM-linear schedule, each generator's
``recon_sigma``, reconstruction from a given noise level (``sigma=``), the
stochastic reverse step (``churn=``), and steps-mode reconstructions that are
bit-identical to the code before these existed."""

from __future__ import annotations

import math

import pytest
import torch

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.seeding import derive_seed, per_sample_normal
from synthbench.errors import UserError
from synthbench.generators.diffusion import (
    T_RECON, ddpm_linear_sigma, ddpm_linear_step, heun_sample, karras_sigmas, recon_sigmas, reconstruct_images,
    to_uint8, to_unit,
)
from synthbench.plugins import GENERATORS

from conftest import fit_generator
from tiny_sd import tiny_sd_path  # noqa: F401  (session fixture)

T_RES = (30, 50, 70, 100)


def _unfitted(name: str, **options):
    cls = GENERATORS.get(name)
    return cls(**resolve_options(cls.options, options, name))


# -- the reference schedule ----------------------------------------------------------------
def test_ddpm_linear_sigma_is_hos_linear_schedule_in_100_steps():
    assert ddpm_linear_sigma(0) == 0.0
    got = [ddpm_linear_sigma(t) for t in (30, 50, 70)]
    assert got == pytest.approx([1.2317, 3.5324, 13.246], rel=1e-3)  # the "about 1.2 / 3.5 / 13.2"
    assert ddpm_linear_sigma(100) == pytest.approx(221.455, rel=1e-4)
    # step t: abar_t = prod_{s <= t} (1 - beta_s), betas 1e-3..0.2 (Ho et al.'s 1e-4..0.02 x 1000 / T)
    betas = torch.linspace(1e-3, 0.2, 100, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    for t in (1, 30, 77, 100):
        assert ddpm_linear_sigma(t) == pytest.approx(float(((1 - abar[t - 1]) / abar[t - 1]).sqrt()), rel=1e-12)
    levels = [ddpm_linear_sigma(t / 4) for t in range(401)]
    assert all(a < b for a, b in zip(levels, levels[1:]))  # strictly increasing, fractional steps included
    with pytest.raises(UserError):
        ddpm_linear_sigma(101)


def test_ddpm_linear_step_inverts_the_schedule():
    for t in (0, 0.3, 1, 12.5, 30, 50, 70, 99.75, 100):
        assert ddpm_linear_step(ddpm_linear_sigma(t)) == pytest.approx(t, abs=1e-9)
    for sigma in (0.002, 0.29, 2.4, 12.1, 80.0):
        assert ddpm_linear_sigma(ddpm_linear_step(sigma)) == pytest.approx(sigma, rel=1e-9)
    assert ddpm_linear_step(0) == 0.0
    assert ddpm_linear_step(1e6) == 100.0  # beyond the schedule's last level


# -- each generator's start level, steps mode ---------------------------------------------------
def test_edm_and_in_suite_realfake_start_on_the_karras_grid():
    want = [0.2922, 2.4037, 12.117, 80.0]
    for gen in (_unfitted("edm"), _unfitted("realfake")):
        assert [gen.recon_sigma(t) for t in T_RES] == pytest.approx(want, rel=1e-3)
        assert gen.recon_sigma(0) == 0.0
    grid = karras_sigmas(T_RECON)
    assert _unfitted("edm").recon_sigma(37) == float(grid[T_RECON - 37])
    assert _unfitted("realfake", sd_model="some/folder").recon_sigma(30) is None  # unknown before its fit


def test_ddpm_starts_on_its_cosine_schedule():
    from synthbench.generators.ddpm import make_scheduler

    gen = _unfitted("ddpm")
    assert [gen.recon_sigma(t) for t in (30, 50, 70)] == pytest.approx([0.5224, 1.0156, 1.9884], rel=1e-3)
    abar = make_scheduler().alphas_cumprod.double()
    assert gen.recon_sigma(50) == pytest.approx(float(((1 - abar[500]) / abar[500]).sqrt()), rel=1e-12)
    assert gen.recon_sigma(100) > 1e4  # t = 999: essentially pure noise
    assert gen.recon_sigma(0) == 0.0


def test_a_third_party_adapter_does_not_say():
    from synthbench.generators.base import Generator

    assert Generator().recon_sigma(30) is None


# -- sigma mode ----------------------------------------------------------------------------------
def test_in_sigma_mode_edm_and_ddpm_start_at_nearly_the_same_level():
    edm, ddpm = _unfitted("edm"), _unfitted("ddpm")
    for t in (10, 30, 50, 70, 100):
        s = ddpm_linear_sigma(t)
        assert edm.recon_sigma(t, sigma=s) == s
        # the nearest of 1,000 cosine steps (within 1%; 3.4% at 221, where its levels grow 7% a step)
        assert ddpm.recon_sigma(t, sigma=s) == pytest.approx(s, rel=0.01 if t < 100 else 0.04)
        assert ddpm_linear_step(ddpm.recon_sigma(t, sigma=s)) == pytest.approx(t, abs=0.5)


def test_sigma_schedule_starts_at_sigma_then_follows_the_grid():
    grid = karras_sigmas(T_RECON)
    s = recon_sigmas(40, sigma=1.0)
    assert float(s[0]) == 1.0 and float(s[-1]) == 0.0
    assert torch.equal(s[1:], grid[grid < 1.0])
    assert torch.equal(recon_sigmas(40, sigma=float(grid[T_RECON - 40])), recon_sigmas(40))  # a grid level
    above = recon_sigmas(100, sigma=221.0)
    assert float(above[0]) == 221.0 and torch.equal(above[1:], grid)
    assert len(recon_sigmas(40, sigma=0.0)) == 0
    with pytest.raises(UserError):
        recon_sigmas(40, sigma=float("nan"))


def test_sigma_mode_diffuses_to_exactly_that_level():
    """A denoiser that records the levels it is asked for: the first is the one given."""
    asked: list[float] = []

    def denoise(x, sigma):
        asked.append(float(sigma))
        return torch.zeros_like(x)

    imgs = torch.full((2, 1, 4, 4), 128, dtype=torch.uint8)
    reconstruct_images(denoise, imgs, 30, [1, 2], sigma=3.5)
    assert asked[0] == 3.5 and all(a < 3.5 for a in asked[1:])
    assert torch.equal(reconstruct_images(denoise, imgs, 30, [1, 2], sigma=0.0), imgs)


# -- fitted generators: steps mode is v3's, sigma mode and churn ----------------------------------
@pytest.fixture(scope="module")
def edm(smoke_digits, session_cache):
    return fit_generator("edm", smoke_digits, session_cache, eval_batch="16")


@pytest.fixture(scope="module")
def ddpm(smoke_digits, session_cache):
    return fit_generator("ddpm", smoke_digits, session_cache, train_steps="30", sampler_steps="6",
                         eval_batch="16")


def _old_edm_reconstruct(denoise, images, t_re, seeds, churn=0.0):
    """``diffusion.reconstruct_images`` as it was before noise levels (recon v3)."""
    if t_re == 0:
        return images.clone()
    grid = karras_sigmas(T_RECON)
    sigmas = grid[T_RECON - t_re:]
    eps = per_sample_normal([derive_seed("edm-recon", s) for s in seeds], images.shape[1:]).double()
    x = eps * sigmas[0] if t_re == T_RECON else to_unit(images) + eps * sigmas[0]
    return to_uint8(heun_sample(denoise, x, sigmas, churn, seeds, desc=f"reconstruct t_re={t_re}"))


def _old_ddpm_reconstruct(gen, images, labels, t_re, seeds):
    """``DDPMGenerator.reconstruct`` as it was before noise levels (recon v3)."""
    from synthbench.generators.ddpm import T_TRAIN, make_scheduler

    if t_re == 0:
        return images.clone()
    labels = gen._labels(labels)
    t_start = min(T_TRAIN - 1, round(t_re / T_RECON * T_TRAIN))
    timesteps = [t_start] + [t for t in make_scheduler(gen.steps).timesteps.tolist() if t < t_start]
    abar = make_scheduler().alphas_cumprod[t_start]
    eps = per_sample_normal([derive_seed("ddpm-recon", s) for s in seeds], gen.image_shape)
    x = abar.sqrt() * (images.float() / 127.5 - 1.0) + (1 - abar).sqrt() * eps
    return to_uint8(gen._reverse(x, timesteps, labels, seeds, desc="reconstruct"))


def test_edm_steps_mode_is_bit_identical_to_before(edm, smoke_digits):
    imgs, labels = smoke_digits.train.images[:6], smoke_digits.train.labels[:6]
    seeds = [5, 6, 7, 8, 9, 10]
    for t in (0, 20, T_RECON):
        assert torch.equal(edm.reconstruct(imgs, labels, t, seeds),
                           _old_edm_reconstruct(edm._denoiser(labels), imgs, t, seeds))


def test_ddpm_steps_mode_is_bit_identical_to_before(ddpm, smoke_digits):
    imgs, labels = smoke_digits.train.images[:4], smoke_digits.train.labels[:4]
    seeds = [3, 4, 5, 6]
    for t in (0, 30):
        assert torch.equal(ddpm.reconstruct(imgs, labels, t, seeds), _old_ddpm_reconstruct(ddpm, imgs, labels, t, seeds))


def test_sigma_mode_at_a_generators_own_level_is_its_steps_mode(edm, ddpm, smoke_digits):
    """Asked for the level t_re already starts from, a generator runs the very same chain."""
    imgs, labels = smoke_digits.train.images[:4], smoke_digits.train.labels[:4]
    seeds = [1, 2, 3, 4]
    for gen in (edm, ddpm):
        own = gen.recon_sigma(30)
        assert gen.recon_sigma(30, sigma=own) == pytest.approx(own, rel=1e-12)
        assert torch.equal(gen.reconstruct(imgs, labels, 30, seeds, sigma=own), gen.reconstruct(imgs, labels, 30, seeds))


def test_sigma_mode_reconstructs_more_at_higher_levels(edm, ddpm, smoke_digits):
    imgs, labels = smoke_digits.train.images[:8], smoke_digits.train.labels[:8]
    seeds = list(range(8))
    for gen in (edm, ddpm):
        dist = [(gen.reconstruct(imgs, labels, 50, seeds, sigma=s).float() - imgs.float()).abs().mean().item()
                for s in (0.0, 0.05, 50.0)]
        assert dist[0] == 0 and dist[1] < dist[2]


def test_churn_changes_the_reconstruction_and_is_seeded(edm, smoke_digits):
    imgs, labels = smoke_digits.train.images[:6], smoke_digits.train.labels[:6]
    seeds = [21, 22, 23, 24, 25, 26]
    plain = edm.reconstruct(imgs, labels, 40, seeds)
    assert torch.equal(edm.reconstruct(imgs, labels, 40, seeds, churn=0.0), plain)
    stochastic = edm.reconstruct(imgs, labels, 40, seeds, churn=10.0)
    assert not torch.equal(stochastic, plain)
    assert torch.equal(edm.reconstruct(imgs, labels, 40, seeds, churn=10.0), stochastic)  # same seeds, same bytes
    # image i's churn noise depends on its own seed: a sub-batch gives the same rows (float rounding aside)
    part = edm.reconstruct(imgs[2:5], labels[2:5], 40, seeds[2:5], churn=10.0)
    assert (part.int() - stochastic[2:5].int()).abs().max() <= 1
    assert not torch.equal(edm.reconstruct(imgs, labels, 40, [s + 100 for s in seeds], churn=10.0), stochastic)


def test_ddpm_accepts_and_ignores_churn(ddpm, smoke_digits):
    imgs, labels = smoke_digits.train.images[:3], smoke_digits.train.labels[:3]
    assert torch.equal(ddpm.reconstruct(imgs, labels, 30, [1, 2, 3], churn=5.0),
                       ddpm.reconstruct(imgs, labels, 30, [1, 2, 3]))


def test_reference_and_generator_levels_differ_in_steps_mode():
    """The issue this answers: equal t_re is not equal noise across generators."""
    edm, ddpm = _unfitted("edm"), _unfitted("ddpm")
    for t in (50, 70):
        assert not math.isclose(edm.recon_sigma(t), ddpm.recon_sigma(t), rel_tol=0.5)


def test_sd_recon_sigma_is_the_level_img2img_noises_to(smoke_digits, tiny_sd_path, tmp_path, monkeypatch):  # noqa: F811
    """Stable Diffusion's start level is its scheduler's at the first timestep
    img2img runs for strength t_re / 100: the one it noises the latents to."""
    sd = fit_generator("sd", smoke_digits, tmp_path, model=str(tiny_sd_path), sampler_steps="3", eval_batch="2")
    sched = sd.runner.img2img.scheduler
    add_noise, seen = sched.add_noise, []

    def spy(latents, noise, timesteps):
        seen.append(int(timesteps.flatten()[0]))
        return add_noise(latents, noise, timesteps)

    monkeypatch.setattr(sched, "add_noise", spy)
    imgs, labels = smoke_digits.train.images[:1], smoke_digits.train.labels[:1]
    for t_re in (10, 70, 100):
        seen.clear()
        sd.reconstruct(imgs, labels, t_re, [3])
        abar = sched.alphas_cumprod[seen[0]].double()
        assert sd.recon_sigma(t_re) == pytest.approx(float(((1 - abar) / abar).sqrt()), rel=1e-9)
    assert sd.recon_sigma(0) == 0.0 and sd.recon_sigma(30, sigma=1.0) is None
