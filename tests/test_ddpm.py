"""Improved DDPM (Nichol & Dhariwal 2021): the VLB terms, the respaced sampler,
reconstruction, and unconditional samples pseudo-labelled with a threshold."""

import math

import pytest
import torch

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.errors import UserError
from synthbench.generators.ddpm import (
    T_TRAIN, DiffusionTerms, discretized_gaussian_nll, make_scheduler, normal_kl,
)

from conftest import fit_generator

CPU = torch.device("cpu")


def test_cosine_schedule_and_respacing():
    sched = make_scheduler()
    abar = sched.alphas_cumprod.double()
    # Eq. 17: abar_t = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), s = 0.008 (betas capped at 0.999)
    f = lambda t: math.cos(((t / T_TRAIN + 0.008) / 1.008) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 100, 500, 900):
        assert float(abar[t]) == pytest.approx(f(t + 1) / f(0), rel=1e-4)
    steps = make_scheduler(50).timesteps.tolist()
    assert len(steps) == 50 and steps[0] == T_TRAIN - 1 and steps[-1] == 0


def test_kl_and_decoder_nll():
    m, lv = torch.randn(5), torch.randn(5)
    assert torch.allclose(normal_kl(m, lv, m, lv), torch.zeros(5), atol=1e-7)
    # KL of N(0,1) from N(1,1) is 1/2
    assert float(normal_kl(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.0))) == \
        pytest.approx(0.5)
    x = torch.tensor([0.0, 0.5, -1.0, 1.0])
    sharp = discretized_gaussian_nll(x, x, torch.full((4,), math.log(1e-3)))
    blurry = discretized_gaussian_nll(x, x, torch.full((4,), math.log(0.5)))
    assert torch.all(sharp < 1e-3) and torch.all(blurry > sharp)


def test_vlb_prefers_the_true_posterior_variance():
    """With the true noise, L_t is smallest when the learned interpolation puts
    the variance at the true posterior's (v = -1, beta~_t) for mid-range t."""
    terms = DiffusionTerms(make_scheduler())
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    t = torch.full((4,), 500)
    eps = torch.randn(x0.shape, generator=g)
    abar = terms.abar[t].view(-1, 1, 1, 1).float()
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    lo = terms.vlb_terms(x0.double(), xt.double(), t, eps.double(), -torch.ones_like(x0).double())
    hi = terms.vlb_terms(x0.double(), xt.double(), t, eps.double(), torch.ones_like(x0).double())
    assert torch.all(lo < 1e-6) and torch.all(hi > lo)


@pytest.fixture(scope="module")
def ddpm(smoke_digits, session_cache):
    return fit_generator("ddpm", smoke_digits, session_cache, train_steps="300", sampler_steps="10",
                         eval_batch="16")


def test_reconstruction_follows_the_reverse_step(ddpm, smoke_digits):
    imgs, labels = smoke_digits.train.images[:8], smoke_digits.train.labels[:8]
    seeds = list(range(8))
    dist = {t: (ddpm.reconstruct(imgs, labels, t, seeds).float() - imgs.float()).abs().mean().item()
            for t in (0, 10, 80)}
    assert dist[0] == 0 and dist[10] < dist[80]
    with pytest.raises(UserError):
        ddpm.reconstruct(imgs, labels, 101, seeds)


def test_unconditional_samples_are_pseudo_labelled_with_a_threshold(smoke_digits, session_cache,
                                                                    reference_classifier, tmp_path):
    gen = fit_generator("ddpm", smoke_digits, session_cache, conditional="false", train_steps="30",
                        sampler_steps="3", eval_batch="16", confidence_threshold="0.5")
    assert not gen.conditional
    ctx = CellContext(dataset=smoke_digits, generator=gen, preset=PRESETS["smoke"], seed=0, device=CPU,
                      options={}, samples=SampleCache(tmp_path), cache_dir=tmp_path)
    ctx.reference_classifier = lambda: reference_classifier  # a trained judge, not a smoke one
    split = ctx.synthetic(24)
    _, conf = ctx.pseudo_label(split.images)
    assert len(split) == 24 and torch.all(conf >= 0.5)
    assert torch.equal(split.labels, ctx.pseudo_label(split.images)[0])
    gen.opts["confidence_threshold"] = 0.999999
    assert gen.pseudo_label_threshold() == 0.999999  # the option is the threshold the harness applies
    with pytest.raises(UserError, match="reach the pseudo-label confidence threshold 0.999999; lower the threshold"):
        ctx.synthetic(24)


def test_bf16_training_is_deterministic_and_keyed_apart(smoke_digits, tmp_path):
    """ddpm's own training loop under train_precision=bf16: the same weights in two
    runs, other weights than fp32's, each in its own cache file."""
    a = fit_generator("ddpm", smoke_digits, tmp_path / "a", train_steps="5", train_precision="bf16")
    b = fit_generator("ddpm", smoke_digits, tmp_path / "b", train_steps="5", train_precision="bf16")
    f = fit_generator("ddpm", smoke_digits, tmp_path / "a", train_steps="5", train_precision="fp32")
    wa, wb, wf = (g.unet.state_dict() for g in (a, b, f))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wf[k]) for k in wa)
    assert len(list((tmp_path / "a" / "generators").glob("ddpm-*.pt"))) == 2
