"""A small class-conditional StyleGAN3 (Karras et al. 2021, "Alias-Free Generative
Adversarial Networks") and a projection discriminator, in plain torch.

The generator follows the paper's alias-free design (and the structure of NVlabs'
``training/networks_stylegan3.py``, config T), scaled down for small images:

- mapping network (StyleGAN2 Sec. 2 / StyleGAN3 Sec. 3): z and a class embedding,
  each normalised to unit second moment, concatenated, through an MLP with
  equalised learning rate -> w; per-class centres of W for the truncation trick;
- Fourier-feature input (Sec. 3.2, "Fourier features"): sinusoids of fixed random
  frequencies inside the first layer's band, rotated and translated by an affine
  of w, so the input is an infinitely precise continuous signal;
- layers: modulated 3x3 convolution with weight demodulation (StyleGAN2 Sec. 2.2,
  Eq. 1-3), then the filtered nonlinearity of Sec. 3.2 ("Nonlinearity"):
  upsample x2 with a Kaiser-windowed sinc low-pass filter, leaky ReLU, low-pass
  filter and downsample back, so the pointwise nonlinearity's new high
  frequencies are removed before they can alias; cutoffs, stopbands and
  sampling rates follow the paper's schedule (Sec. 3.2, "Flexible layer
  specifications"; Fig. 4c), the last two layers critically sampled; no noise
  inputs and no skip connections (Sec. 3.1); a margin around the canvas
  (Sec. 3.2, "Boundaries and upsampling"; the paper's 10 pixels at 256-1024 px,
  here canvas / 8 and at least 2 pixels);
- the image is produced at the next power-of-two canvas (8, 32, 32) and, where the
  dataset is smaller (28x28), resized with an antialiasing filter.

The discriminator is StyleGAN2's residual one (small), class-conditional through a
projection head (Miyato & Koyama 2018, "cGANs with Projection Discriminator", Eq. 3).

Everything here is deterministic given its inputs: no noise inputs, no batch
statistics in the generator, and style normalisation per sample (see
:func:`modulated_conv2d`), so image i depends on (z_i, c_i) alone.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------
# Signal processing: windowed-sinc low-pass filters and upfirdn2d.


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float) -> torch.Tensor | None:
    """A 1-D Kaiser-windowed sinc low-pass filter (``scipy.signal.firwin`` with
    ``width``), normalised to unit DC gain: StyleGAN3 Sec. 3.2 and Appendix C
    ("we use a Kaiser window ... for a transition band of 2 * half-width"); the
    window's beta from the stopband attenuation that ``numtaps`` and ``width``
    allow (Kaiser 1974, ``scipy.signal.kaiser_atten`` and ``kaiser_beta``).

    ``cutoff`` and ``width`` are in the units of ``fs`` (the sampling rate), so a
    cutoff of fs/4 keeps the lower half of the band. ``numtaps == 1`` means no
    filtering (returns None)."""
    if numtaps == 1:
        return None
    from scipy.signal import kaiser_atten, kaiser_beta

    nyq = fs / 2
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    m = torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2
    c = cutoff / nyq
    h = c * torch.special.sinc(c * m)
    h = h * torch.kaiser_window(numtaps, periodic=False, beta=beta, dtype=torch.float64)
    h = h / h.sum()  # unit gain at DC: a constant passes unchanged
    return h.to(torch.float32)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the separable filter ``f``
    (applied along x, then y), and downsample by dropping samples: NVlabs'
    reference ``upfirdn2d``. ``padding`` is (x0, x1, y0, y1); ``gain`` scales the
    filter's 2-D DC gain (``up**2`` keeps the signal's level after zero insertion)."""
    n, ch, h, w = x.shape
    px0, px1, py0, py1 = (int(p) for p in padding)
    if up > 1:
        x = x.reshape(n, ch, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, ch, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f is not None:
        f = (f * math.sqrt(gain)).to(x.dtype).flip(0)  # true convolution; sqrt: gain split over 2 axes
        k = f.numel()
        x = F.conv2d(x, f.view(1, 1, 1, k).expand(ch, 1, 1, k), groups=ch)
        x = F.conv2d(x, f.view(1, 1, k, 1).expand(ch, 1, k, 1), groups=ch)
    elif gain != 1:
        x = x * gain
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def resample_matrix(n_in: int, f: torch.Tensor | None, up: int = 1, down: int = 1, pad0: int = 0, pad1: int = 0,
                    gain: float = 1.0) -> torch.Tensor:
    """The linear map [n_out, n_in] of :func:`upfirdn2d` along one axis (with the
    1-D share ``gain`` of the gain) on signals of length ``n_in``, computed in
    float64 by applying that op to the identity. Upsampling, filtering and
    downsampling along one axis is linear, so the separable 2-D op is
    ``M_y @ x @ M_x^T``: the same numbers as :func:`upfirdn2d`, as two small
    batched matmuls (a CPU runs these far faster than depthwise convolutions
    with 12-tap kernels)."""
    x = torch.eye(n_in, dtype=torch.float64)
    if up > 1:
        x = F.pad(x.reshape(n_in, n_in, 1), [0, up - 1]).reshape(n_in, n_in * up)
    x = F.pad(x, [max(pad0, 0), max(pad1, 0)])
    x = x[:, max(-pad0, 0): x.shape[1] - max(-pad1, 0)]
    if f is not None:
        x = F.conv1d(x.unsqueeze(1), (f.double() * gain).flip(0).view(1, 1, -1)).squeeze(1)
    elif gain != 1:
        x = x * gain
    return x[:, ::down].t().contiguous().float()


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor,
                   up: int, down: int, padding: Sequence[int], gain: float, slope: float,
                   clamp: float | None) -> torch.Tensor:
    """StyleGAN3 Sec. 3.2 ("Nonlinearity"), Fig. 4b: bias, upsample with the
    low-pass ``fu``, leaky ReLU (times ``gain``), clamp, low-pass ``fd`` and
    downsample. The temporary higher sampling rate gives the nonlinearity's
    new frequencies room, and ``fd`` removes them before decimation."""
    x = x + b.view(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2)
    x = F.leaky_relu(x, slope) * gain if slope != 1 else x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)


def filtered_lrelu_matrices(x: torch.Tensor, mu: torch.Tensor, md: torch.Tensor, b: torch.Tensor, gain: float,
                            slope: float, clamp: float | None) -> torch.Tensor:
    """:func:`filtered_lrelu` with the up- and down-resampling as the matrices of
    :func:`resample_matrix` (``mu`` includes the padding and the up**2 gain):
    the same result, computed as ``mu @ x @ mu^T``, nonlinearity, ``md @ x @ md^T``."""
    x = x + b.view(1, -1, 1, 1)
    x = mu @ x @ mu.t()
    x = F.leaky_relu(x, slope) * gain if slope != 1 else x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return md @ x @ md.t()


# --------------------------------------------------------------------------
# Layers with equalised learning rate (Karras et al. 2018, Sec. 4.1).


class FullyConnected(nn.Module):
    """Linear layer with equalised learning rate: weights stored as N(0, 1) /
    ``lr_multiplier`` and scaled at run time, so Adam's step size is the same in
    every layer (ProGAN Sec. 4.1); ``lr_multiplier`` < 1 slows a layer down
    (StyleGAN's mapping network uses 0.01)."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float | Sequence[float] = 0.0,
                 weight_init: float = 1.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (weight_init / lr_multiplier))
        bias = torch.broadcast_to(torch.as_tensor(bias_init, dtype=torch.float32), [out_features])
        self.bias = nn.Parameter(bias.clone() / lr_multiplier)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        return x


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution for the discriminator, with leaky ReLU
    (gain sqrt 2) and optional x2 downsampling through a [1, 3, 3, 1] low-pass
    filter (StyleGAN2's D)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, activation: str = "lrelu",
                 down: int = 1, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.activation, self.down, self.padding = activation, down, kernel // 2
        self.register_buffer("blur", torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.down > 1:
            x = upfirdn2d(x, self.blur, down=self.down, padding=(1, 1, 1, 1))
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        return x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(1, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, input_gain: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2's modulated convolution (Sec. 2.2, Eq. 1-3): scale the input
    channels by the per-sample styles s, convolve, and with ``demodulate``
    rescale each output channel by 1/sqrt(sum (s_i w_ijk)^2 + eps), so unit-
    variance inputs give unit-variance outputs (Eq. 2's assumption).

    Computed as scale -> shared convolution -> scale (StyleGAN2's non-fused form),
    which equals the per-sample grouped convolution and runs as an ordinary batched
    convolution. The weight and the styles are pre-normalised as in StyleGAN3's
    code; the styles per sample (the official code divides by one batch-wide
    scalar, which demodulation cancels exactly but which would make rounding
    depend on the batch). ``input_gain`` (StyleGAN3 Sec. 3.2's tracked input
    magnitude, 1/sqrt of its EMA) multiplies after demodulation, as in NVlabs'."""
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(1, keepdim=True).rsqrt()
    x = x * styles[:, :, None, None]
    x = F.conv2d(x, weight, padding=padding)
    if demodulate:
        dcoefs = ((weight[None] * styles[:, None, :, None, None]).square().sum([2, 3, 4]) + 1e-8).rsqrt()
        x = x * dcoefs[:, :, None, None]
    if input_gain is not None:
        x = x * input_gain
    return x


# --------------------------------------------------------------------------
# Generator.


class MappingNetwork(nn.Module):
    """z, c -> w (StyleGAN2-ADA's conditional mapping): z and the class embedding
    are each normalised to unit second moment, the embedding multiplied by
    ``class_gain`` (> 1 weights the class more heavily against z in the first
    layer), concatenated, and mapped by ``num_layers`` fully connected layers with
    learning-rate multiplier ``lr_multiplier`` (0.01 in the paper).

    ``w_avg`` holds the per-class centre of W, E_z[f(z, c)], estimated after
    training; truncation (StyleGAN Sec. 3.2, "truncation trick in W") pulls w
    toward its own class's centre so the class survives psi < 1."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_layers: int = 2, lr_multiplier: float = 0.01,
                 class_gain: float = 1.0):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.class_gain = z_dim, c_dim, w_dim, class_gain
        self.embed = FullyConnected(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.fcs = nn.ModuleList(FullyConnected(features[i], features[i + 1], "lrelu", lr_multiplier)
                                 for i in range(num_layers))
        self.register_buffer("w_avg", torch.zeros(max(c_dim, 1), w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        x = normalize_2nd_moment(z.float())
        if self.embed is not None:
            y = normalize_2nd_moment(self.embed(c.float())) * self.class_gain
            x = torch.cat([x, y], dim=1)
        for fc in self.fcs:
            x = fc(x)
        if truncation_psi != 1:
            centre = c.float() @ self.w_avg if self.c_dim > 0 else self.w_avg.expand_as(x)
            x = centre.lerp(x, truncation_psi)
        return x


class SynthesisInput(nn.Module):
    """The Fourier-feature input of StyleGAN3 Sec. 3.2 ("Fourier features"), as in
    NVlabs' ``SynthesisInput``: ``channels`` sinusoids with random frequencies
    drawn inside a disc of radius ``bandwidth`` and random phases; an affine of w
    gives a rotation (r_c, r_s) and translation (t_x, t_y) of the input, initialised
    to the identity; a trainable linear map mixes the channels."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.channels, self.size, self.sampling_rate, self.bandwidth = channels, size, sampling_rate, bandwidth
        freqs = torch.randn(channels, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnected(w_dim, 4, weight_init=0.0, bias_init=[1.0, 0.0, 0.0, 0.0])

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).repeat(n, 1, 1)  # inverse rotation of the image
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = torch.eye(3, device=w.device).repeat(n, 1, 1)  # inverse translation
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t
        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # Dampen frequencies the transform may push out of band (none for rotations).
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N,H,W,C]
        x = torch.sin((x + phases[:, None, None, :]) * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """One alias-free layer (StyleGAN3 Sec. 3.2, Fig. 4b), after NVlabs'
    ``SynthesisLayer``: modulated conv (demodulated, except the 1x1 ToRGB), then
    :func:`filtered_lrelu` at ``tmp_sampling_rate`` = 2 x max(in, out) rate, with
    up- and down-filters designed for the layer's cutoff and transition band."""

    def __init__(self, w_dim: int, is_torgb: bool, in_channels: int, out_channels: int, in_size: int, out_size: int,
                 in_sampling_rate: float, out_sampling_rate: float, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float, filter_size: int = 6, lrelu_upsampling: int = 2,
                 conv_clamp: float | None = 256, magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.is_torgb, self.in_channels, self.out_channels = is_torgb, in_channels, out_channels
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.conv_kernel = 1 if is_torgb else 3
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, self.conv_kernel, self.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        tmp_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.up_factor = int(round(tmp_rate / in_sampling_rate))
        self.down_factor = int(round(tmp_rate / out_sampling_rate))
        up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        # The filters follow from the layer's specification, so they are not saved.
        self.up_filter = design_lowpass_filter(up_taps, in_cutoff, in_half_width * 2, tmp_rate)
        self.down_filter = design_lowpass_filter(down_taps, out_cutoff, out_half_width * 2, tmp_rate)
        # Padding so the output has out_size samples, placed by the symmetric
        # interpretation of sample locations (StyleGAN3 Appendix C.3).
        pad_total = (out_size - 1) * self.down_factor + 1
        pad_total -= (in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = (pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo)
        mu = resample_matrix(in_size + self.conv_kernel - 1, self.up_filter, self.up_factor, 1, pad_lo,
                             pad_total - pad_lo, gain=self.up_factor)
        md = resample_matrix(mu.shape[0], self.down_filter, 1, self.down_factor)
        assert md.shape[0] == out_size, (md.shape, out_size)
        self.register_buffer("up_matrix", mu, persistent=False)
        self.register_buffer("down_matrix", md, persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
        if update_emas:
            with torch.no_grad():
                self.magnitude_ema.lerp_(x.detach().square().mean().to(self.magnitude_ema.dtype),
                                         1 - self.magnitude_ema_beta)
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel ** 2)
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.is_torgb,
                             padding=self.conv_kernel - 1, input_gain=self.magnitude_ema.rsqrt())
        gain, slope = (1.0, 1.0) if self.is_torgb else (math.sqrt(2), 0.2)
        return filtered_lrelu_matrices(x, self.up_matrix, self.down_matrix, self.bias, gain, slope,
                                       self.conv_clamp)


def layer_schedule(resolution: int, num_layers: int, num_critical: int = 2, first_cutoff: float = 2.0,
                   first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                   margin: int = 10) -> dict[str, np.ndarray]:
    """StyleGAN3 Sec. 3.2 ("Flexible layer specifications", Fig. 4c): cutoffs f_c
    and stopbands f_t grow geometrically from the first layer to the last
    ``num_critical`` layers (cutoff = resolution / 2, i.e. critically sampled);
    each layer's sampling rate is the smallest power of two >= 2 f_t (capped at
    the resolution); half-widths of the transition bands; canvas sizes with the
    margin, the last two at the output resolution."""
    last_cutoff = resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin * 2
    sizes[-2:] = resolution
    return {"cutoffs": cutoffs, "stopbands": stopbands, "rates": rates, "half_widths": half_widths,
            "sizes": sizes.astype(int)}


class SynthesisNetwork(nn.Module):
    """w -> image at ``resolution`` (a power of two): the Fourier input and
    ``num_layers`` alias-free layers plus ToRGB, after NVlabs'
    ``SynthesisNetwork``. Widths follow the paper's rule (inversely proportional
    to the cutoff, Sec. 3.2) from ``channels`` at the input down to
    ``channels // 4``; ``output_scale`` = 0.25 as in the official code."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channels: int, num_layers: int,
                 num_critical: int = 2, margin: int = 10, output_scale: float = 0.25):
        super().__init__()
        self.resolution, self.num_layers, self.output_scale = resolution, num_layers, output_scale
        self.num_ws = num_layers + 2
        s = layer_schedule(resolution, num_layers, num_critical, margin=margin)
        widths = np.clip(np.rint(channels * s["cutoffs"][0] / s["cutoffs"]), max(channels // 4, 1), channels)
        widths = widths.astype(int)
        widths[-1] = img_channels
        self.input = SynthesisInput(w_dim, int(widths[0]), int(s["sizes"][0]), float(s["rates"][0]),
                                    float(s["cutoffs"][0]))
        layers = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layers.append(SynthesisLayer(
                w_dim, is_torgb=idx == num_layers, in_channels=int(widths[prev]), out_channels=int(widths[idx]),
                in_size=int(s["sizes"][prev]), out_size=int(s["sizes"][idx]), in_sampling_rate=float(s["rates"][prev]),
                out_sampling_rate=float(s["rates"][idx]), in_cutoff=float(s["cutoffs"][prev]),
                out_cutoff=float(s["cutoffs"][idx]), in_half_width=float(s["half_widths"][prev]),
                out_half_width=float(s["half_widths"][idx])))
        self.layers = nn.ModuleList(layers)

    def forward(self, ws: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
        """``ws``: [N, num_ws, w_dim] (one w per layer, StyleGAN's W+)."""
        x = self.input(ws[:, 0])
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i + 1], update_emas=update_emas)
        return x * self.output_scale


class StyleGAN3Net(nn.Module):
    """Class-conditional G(z, c) -> float images in about [-1, 1] at ``image_shape``
    (C, H, W): mapping -> synthesis at the power-of-two canvas >= max(H, W), then an
    antialiased resize when the dataset's size differs (28x28 from a 32x32 canvas).
    ``c`` is one-hot [N, c_dim], as NVlabs' G takes it."""

    def __init__(self, image_shape: Sequence[int], c_dim: int, w_dim: int, channels: int, num_layers: int,
                 mapping_layers: int = 2, mapping_lr_multiplier: float = 0.01, class_gain: float = 1.0,
                 margin: int | None = None):
        super().__init__()
        ch, h, w = (int(v) for v in image_shape)
        self.image_shape, self.z_dim, self.c_dim, self.w_dim = (ch, h, w), w_dim, c_dim, w_dim
        self.canvas = 2 ** math.ceil(math.log2(max(h, w)))
        self.mapping = MappingNetwork(w_dim, c_dim, w_dim, mapping_layers, mapping_lr_multiplier, class_gain)
        margin = max(2, self.canvas // 8) if margin is None else margin
        self.synthesis = SynthesisNetwork(w_dim, self.canvas, ch, channels, num_layers, margin=margin)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0,
                update_emas: bool = False) -> torch.Tensor:
        w = self.mapping(z, c, truncation_psi)
        img = self.synthesis(w.unsqueeze(1).expand(-1, self.synthesis.num_ws, -1), update_emas=update_emas)
        return resize_images(img, self.image_shape[1:])


def resize_images(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with an antialiasing filter when shrinking (no aliasing,
    in the spirit of Sec. 3); a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


# --------------------------------------------------------------------------
# Discriminator.


def minibatch_std(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """StyleGAN2's minibatch standard deviation feature (ProGAN Sec. 3): the mean
    std over groups of samples, appended as one channel, so D sees diversity."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean([1, 2, 3])  # [N/g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2's residual D, small: FromRGB, blocks of two 3x3 convs with x2
    low-pass downsampling and a 1x1 skip (scaled by sqrt 1/2), down to 4x4 (or an
    odd size such as 7x7), then minibatch std, a conv and a dense layer to phi(x).

    Class-conditional by projection (Miyato & Koyama 2018, Eq. 3):
    D(x, y) = psi(phi(x)) + <embed(y), phi(x)> / sqrt(dim)."""

    def __init__(self, image_shape: Sequence[int], c_dim: int, channels: int):
        super().__init__()
        ch, h, w = (int(v) for v in image_shape)
        self.fromrgb = Conv2dLayer(ch, channels, 1)
        blocks, size = [], h
        while size > 4 and size % 2 == 0:
            blocks.append(nn.ModuleDict({
                "conv0": Conv2dLayer(channels, channels, 3),
                "conv1": Conv2dLayer(channels, channels, 3, down=2),
                "skip": Conv2dLayer(channels, channels, 1, activation="linear", down=2, bias=False),
            }))
            size //= 2
        self.blocks = nn.ModuleList(blocks)
        self.conv = Conv2dLayer(channels + 1, channels, 3)
        self.fc = FullyConnected(channels * size * size, channels, "lrelu")
        self.out = FullyConnected(channels, 1)
        self.embed = FullyConnected(c_dim, channels) if c_dim > 0 else None
        self.channels = channels

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.fromrgb(img)
        for b in self.blocks:
            x = (b["skip"](x) + b["conv1"](b["conv0"](x))) * math.sqrt(0.5)
        x = self.conv(minibatch_std(x))
        phi = self.fc(x.flatten(1))
        out = self.out(phi).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(c.to(phi.dtype)) * phi).sum(1) / math.sqrt(self.channels)
        return out
