"""The in-suite StyleGAN3: its alias-free signal processing (Karras et al. 2021,
Sec. 3.2), modulated convolution (StyleGAN2 Sec. 2.2), R1, training determinism,
truncation and the weights cache. Smoke preset, seconds on a CPU."""

from __future__ import annotations

import math
import os

import pytest
import torch

from synthbench.benchmark.datasets import Split
from synthbench.benchmark.presets import PRESETS
from synthbench.errors import UserError
from synthbench.generators.base import FitContext
from synthbench.generators import stylegan3 as sg3
from synthbench.generators.stylegan3 import r1_penalty
from synthbench.generators.stylegan3_networks import (
    Discriminator, StyleGAN3Net, design_lowpass_filter, filtered_lrelu, filtered_lrelu_matrices,
    layer_schedule, modulated_conv2d, resample_matrix, upfirdn2d,
)

from conftest import fit_generator


def test_lowpass_filter_passes_dc_and_stops_nyquist():
    """Sec. 3.2: the windowed-sinc filter keeps the band below the cutoff and
    suppresses the stopband; a constant passes unchanged, the Nyquist-frequency
    alternation (-1)^n is removed."""
    f = design_lowpass_filter(numtaps=12, cutoff=4.0, width=2 * 2.5, fs=16.0)
    assert f.shape == (12,)
    assert torch.allclose(f, f.flip(0))  # linear phase
    assert abs(float(f.sum()) - 1.0) < 1e-6
    n = 64
    const = torch.full((1, 1, n, n), 3.0)
    out = upfirdn2d(const, f)
    assert torch.allclose(out, torch.full_like(out, 3.0), atol=1e-5)
    alt = torch.tensor([(-1.0) ** i for i in range(n)])
    nyq = (alt[:, None] * alt[None, :]).view(1, 1, n, n)
    assert upfirdn2d(nyq, f).abs().max() < 1e-2
    # A frequency well inside the pass band survives at close to full amplitude.
    t = torch.arange(n, dtype=torch.float32)
    slow = torch.cos(2 * math.pi * 1.0 / 16.0 * t).view(1, 1, 1, n).expand(1, 1, n, n)
    assert abs(float(upfirdn2d(slow, f).abs().max()) - 1.0) < 0.05
    assert design_lowpass_filter(1, 4.0, 2.0, 16.0) is None


def test_lowpass_filter_matches_scipy_firwin():
    signal = pytest.importorskip("scipy.signal")
    ours = design_lowpass_filter(numtaps=24, cutoff=5.0, width=6.0, fs=32.0)
    ref = signal.firwin(numtaps=24, cutoff=5.0, width=6.0, fs=32.0)
    assert torch.allclose(ours, torch.tensor(ref, dtype=torch.float32), atol=1e-6)


def test_upsampling_keeps_level_and_interpolates():
    """x2 upsampling by zero insertion + low-pass with gain up**2 keeps a
    constant's level (no checkerboard from the zeros)."""
    f = design_lowpass_filter(12, cutoff=4.0, width=4.0, fs=16.0)
    x = torch.full((1, 2, 16, 16), 2.0)
    up = upfirdn2d(x, f, up=2, padding=(6, 5, 6, 5), gain=4)
    inner = up[..., 8:-8, 8:-8]
    assert torch.allclose(inner, torch.full_like(inner, 2.0), atol=1e-4)


def test_matrix_resampling_equals_reference_upfirdn2d():
    """Each layer runs its filtered nonlinearity as matrices; they compute what
    the reference (NVlabs-style upfirdn2d) computes."""
    net = StyleGAN3Net((1, 28, 28), 10, 64, 16, 5)
    gen = torch.Generator().manual_seed(0)
    for layer in net.synthesis.layers:
        n = layer.up_matrix.shape[1]
        x = torch.randn(2, 3, n, n, generator=gen)
        b = torch.randn(3, generator=gen)
        ref = filtered_lrelu(x, layer.up_filter, layer.down_filter, b, layer.up_factor, layer.down_factor,
                             layer.padding, math.sqrt(2), 0.2, 256)
        fast = filtered_lrelu_matrices(x, layer.up_matrix, layer.down_matrix, b, math.sqrt(2), 0.2, 256)
        assert ref.shape == fast.shape
        assert torch.allclose(ref, fast, atol=1e-5)
    m = resample_matrix(8, None)
    assert torch.equal(m, torch.eye(8))


def test_layer_schedule_is_the_papers():
    """Fig. 4c: cutoffs grow geometrically to resolution / 2, the last layers are
    critically sampled (cutoff = Nyquist), sampling rates are powers of two, and
    before them each layer's stopband lies below its Nyquist frequency, so the
    filtered nonlinearity leaves nothing to alias."""
    s = layer_schedule(32, num_layers=8, num_critical=2, margin=4)
    assert s["cutoffs"][0] == 2.0 and s["cutoffs"][-1] == 16.0 and s["cutoffs"][-3] == 16.0
    assert all(a <= b for a, b in zip(s["cutoffs"], s["cutoffs"][1:]))
    assert all(float(r).is_integer() and math.log2(r).is_integer() for r in s["rates"])
    assert all(s["cutoffs"][-3:] == s["rates"][-3:] / 2)
    assert all((s["cutoffs"] + s["half_widths"])[:-3] <= s["rates"][:-3] / 2 + 1e-9)
    assert list(s["sizes"][-2:]) == [32, 32] and s["sizes"][0] == s["rates"][0] + 8


def test_demodulation_gives_unit_variance():
    """StyleGAN2 Eq. 2-3: with unit-variance i.i.d. inputs, demodulated outputs
    have unit variance whatever the weights and styles; without demodulation
    the styles' scale comes through."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 32, 20, 20, generator=gen)
    w = torch.randn(24, 32, 3, 3, generator=gen) * 5
    s = torch.rand(16, 32, generator=gen) * 3 + 0.5
    y = modulated_conv2d(x, w, s, demodulate=True)
    std = y.std(dim=(0, 2, 3))
    assert torch.allclose(std, torch.ones_like(std), atol=0.1)
    y_raw = modulated_conv2d(x, w, s, demodulate=False)
    assert float(y_raw.std()) > 5


def test_modulated_conv_is_per_sample():
    """Style normalisation per sample: an image's output does not depend on the
    other samples in the batch (the official code's batch-wide scalar would)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 8, 10, 10, generator=gen)
    w = torch.randn(8, 8, 3, 3, generator=gen)
    s = torch.randn(6, 8, generator=gen)
    whole = modulated_conv2d(x, w, s, padding=2)
    part = modulated_conv2d(x[:2], w, s[:2] * 1.0, padding=2)
    assert torch.allclose(whole[:2], part, atol=1e-5)


def test_r1_penalty_equals_a_direct_gradient():
    """R1 = ||grad_x D(x)||^2 per sample: equal to a finite-difference gradient
    of D's summed logits in float64."""
    torch.manual_seed(0)
    D = Discriminator((1, 8, 8), 10, 8).double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    c = torch.nn.functional.one_hot(torch.tensor([0, 3, 5, 9]), 10).double()
    r1 = r1_penalty(D(x, c), x)
    assert r1.shape == (4,) and r1.requires_grad
    eps = 1e-6
    grad = torch.zeros_like(x)
    with torch.no_grad():
        flat = x.detach().clone().view(-1)
        for i in range(flat.numel()):
            plus, minus = flat.clone(), flat.clone()
            plus[i] += eps
            minus[i] -= eps
            grad.view(-1)[i] = (D(plus.view_as(x), c).sum() - D(minus.view_as(x), c).sum()) / (2 * eps)
    assert torch.allclose(r1.detach(), grad.square().sum([1, 2, 3]), rtol=1e-5)


def test_output_shapes_for_every_dataset_shape():
    """8x8 digits, 28x28 fashion-mnist (a 32x32 canvas, resized), 32x32x3 CIFAR."""
    z = torch.randn(2, 64)
    c = torch.eye(10)[:2]
    for shape in [(1, 8, 8), (1, 28, 28), (3, 32, 32)]:
        net = StyleGAN3Net(shape, 10, 64, 16, 4)
        assert net(z, c).shape == (2, *shape)
    d = Discriminator((1, 28, 28), 10, 8)
    assert d(torch.zeros(4, 1, 28, 28), torch.eye(10)[:4]).shape == (4,)


@pytest.fixture(scope="module")
def sg(smoke_digits, session_cache):
    return fit_generator("stylegan3", smoke_digits, session_cache, eval_batch="16")


def test_training_is_deterministic_and_learns(smoke_digits, tmp_path):
    """The same config trains to the same bytes; steps change the network."""
    a = fit_generator("stylegan3", smoke_digits, tmp_path / "a", train_steps="4")
    b = fit_generator("stylegan3", smoke_digits, tmp_path / "b", train_steps="4")
    c = fit_generator("stylegan3", smoke_digits, tmp_path / "c", train_steps="1")
    labels, seeds = torch.arange(10), list(range(10))
    assert torch.equal(a.sample(labels, seeds), b.sample(labels, seeds))
    sa, sc = a.net.state_dict(), c.net.state_dict()
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_weights_are_cached(sg, smoke_digits, session_cache, monkeypatch):
    assert list((session_cache / "generators").glob("stylegan3-*.pt"))

    def no_training(*args, **kwargs):
        raise AssertionError("a cached fit must not train")

    monkeypatch.setattr(sg3.StyleGAN3Generator, "_train", no_training)
    again = fit_generator("stylegan3", smoke_digits, session_cache, eval_batch="16")
    assert again.fingerprint() == sg.fingerprint()
    labels, seeds = torch.tensor([1, 2, 3]), [5, 6, 7]
    assert torch.equal(again.sample(labels, seeds), sg.sample(labels, seeds))


def test_corrupt_cached_weights_is_a_clear_error(smoke_digits, tmp_path):
    fit_generator("stylegan3", smoke_digits, tmp_path, train_steps="2")
    (path,) = (tmp_path / "generators").glob("stylegan3-*.pt")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="Delete that file"):
        fit_generator("stylegan3", smoke_digits, tmp_path, train_steps="2")


def test_truncation_pulls_to_the_class_centre(smoke_digits, session_cache, sg):
    """psi = 0 maps every z of a class to its class's centre of W (StyleGAN Sec.
    3.2), so all its samples coincide; classes stay apart; psi = 1 varies."""
    flat = fit_generator("stylegan3", smoke_digits, session_cache, psi="0")
    labels = torch.tensor([4, 4, 4, 7, 7])
    x = flat.sample(labels, [1, 2, 3, 4, 5])
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]) and torch.equal(x[3], x[4])
    assert not torch.equal(x[0], x[3])
    y = sg.sample(labels, [1, 2, 3, 4, 5])
    assert not torch.equal(y[0], y[1])


def test_too_few_layers_is_a_clear_error(smoke_digits, tmp_path):
    with pytest.raises(UserError, match="layers=2"):
        fit_generator("stylegan3", smoke_digits, tmp_path, layers="2")


def test_trains_on_rgb_32x32_with_flips_and_on_28x28(tmp_path):
    """CIFAR's 32x32x3 (x-flip augmentation on) and fashion-mnist's 28x28x1
    (a 32x32 canvas, resized) train and sample in the dataset's shape."""
    gen = torch.Generator().manual_seed(0)
    for shape, hflip in [((3, 32, 32), True), ((1, 28, 28), False)]:
        train = Split(torch.randint(0, 256, (20, *shape), dtype=torch.uint8, generator=gen),
                      torch.arange(20) % 10)
        ctx = FitContext(train=train, class_names=[str(i) for i in range(10)], image_shape=shape,
                         dataset_digest=f"fake-{shape}", preset=PRESETS["smoke"], device=torch.device("cpu"),
                         cache_dir=tmp_path, hflip=hflip)
        g = sg3.StyleGAN3Generator(**{**{k: o.default for k, o in sg3.StyleGAN3Generator.options.items()},
                                      "train_steps": 2, "batch_size": 4, "channels": 8, "layers": 3})
        g.fit(ctx)
        x = g.sample(torch.tensor([0, 9]), [1, 2])
        assert x.dtype == torch.uint8 and x.shape == (2, *shape)


@pytest.mark.skipif(os.environ.get("SYNTHBENCH_SLOW") != "1", reason="minutes: set SYNTHBENCH_SLOW=1")
def test_fast_preset_label_adherence(digits, reference_classifier, tmp_path):
    """The bar: trained in-suite on digits at the fast preset, the reference
    classifier agrees with the requested label at least 80% of the time."""
    from synthbench.benchmark.trainer import predict_logits

    g = sg3.StyleGAN3Generator(**{k: o.default for k, o in sg3.StyleGAN3Generator.options.items()})
    g.fit(FitContext.from_dataset(digits.capped(PRESETS["fast"].max_train_per_class), PRESETS["fast"],
                                  torch.device("cpu"), tmp_path))
    labels = torch.arange(10).repeat(60)
    pred = predict_logits(reference_classifier, g.sample(labels, list(range(1000, 1600))),
                          torch.device("cpu")).argmax(1)
    assert (pred == labels).float().mean().item() >= 0.8
