"""Analyses shared by protocols: marginal output entropy (Yamaguchi & Fukuda 2023, arXiv 2311.13090, Eq. 4) and the
2-D PCA of a classifier's penultimate features (Yamaguchi & Fukuda 2023 Fig. 1b, 6). Their
outputs are plain lists, ready to go into a record for the leaderboard's plots."""

from __future__ import annotations

import numpy as np
import torch

from synthbench.benchmark.classifiers import to_input
from synthbench.benchmark.trainer import predict_logits

PCA_POINTS = 500
"""Points per set kept for a PCA scatter: enough to see the shape, small in a record."""


def output_entropy(model: torch.nn.Module, images: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """H(y) = -1/N sum_i sum_j p(y=j|x_i) log p(y=j|x_i) (Yamaguchi & Fukuda 2023 Eq. 4), in nats,
    and its standard error over the N images (the error of estimating it on a
    subset of them).

    Low entropy means the classifier finds the images easy, "typical" of their
    class: Yamaguchi & Fukuda 2023 Fig. 5 sees it fall as t_re grows (samples drift to modes)."""
    logp = predict_logits(model, images, device).log_softmax(1)
    per_image = -(logp.exp() * logp).sum(1).double()
    stderr = float(per_image.std() / len(per_image) ** 0.5) if len(per_image) > 1 else 0.0
    return float(per_image.mean()), stderr


@torch.no_grad()
def penultimate_features(model: torch.nn.Module, images: torch.Tensor, device: torch.device,
                         batch: int = 512) -> torch.Tensor:
    """The classifier's penultimate activations (ResNet: pooled block4)."""
    model.eval()
    out = [model.features(to_input(images[i:i + batch].to(device))).float().cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out)


def pca_2d(reference: torch.Tensor, *others: torch.Tensor) -> list[np.ndarray]:
    """Project ``reference`` and ``others`` on the first two principal axes of
    ``reference`` (the real images' features), so every set sits in one frame."""
    ref = reference.double().numpy()
    mean = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    axes = vt[:2].T
    # Fix the sign of each axis so the plot does not flip between runs.
    signs = np.sign(axes[np.abs(axes).argmax(0), range(2)])
    axes = axes * signs
    return [(x.double().numpy() - mean) @ axes for x in (reference, *others)]


def rounded(a: np.ndarray, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()
