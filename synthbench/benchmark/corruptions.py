"""A deterministic corruption suite computed from the test split, for the ``ood``
protocol. Real-Fake (Yuan et al. 2024, arXiv 2310.10402, Sec. 4.4 / Table 4)
measures OOD generalisation on shifted ImageNet test sets; at the scale we can
run, shifts are computed in the style of Hendrycks & Dietterich 2019
("CIFAR-10-C").

Eight corruption types at five severities each. Noise is drawn from generators
seeded by (type, severity), so the shifted test sets are the same bytes on every
machine. Blur and pixelation scale with the image size (severity constants are
CIFAR-C's for 32x32 images, floored so 8x8 digits still change).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from synthbench.benchmark.seeding import derive_seed, torch_generator

SEVERITIES = (1, 2, 3, 4, 5)


def _to01(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8)


def gaussian_noise(x, s, g):
    c = (0.08, 0.12, 0.18, 0.26, 0.38)[s - 1]
    return _to_uint8(_to01(x) + c * torch.randn(x.shape, generator=g))


def shot_noise(x, s, g):
    c = (60, 25, 12, 5, 3)[s - 1]
    return _to_uint8(torch.poisson(_to01(x) * c, generator=g) / c)


def impulse_noise(x, s, g):
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[s - 1]
    u = torch.rand(x.shape, generator=g)
    out = x.clone()
    out[u < amount / 2] = 0
    out[(u >= amount / 2) & (u < amount)] = 255
    return out


def gaussian_blur(x, s, g):
    sigma = max(0.5, (0.4, 0.6, 0.7, 0.8, 1.0)[s - 1] * x.shape[-1] / 32) * (1 + 0.25 * (s - 1))
    radius = max(1, int(np.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = _to01(x)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return _to_uint8(y)


def contrast(x, s, g):
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[s - 1]
    y = _to01(x)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    return _to_uint8((y - mean) * c + mean)


def brightness(x, s, g):
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1]
    return _to_uint8(_to01(x) + c)


def jpeg(x, s, g):
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[s - 1]
    out = []
    for img in x.numpy():
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        out.append(dec[None] if dec.ndim == 2 else dec.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def pixelate(x, s, g):
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[s - 1]
    h, w = x.shape[-2:]
    small = F.interpolate(_to01(x), size=(max(2, round(h * c)), max(2, round(w * c))), mode="area")
    return _to_uint8(F.interpolate(small, size=(h, w), mode="nearest"))


CORRUPTIONS = {f.__name__: f for f in (gaussian_noise, shot_noise, impulse_noise, gaussian_blur, contrast, brightness,
                                        jpeg, pixelate)}


def corrupt(images: torch.Tensor, kind: str, severity: int) -> torch.Tensor:
    """``images`` (uint8 [N, C, H, W]) under corruption ``kind`` at ``severity`` 1..5."""
    g = torch_generator(derive_seed("corruption", kind, severity))
    return CORRUPTIONS[kind](images, severity, g)
