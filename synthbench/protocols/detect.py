"""``detect``: can a classifier tell the generator's samples from real images?
(Yamaguchi & Fukuda 2023, arXiv 2311.13090, Sec. 4.1, Table 1, after Frank et al. 2020, "Leveraging Frequency
Analysis for Deep Fake Image Recognition".)

A binary real-vs-synthetic classifier is trained on a balanced set and tested
on a held-out 20% of it, twice:

- in the pixel domain (the images as the benchmark's classifiers see them);
- in the DCT domain: the log-scaled magnitudes of each channel's 2-D DCT-II
  (``scipy.fft.dctn(norm="ortho")``, ``log(|c| + 1e-12)``), standardised with
  the training part's per-coefficient mean and standard deviation (Frank et al.
  Sec. 3, 4: generators' upsampling leaves grid artefacts that are plain in the
  spectrum even when the pixels look right; Yamaguchi & Fukuda 2023 Table 1 finds StyleGAN3
  caught in pixels, 89.6%, but EDM samples near chance in both domains).

Accuracy near 0.5 means indistinguishable, so lower is "better" for the
generator (``higher_is_better=False``); stderr is binomial over the test images.

Real images are the real train split, synthetic ones ``ctx.synthetic(n)`` of the
same size and class balance. For the ``real`` oracle the two sides are two
disjoint random halves of the real train split, which gives the chance level
(about 0.5) the other rows are read against. The split is drawn from the run
seed; the classifier is the preset's, trained by the shared trainer with the
preset's recipe for ``max(3, preset.epochs // 3)`` epochs and no augmentation
(crops and flips would blur exactly the high-frequency traces being looked
for), its initialisation and batches seeded from the run seed.
"""

from __future__ import annotations

from typing import Any

import math

import numpy as np
import scipy.fft
import torch

from synthbench.benchmark.classifiers import to_input
from synthbench.benchmark.context import CellContext
from synthbench.benchmark.presets import Preset
from synthbench.benchmark.seeding import derive_seed, numpy_rng
from synthbench.benchmark.metrics import Target, metric
from synthbench.benchmark.trainer import predict_logits, train_classifier
from synthbench.protocols.base import Protocol, ProtocolResult

TEST_FRACTION = 0.2


def dct_log_spectrum(images: torch.Tensor) -> torch.Tensor:
    """log(|DCT-II(x)| + 1e-12) per channel of uint8 ``[N, C, H, W]`` images
    (orthonormal 2-D DCT over the last two axes, on raw pixel values)."""
    x = images.numpy().astype(np.float64)
    c = scipy.fft.dctn(x, type=2, axes=(-2, -1), norm="ortho")
    return torch.from_numpy(np.log(np.abs(c) + 1e-12).astype(np.float32))


def balanced_split(n_real: int, n_fake: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal numbers of real and fake indices (the smaller side's count), each
    side cut into train (80%) and test (20%): ``real_train, real_test,
    fake_train, fake_test``."""
    n = min(n_real, n_fake)
    n_test = max(1, round(TEST_FRACTION * n))
    out = []
    for side, total in (("real", n_real), ("fake", n_fake)):
        idx = numpy_rng("detect-split", seed, side).permutation(total)[:n]
        out += [idx[n_test:], idx[:n_test]]
    return out[0], out[1], out[2], out[3]


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    return float((predict_logits(model, x, device).argmax(1) == y).double().mean())


def detect_accuracy(real: torch.Tensor, fake: torch.Tensor, preset: Preset, seed: int, device: torch.device,
                    epochs: int | None = None) -> dict[str, float | int]:
    """Held-out real-vs-fake accuracy in the pixel and the DCT domain for uint8
    image sets ``real`` and ``fake`` (same shape per image)."""
    epochs = max(3, preset.epochs // 3) if epochs is None else epochs
    r_tr, r_te, f_tr, f_te = balanced_split(len(real), len(fake), seed)
    imgs_tr = torch.cat([real[torch.from_numpy(r_tr)], fake[torch.from_numpy(f_tr)]])
    imgs_te = torch.cat([real[torch.from_numpy(r_te)], fake[torch.from_numpy(f_te)]])
    y_tr = torch.cat([torch.zeros(len(r_tr), dtype=torch.long), torch.ones(len(f_tr), dtype=torch.long)])
    y_te = torch.cat([torch.zeros(len(r_te), dtype=torch.long), torch.ones(len(f_te), dtype=torch.long)])
    out: dict[str, float | int] = {"n_train": len(y_tr), "n_test": len(y_te), "epochs": epochs}

    def fit(x: torch.Tensor, domain: str) -> torch.nn.Module:
        return train_classifier(x, y_tr, 2, preset, derive_seed("detect", seed, domain) & 0xFFFF_FFFF, device,
                                hflip=False, desc=f"detect ({domain})", epochs=epochs, augment=False)

    out["pixel_acc"] = _accuracy(fit(to_input(imgs_tr), "pixel"), to_input(imgs_te), y_te, device)

    spec_tr, spec_te = dct_log_spectrum(imgs_tr), dct_log_spectrum(imgs_te)
    mean, std = spec_tr.mean(0, keepdim=True), spec_tr.std(0, keepdim=True).clamp_min(1e-6)
    out["dct_acc"] = _accuracy(fit((spec_tr - mean) / std, "dct"), (spec_te - mean) / std, y_te, device)
    return out


class DetectProtocol(Protocol):
    name = "detect"
    version = 2  # v2: trained by the shared trainer with the preset's recipe
    description = "real-vs-synthetic classifier accuracy in the pixel and DCT domains (0.5 = indistinguishable)"
    source = "Yamaguchi & Fukuda 2023, arXiv 2311.13090 Sec. 4.1, Table 1; Frank et al. 2020"
    uses_reference_classifier = False
    metrics = {"pixel_acc": Target(0.5), "dct_acc": Target(0.5)}
    headline = "pixel_acc"

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        return n_train

    def run(self, ctx: CellContext) -> ProtocolResult:
        train = ctx.dataset.train
        if ctx.generator.oracle:
            perm = torch.from_numpy(numpy_rng("detect-halves", ctx.seed).permutation(len(train)))
            half = len(train) // 2
            real, fake = train.images[perm[:half]], train.images[perm[half:2 * half]]
            pairing = "two disjoint random halves of the real train split"
        else:
            real, fake = train.images, ctx.synthetic(len(train)).images
            pairing = "real train split vs synthetic samples of its size and class balance"
        with ctx.phase("train_s"):
            res = detect_accuracy(real, fake, ctx.preset, ctx.seed, ctx.device)
        n = int(res["n_test"])
        metrics = {name: metric(res[name], math.sqrt(max(res[name] * (1 - res[name]), 0.0) / n), n, False)
                   for name in ("pixel_acc", "dct_acc")}
        details = {"n_train": res["n_train"], "n_test": n, "epochs": res["epochs"], "pairing": pairing,
                   "test_fraction": TEST_FRACTION}
        return ProtocolResult(metrics, details)
