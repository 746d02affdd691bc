"""Grad-CAM (Selvaraju et al. 2017) on a classifier's last conv block, for a fixed
set of real test images: Yamaguchi & Fukuda 2023 (arXiv 2311.13090), Fig. 4,
compares these attention maps between classifiers trained on real data and on
reconstructions (Sec. 4.2: ResNet-18's
``block4``; here ``feature_map``, which is block4 for the ResNets and the last
conv block for SmallCNN).

For image x, class c and feature map A (K channels): alpha_k = mean over
positions of d y_c / d A_k; the map is ReLU(sum_k alpha_k A_k), upsampled
bilinearly to the image size and scaled to [0, 1] per image (all zeros stays
zeros). The class is the image's true label, so maps of different classifiers
answer the same question ("where is the evidence for the right class?").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from synthbench.benchmark.analysis import rounded
from synthbench.benchmark.classifiers import to_input

LAYER = "block4"


def fixed_indices(labels: torch.Tensor, num_classes: int, per_class: int = 1) -> list[int]:
    """The first ``per_class`` test images of every class, in class order: the
    same images for every generator and seed, so their maps can be compared."""
    return [i for c in range(num_classes) for i in torch.nonzero(labels == c).flatten()[:per_class].tolist()]


def grad_cam(model: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor,
             device: torch.device) -> torch.Tensor:
    """Grad-CAM maps ``[N, H, W]`` in [0, 1] of uint8 ``images`` for ``classes``.

    The model is left in eval mode and its parameters' gradients untouched
    (gradients are taken with respect to the feature map only)."""
    model.eval()
    x = to_input(images.to(device))
    with torch.enable_grad():
        fmap = model.feature_map(x).detach().requires_grad_(True)
        logits = model.head(model.pooled(fmap))
        score = logits.gather(1, classes.to(device).long()[:, None]).sum()
        (grads,) = torch.autograd.grad(score, fmap)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * fmap.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)
    return (cam / peak[:, None, None]).cpu()


def gradcam_details(model: torch.nn.Module, test_images: torch.Tensor, test_labels: torch.Tensor,
                    num_classes: int, device: torch.device) -> dict:
    """Record-ready Grad-CAM of ``model`` on the fixed test images (one a class):
    indices into the test split, their labels, and the maps (3 decimals)."""
    idx = fixed_indices(test_labels, num_classes)
    maps = grad_cam(model, test_images[idx], test_labels[idx], device)
    return {"layer": LAYER, "test_indices": idx, "labels": test_labels[idx].tolist(),
            "maps": rounded(maps.numpy(), 3)}
