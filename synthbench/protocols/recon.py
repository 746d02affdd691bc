"""``recon``: the t_re sweep of real sample reconstruction (Yamaguchi & Fukuda 2023, arXiv 2311.13090, Sec. 3.2, 4).

For each reverse step t_re (default 0, 30, 50, 70, 100 of T = 100), every real
train image is reconstructed (Algorithm 1: diffused to t_re, restored by the
reverse process), and:

- a classifier is trained on the reconstructed train split and tested on the
  real test split (Table 2: accuracy falls as t_re grows);
- the marginal output entropy (Eq. 4) of the reconstructions of train and of
  test images is measured under the reference classifier trained on real data
  (Fig. 5: entropy falls, samples become "typical"). Test images are held
  out: they are reconstructed by a separate instance of the generator, fitted
  from the same cached weights and discarded with the cell
  (``CellContext.held_out_generator``), so the instance that samples never
  receives one; a third-party adapter gets the train side only (its records
  carry no ``entropy_test_t*`` and say why in ``details``). The test side uses a
  class-stratified, seeded subset of the test split (option ``test_images``:
  1,000 at smoke/fast, all at paper): Eq. 4 is a mean over images, which 1,000
  estimate to about 0.01 nats, while reconstructing fashion-mnist's 10,000 test
  images at every t_re costs about 4 CPU hours. An image's reconstruction
  noise is seeded by its index in the full split, so it does not depend on
  which subset it falls in;
- the reference classifier's penultimate features of real and reconstructed
  images are projected on the real features' first two principal axes
  (Fig. 1b, 6), kept in ``details`` for the leaderboard's plots;
- FID, precision and recall (and KID, density, coverage) of the reconstructed
  train split against the real train split (Fig. 3b), in the reference
  classifier's feature space (``benchmark/feature_metrics.py``; Yamaguchi & Fukuda 2023 uses
  Inception, whose weights need not be present here). At t_re = 0 the two sets
  are the same images: FID 0, precision and recall 1, the start of the curve;
- Grad-CAM maps of each t_re's classifier on a fixed set of real test images
  (Fig. 4; ``benchmark/gradcam.py``).

Reconstructions are computed once per (fitted generator, t_re, images) with the
noise seeded per image index (option ``recon_seed``), cached, and shared by the
run seeds, which then vary the classifiers only: reconstructing 1,438 digits at
t_re = 100 costs 199 network evaluations an image. t_re = 0 is the real split,
so its classifier is the reference classifier itself.

A generator that cannot reconstruct gets an ``unsupported`` record.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from synthbench.benchmark.analysis import PCA_POINTS, output_entropy, pca_2d, penultimate_features, rounded
from synthbench.benchmark.cache import NPZ, DiskCache
from synthbench.benchmark.context import CellContext
from synthbench.benchmark.datasets import Split, stratified_split
from synthbench.benchmark.feature_metrics import classifier_features, feature_metrics
from synthbench.benchmark.gradcam import gradcam_details
from synthbench.benchmark.options import Option, by_preset, parse_int_list
from synthbench.benchmark.seeding import derive_seed
from synthbench.benchmark.metrics import metric
from synthbench.errors import Unsupported
from synthbench.protocols.base import Protocol, ProtocolResult


def _valid_steps(v: tuple[int, ...]) -> bool:
    return all(0 <= t <= 100 for t in v) and len(set(v)) == len(v)


def _count_or_all(text: str) -> int:
    """``"1000"`` -> 1000; ``"all"`` -> 0 (every image)."""
    return 0 if str(text).strip().lower() == "all" else int(text)


FAST_TEST_IMAGES = 1000
"""Test images for the Eq. 4 entropy at smoke and fast (all at paper)."""


class ReconProtocol(Protocol):
    name = "recon"
    version = 3
    """v3: the test-side entropy uses ``test_images`` (1,000 at smoke/fast) instead
    of every test image, and entropies carry their standard error over images.
    Test splits at or under that size (digits: 359) give v2's numbers, to the
    float rounding of taking the mean in float64 (1e-7)."""
    description = "real-sample reconstruction sweep over t_re: accuracy, output entropy, FID, precision/recall, PCA"
    source = "Yamaguchi & Fukuda 2023, arXiv 2311.13090 Sec. 3.2, 4.1, 4.2; Table 2, Fig. 1b, 3b, 4, 5, 6"
    metrics = {"top1_t{t}": True, "entropy_train_t{t}": None, "entropy_test_t{t}": None,
               "fid_t{t}": False, "precision_t{t}": True, "recall_t{t}": True}
    headline = "top1_t{t}"
    options = {
        "t_re": Option("t_re", (0, 30, 50, 70, 100), "Comma-separated reverse steps of T = 100.",
                       parse_int_list, check=_valid_steps, check_help="give distinct integers in 0..100"),
        "recon_seed": Option("recon_seed", 0, "Seed of the reconstruction noise (shared by run seeds).", int),
        "test_images": Option("test_images", None, "Test images reconstructed for the Eq. 4 entropy, a "
                              "class-stratified seeded subset; 'all' for every one. Default "
                              f"{FAST_TEST_IMAGES:,} at smoke/fast, all at paper.", _count_or_all,
                              check=lambda v: v is None or v >= 0,
                              check_help="give a count of images, or 'all' (0 also means all)",
                              per_preset=by_preset(smoke=FAST_TEST_IMAGES, fast=FAST_TEST_IMAGES, paper=0)),
    }

    def _steps(self) -> list[int]:
        return sorted(self.opts["t_re"])

    def table_metrics(self) -> list[str]:
        return [f"top1_t{t}" for t in self._steps()]

    def unsupported_reason(self, generator) -> str | None:
        if getattr(generator, "can_reconstruct", False):
            return None
        return (f"generator {generator.name!r} cannot reconstruct real samples "
                f"(Yamaguchi & Fukuda 2023 Algorithm 1); recon needs one that can, e.g. edm.")

    def _entropy_test_index(self, ctx: CellContext) -> torch.Tensor | None:
        """Indices of the test images whose reconstructions enter the test entropy;
        None for all of them."""
        want = self.setting("test_images", ctx.preset)
        test = ctx.dataset.test
        if want == 0 or want >= len(test):
            return None
        _, idx = stratified_split(test.labels.numpy(), want / len(test),
                                  derive_seed("recon-test-subset", self.opts["recon_seed"]))
        return torch.from_numpy(np.sort(idx))

    def _reconstruct(self, ctx: CellContext, split: Split, t_re: int, tag: str, index: torch.Tensor | None = None,
                     reconstructor: Callable[[], Any] | None = None) -> torch.Tensor:
        """Reconstructions of ``split`` (of ``split.subset(index)`` if given; the
        noise is seeded by each image's index in the full split), by the cell's
        generator or, on a cache miss, by the instance ``reconstructor()`` returns."""
        gen = ctx.generator
        positions = list(range(len(split))) if index is None else index.tolist()
        if index is not None:
            split = split.subset(index)
        if t_re == 0:
            return split.images
        seeds = [derive_seed("recon", self.opts["recon_seed"], tag, i) for i in positions]

        def compute() -> dict[str, np.ndarray]:
            with ctx.phase("reconstruct_s"):
                worker = gen if reconstructor is None else reconstructor()
                return {"images": worker.reconstruct(split.images, split.labels, t_re, seeds).numpy()}

        identity = (gen.fingerprint(), t_re, self.opts["recon_seed"], split.images,
                    np.asarray(positions, dtype=np.int64))
        return DiskCache(ctx.cache_dir).load_or_compute("recon", f"{gen.name}-{tag}-t{t_re}", identity, NPZ,
                                                        "reconstructions", compute,
                                                        lambda z: torch.from_numpy(z["images"]))

    def run(self, ctx: CellContext) -> ProtocolResult:
        gen = ctx.generator
        reason = self.unsupported_reason(gen)
        if reason is not None:
            raise Unsupported(reason)
        train, test = ctx.dataset.train, ctx.dataset.test
        reference = ctx.reference_classifier()
        pca_idx = torch.arange(min(PCA_POINTS, len(train)))
        real_feats = penultimate_features(reference, train.images[pca_idx], ctx.device)
        all_real_feats = classifier_features(reference, train.images, ctx.device)
        metrics: dict = {}
        curves: dict[str, list] = {key: [] for key in ("t_re", "top1", "entropy_train", "entropy_test", "fid", "kid",
                                                       "precision", "recall", "density", "coverage")}
        per_class, pca, gradcam = {}, {}, {}
        test_index = self._entropy_test_index(ctx)
        n_entropy_test = len(test) if test_index is None else len(test_index)
        held_out: list[Any] = []  # the test side's own instance, fitted on the first cache miss

        def test_reconstructor() -> Any:
            if not held_out:
                held_out.append(ctx.held_out_generator())
            return held_out[0]

        measure_test = getattr(gen, "trusted", False)
        if not measure_test:
            n_entropy_test = 0
        for t in self._steps():
            rec_train = self._reconstruct(ctx, train, t, "train")
            model = reference if t == 0 else ctx.train(
                Split(rec_train, train.labels), desc=f"{gen.name}/recon t_re={t} seed {ctx.seed}")
            ev = ctx.evaluate(model)
            h_train, se_train = output_entropy(reference, rec_train, ctx.device)
            metrics[f"top1_t{t}"] = ev.metric()
            metrics[f"entropy_train_t{t}"] = metric(h_train, se_train, len(train), True)
            h_test = None
            if measure_test:
                rec_test = self._reconstruct(ctx, test, t, "test", test_index, test_reconstructor)
                h_test, se_test = output_entropy(reference, rec_test, ctx.device)
                metrics[f"entropy_test_t{t}"] = metric(h_test, se_test, n_entropy_test, True)
            with ctx.phase("metrics_s"):
                fm = feature_metrics(all_real_feats, classifier_features(reference, rec_train, ctx.device),
                                     kid_seed=derive_seed("recon-kid", ctx.seed))
            for name in ("fid", "precision", "recall"):
                metrics[f"{name}_t{t}"] = metric(fm[name], None, len(train), name != "fid")
            for key, value in (("t_re", t), ("top1", ev.top1), ("entropy_train", h_train), ("entropy_test", h_test),
                               *((name, fm[name]) for name in ("fid", "kid", "precision", "recall", "density",
                                                               "coverage"))):
                curves[key].append(value)
            per_class[f"t{t}"] = ev.per_class
            gradcam[f"t{t}"] = gradcam_details(model, test.images, test.labels, ctx.dataset.num_classes, ctx.device)
            _, rec_xy = pca_2d(real_feats, penultimate_features(reference, rec_train[pca_idx], ctx.device))
            pca[f"t{t}"] = rounded(rec_xy)
        real_xy = pca_2d(real_feats)[0]
        return ProtocolResult(metrics, {
            "curve": curves, "per_class_accuracy": per_class,
            "pca": {"real": rounded(real_xy), "labels": train.labels[pca_idx].tolist(), "reconstructed": pca},
            "gradcam": gradcam, "feature_space": "classifier",
            "recon_seed": self.opts["recon_seed"], "T": 100, "entropy_test_images": n_entropy_test,
            **({} if measure_test else {"entropy_test": "not measured: held-out test images are handed only to "
                                                        "built-in adapters"}),
        })
