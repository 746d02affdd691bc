"""``fidelity``: how close the generator's samples lie to the real data in a
feature space: FID, KID, precision/recall and density/coverage, overall and per
class (Yamaguchi & Fukuda 2023, arXiv 2311.13090, Sec. 4.1, Fig. 3b).

Compared sets: the real-train-sized synthetic set (``ctx.synthetic(len(train))``,
the same samples ``replace`` trains on) against the real train split. The
*floor* repeats every metric for the real TEST split against the real train
split (``floor_*``): what an ideal generator, one drawing fresh images from the
data distribution, would score at these sample sizes. FID and KID are biased
upwards for small sets and precision/recall depend on the set sizes through the
k-NN radii, so a synthetic score is read against its floor, never against 0 or 1
(the floor uses the test split's size, usually smaller than the train split's).

Metrics (all from feature vectors):

- FID (Heusel et al. 2017) and KID (Binkowski et al. 2018; mean over random
  subsets, its spread across subsets is kept in ``details``), lower is better;
- precision and recall (Kynkaanniemi et al. 2019, Sec. 3: the share of samples
  inside the union of the other set's k-NN balls), higher is better;
- density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity
  Metrics for Generative Models", Sec. 3, Eq. 5 and 6; k = 5 as recommended in
  their Sec. 4): density counts how many real k-NN balls hold each sample
  (robust to real outliers, can exceed 1), coverage is the share of real balls
  that hold at least one sample (robust to sample outliers). Written here with
  ``torch.cdist`` and checked against a brute-force computation in the tests.

FID, KID and precision/recall are computed by ``torch-fidelity`` (0.4):
``fid_features_to_statistics`` + ``fid_statistics_to_metric``,
``kid_features_to_metric`` and ``prc_features_to_metric`` on features this
module extracts itself, because the real features are cached on disk (once per
dataset digest, feature space and classifier) and reused for the floor and the
per-class metrics. The math is torch-fidelity's; nothing is re-implemented. The
same ``k`` is used for precision/recall (torch-fidelity's ``prc_neighborhood``)
and density/coverage: 5 by default, Naeem et al.'s choice for density/coverage.
Kynkäänniemi et al. 2019 (arXiv 1904.06991) and torch-fidelity's default use 3
for precision/recall, so compare these with published precision/recall figures
at ``--option k=3`` only.

Feature spaces:

(a) ``classifier`` (always): the penultimate features of the reference
    classifier (trained on the real train split with this cell's seed, the model
    Yamaguchi & Fukuda 2023 Sec. 4.2 treats as the ideal judge). It is wrapped as a
    torch-fidelity ``FeatureExtractorBase`` registered as
    ``"synthbench-classifier"``, so ``torch_fidelity.calculate_metrics(...,
    feature_extractor="synthbench-classifier", synthbench_classifier=model)``
    runs torch-fidelity's own pipeline offline in this space too (the tests
    check it agrees with this module). Naming the extractor matters: left to its
    defaults torch-fidelity computes precision/recall in VGG16's space, whose
    weights it downloads.
(b) ``inception`` (only when the weights are on disk): torch-fidelity's
    ``inception-v3-compat`` (the TF-FID network Yamaguchi & Fukuda 2023 and the literature
    use; greyscale images are repeated to three channels, the network resizes to
    299x299 itself). Its weights come from ``--option inception_weights=PATH``
    or from torch-fidelity's download cache (torch hub's ``checkpoints``
    folder) when a previous run put them there. Nothing is ever downloaded: the
    weights path is always handed to torch-fidelity explicitly. Without weights
    a one-line note is printed and only (a) is reported. Its metrics carry the
    prefix ``inception_``. torch-fidelity loads that file with
    ``torch.load(weights_only=False)``, so synthbench first checks that it loads
    as plain tensors under the restricted unpickler and refuses it otherwise.

``details["pca"]``: the first 500 real and synthetic images' penultimate
features on the real features' first two principal axes (Yamaguchi & Fukuda 2023 Fig. 1b, 6),
for the leaderboard's scatter.

Per class (``details["per_class"]``): precision, recall, density and coverage
for every class, comparing the samples labelled c with the real images of class
c (k shrinks to n - 1 for tiny classes); FID only where both sets hold more
images than the feature dimension, since below that the covariance is singular
and per-class FID is noise (``None`` otherwise). Synthetic labels are the
conditioning labels, or the reference classifier's pseudo-labels for an
unconditional generator.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from synthbench.benchmark.analysis import PCA_POINTS, pca_2d, penultimate_features, rounded
from synthbench.benchmark.cache import NPZ, DiskCache, file_digest, state_digest
from synthbench.benchmark.context import CellContext
from synthbench.benchmark.datasets import Split
from synthbench.benchmark.feature_metrics import (
    HIGHER_IS_BETTER, INCEPTION_FILE, KID_SUBSETS, METRIC_NAMES, classifier_features, feature_metrics,
    find_inception_weights, inception_features, per_class_metrics,
)
from synthbench.benchmark.options import Option
from synthbench.benchmark.progress import say
from synthbench.benchmark.seeding import derive_seed
from synthbench.benchmark.metrics import metric
from synthbench.protocols.base import Protocol, ProtocolResult


def _weights_file_ok(value: str) -> bool:
    return value == "" or Path(value).expanduser().is_file()


class FidelityProtocol(Protocol):
    name = "fidelity"
    version = 2
    description = ("FID, KID, precision/recall, density/coverage of the samples vs the real train split, "
                   "overall and per class, with the real-test floor")
    source = "Yamaguchi & Fukuda 2023, arXiv 2311.13090 Sec. 4.1, Fig. 3b; Kynkaanniemi et al. 2019; Naeem et al. 2020"
    metrics = {
        **HIGHER_IS_BETTER,
        **{f"floor_{m}": None for m in HIGHER_IS_BETTER},  # the real test split's score: context
        **{f"inception_{m}": hib for m, hib in HIGHER_IS_BETTER.items()},
        **{f"floor_inception_{m}": None for m in HIGHER_IS_BETTER},
    }
    headline = "fid"
    options = {
        "inception_weights": Option(
            "inception_weights", "", "Local file with torch-fidelity's Inception-v3 weights "
            f"({INCEPTION_FILE}); empty: use torch-fidelity's cache if it holds them, else skip Inception. "
            "Never downloaded.", str, check=_weights_file_ok,
            check_help="give an existing weights file (or leave it empty)"),
        "k": Option("k", 5, "Nearest neighbours for precision/recall and density/coverage (Naeem et al.: 5).",
                    int, check=lambda v: v >= 1, check_help="give an integer >= 1"),
    }

    def table_metrics(self) -> list[str]:
        return ["fid", "precision", "recall", "density", "coverage", "floor_fid"]

    def _real_features(self, ctx: CellContext, split_name: str, split: Split, space: str, identity: str,
                       extract: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The real split's features, cached once per (dataset digest, split,
        feature space, extractor identity) under ``cache_dir/features``."""
        def build(content: dict[str, np.ndarray]) -> torch.Tensor:
            feats = content["features"]
            if feats.ndim != 2 or feats.shape[0] != len(split):
                raise ValueError(f"expected {len(split)} feature rows, found shape {feats.shape}")
            return torch.from_numpy(feats)

        def compute() -> dict[str, np.ndarray]:
            with ctx.phase("features_s"):
                return {"features": extract(split.images).numpy().astype(np.float32)}

        return DiskCache(ctx.cache_dir).load_or_compute(
            "features", f"{ctx.dataset.name}-{split_name}-{space}", (ctx.dataset.digest, split_name, space, identity),
            NPZ, "features", compute, build)

    def _space(self, ctx: CellContext, space: str, identity: str, extract: Callable[[torch.Tensor], torch.Tensor],
               synth: Split, prefix: str, metrics: dict, details: dict) -> None:
        train, test = ctx.dataset.train, ctx.dataset.test
        k = self.opts["k"]
        kid_seed = derive_seed("fidelity-kid", ctx.seed)
        real = self._real_features(ctx, "train", train, space, identity, extract)
        floor_feats = self._real_features(ctx, "test", test, space, identity, extract)
        with ctx.phase("features_s"):
            fake = extract(synth.images)
        with ctx.phase("metrics_s"):
            main = feature_metrics(real, fake, k, kid_seed)
            floor = feature_metrics(real, floor_feats, k, kid_seed)
            per_class = per_class_metrics(real, train.labels, fake, synth.labels, ctx.dataset.num_classes, k,
                                          kid_seed)
            floor_per_class = per_class_metrics(real, train.labels, floor_feats, test.labels,
                                                ctx.dataset.num_classes, k, kid_seed)
        for tag, values, n_fake in (("", main, len(fake)), ("floor_", floor, len(floor_feats))):
            for name in METRIC_NAMES:
                value = values[name]
                if value is None:
                    continue
                hib = HIGHER_IS_BETTER[name]
                # Binomial stderr for the shares (precision over the samples,
                # recall and coverage over the real images); none for the rest.
                stderr = None
                if name == "precision":
                    stderr = math.sqrt(max(value * (1 - value), 0.0) / n_fake)
                elif name in ("recall", "coverage"):
                    stderr = math.sqrt(max(value * (1 - value), 0.0) / len(real))
                metrics[f"{tag}{prefix}{name}"] = metric(value, stderr, n_fake if name != "recall" else len(real),
                                                         hib)
        details[space] = {
            "kid_std": main["kid_std"], "floor_kid_std": floor["kid_std"], "k": main["k"],
            "feature_dim": int(real.shape[1]), "identity": identity[:16],
            "per_class": per_class, "floor_per_class": floor_per_class,
        }

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        return n_train

    def run(self, ctx: CellContext) -> ProtocolResult:
        train = ctx.dataset.train
        synth = ctx.synthetic(len(train))
        reference = ctx.reference_classifier()
        metrics: dict[str, Any] = {}
        details: dict[str, Any] = {"n_real": len(train), "n_synthetic": len(synth), "n_floor": len(ctx.dataset.test),
                                   "k": self.opts["k"], "kid_subsets": KID_SUBSETS}
        self._space(ctx, "classifier", state_digest(reference),
                    lambda x: classifier_features(reference, x, ctx.device), synth, "", metrics, details)
        spaces = ["classifier"]
        weights = find_inception_weights(self.opts["inception_weights"])
        if weights is None:
            say("fidelity: no Inception-v3 weights on disk (--option inception_weights=PATH, or torch-fidelity's "
                "cache); reporting the reference classifier's feature space only.")
        else:
            self._space(ctx, "inception", file_digest(weights),
                        lambda x: inception_features(x, weights, ctx.device), synth, "inception_", metrics, details)
            spaces.append("inception")
        details["feature_spaces"] = spaces
        # The scatter of Yamaguchi & Fukuda 2023 Fig. 1b/6 for any generator: real and synthetic
        # penultimate features on the real features' first two principal axes.
        n = min(PCA_POINTS, len(train), len(synth))
        real_xy, synth_xy = pca_2d(penultimate_features(reference, train.images[:n], ctx.device),
                                   penultimate_features(reference, synth.images[:n], ctx.device))
        details["pca"] = {"real": rounded(real_xy), "real_labels": train.labels[:n].tolist(),
                          "synthetic": rounded(synth_xy), "synthetic_labels": synth.labels[:n].tolist()}
        return ProtocolResult(metrics, details)
