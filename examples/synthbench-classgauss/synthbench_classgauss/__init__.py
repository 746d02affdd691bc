"""``classgauss``: each class as a Gaussian over its top principal components.

An example of a third-party synthbench adapter (registered through the
``synthbench.generators`` entry point in this package's pyproject.toml). It is
also an honest weak baseline: blurry, class-typical images with none of a deep
generator's detail, so the leaderboard shows how far "the class mean plus
correlated noise" gets a classifier.

fit: per class c, the mean mu_c and the top ``components`` principal axes V_c
with their variances s_c of the class's train images (pixels scaled to [0, 1]).
sample: x = mu_c + V_c (sqrt(s_c) * z) with z ~ N(0, I) drawn from the image's
own seed (so an image never depends on its batch), clipped to [0, 1] and
rounded to uint8.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from synthbench.api import FitContext, Generator, Option

__all__ = ["ClassGaussianGenerator"]


class ClassGaussianGenerator(Generator):
    name = "classgauss"
    version = 1
    needs = "nothing (fits in a second on a CPU)"
    description = "example plugin: a class-conditional Gaussian over each class's top principal components"
    options = {
        "components": Option.positive_int("components", "Principal components kept per class.", default=16),
        "temperature": Option("temperature", 1.0, "Scale of the sampled deviations (1 = the data's).", float,
                              check=lambda v: v >= 0, check_help="must be >= 0"),
    }

    def fit(self, ctx: FitContext) -> dict[str, Any]:
        """Per-class means and principal axes; returns the fit's identity (what,
        beyond name, version and options, determines the samples)."""
        self.image_shape = ctx.image_shape
        x = ctx.train.images.flatten(1).double() / 255.0
        self.means, self.axes, self.scales = [], [], []
        for c in range(len(ctx.class_names)):
            xc = x[ctx.train.labels == c]
            mu = xc.mean(0)
            k = max(1, min(self.opts["components"], len(xc) - 1))
            _, s, vt = torch.linalg.svd(xc - mu, full_matrices=False)
            self.means.append(mu)
            self.axes.append(vt[:k].T)                                   # [D, k]
            self.scales.append(s[:k] / max(1, len(xc) - 1) ** 0.5)       # std along each axis
        return {"dataset_digest": ctx.dataset_digest}

    def sample(self, labels: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        out = []
        for label, seed in zip(torch.as_tensor(labels).tolist(), seeds):
            g = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
            axes, scales = self.axes[label], self.scales[label]
            z = torch.randn(len(scales), generator=g, dtype=torch.float64)
            x = self.means[label] + axes @ (self.opts["temperature"] * scales * z)
            out.append((x.clamp(0, 1) * 255).round().to(torch.uint8).reshape(self.image_shape))
        if not out:
            return torch.zeros((0, *self.image_shape), dtype=torch.uint8)
        return torch.stack(out)
