"""``replace``: train on synthetic data in place of the real train set.

The synthetic set has the real train split's size and exact class balance (the
pool's labels cycle through the real labels), the classifier is trained with the
preset's recipe and tested on the real test split. With the ``real`` generator
this is the oracle: the real train split itself (Yamaguchi & Fukuda 2023, arXiv 2311.13090, Table 2, t_re = 0;
Real-Fake (Yuan et al. 2024, arXiv 2310.10402) Table 1, "Real" row).

The record also keeps the classifier's Grad-CAM maps on a fixed set of real
test images (one a class; ``benchmark/gradcam.py``), Yamaguchi & Fukuda 2023 Fig. 4's
comparison of where real- and synthetic-trained classifiers look, and the first
two training images of every class (``samples``, ``sample_labels``) for the
leaderboard's sample grid."""

from __future__ import annotations

from typing import Any

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.gradcam import fixed_indices, gradcam_details
from synthbench.protocols.base import Protocol, ProtocolResult


class ReplaceProtocol(Protocol):
    name = "replace"
    version = 2
    description = "synthetic train set of the real size and class balance; test on real"
    source = (
              "Yamaguchi & Fukuda 2023, arXiv 2311.13090 Sec. 4.2; Yuan et al. 2024 (Real-Fake), arXiv 2310.10402 "
              "Sec. 4.2")
    metrics = {"top1": True, "worst_class_acc": True}

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        return n_train

    def run(self, ctx: CellContext) -> ProtocolResult:
        synth = ctx.synthetic(len(ctx.dataset.train))
        model = ctx.train(synth, desc=f"{ctx.generator.name}/replace seed {ctx.seed}")
        test = ctx.dataset.test
        cam = gradcam_details(model, test.images, test.labels, ctx.dataset.num_classes, ctx.device)
        shown = fixed_indices(synth.labels, ctx.dataset.num_classes, per_class=2)
        return self.accuracy_result(ctx.evaluate(model), {
            "train_size": len(synth), "gradcam": cam,
            "samples": synth.images[shown].tolist(), "sample_labels": synth.labels[shown].tolist()})
