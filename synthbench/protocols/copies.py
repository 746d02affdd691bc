"""``copies``: does the generator hand back real images? A nearest-neighbour
copy check of its samples against the real train split (memorisation) and the
real test split (contamination), in pixel space and in the reference
classifier's feature space.

Why a protocol of its own: every accuracy protocol tests on the real test split,
so a synthetic set that holds test images, or near copies of them, scores what
was copied, not what was generated. A released synthetic set, a model
pretrained on web-scale data that may have seen a public test set, or a
pipeline that filtered its samples against the test split can all carry test
images. ``mia`` runs the same check but fits the generator on a member half,
so it cannot run for pre-generated samples (``samples:PATH``) or a pretrained
model used as it is (``sd``); ``copies`` refits nothing and runs for every
generator, at the cost of its pool's nearest-neighbour search (seconds at
``fast`` on a CPU; on CIFAR-10's 50,000 train images an estimated 17 minutes
of one CPU core in pixel space, 2.5e13 float64 operations at the 25 GFLOP/s
``torch.cdist`` reached on one core of a 2-core AMD EPYC, which is why it runs
on the cell's device).

For the seed's train-sized pool S (the samples ``replace`` trains on, drawn
from the same cache), the train split R and the test split T, with the rule of
``benchmark/nearest.py``:

- ``copy_fraction_{space}`` (memorisation): the share of S nearer its nearest
  train image than the ``copy_quantile`` (1%) quantile of the test images'
  nearest-train distances. Test images are real images no generator fitted on
  R has seen, so fresh samples score about ``copy_quantile`` and a generator
  that returns its training images scores 1. (``mia``'s ``copy_fraction`` is
  this rule for a generator fitted on half of R; Carlini et al. 2023, "Extracting
  Training Data from Diffusion Models", arXiv 2301.13188, measure memorisation
  as nearness to a training image in the same spirit.)
- ``test_copy_fraction_{space}`` (contamination): the share of S nearer its
  nearest test image than the ``copy_quantile`` quantile of the train images'
  nearest-test distances. Train images are real images that are not test
  images, so fresh samples score about ``copy_quantile``, and so does a
  memoriser of R; a set made of test images scores 1.

Spaces: ``pixel`` (uint8 values / 255, flattened: exact and near-exact copies)
and ``feature`` (the reference classifier's penultimate features: copies that
pixels miss, e.g. re-encoded or slightly shifted ones). The board flags a
generator, in every table, when the mean over seeds of its larger fraction of
the two spaces reaches 0.5 for memorisation or 0.1 for contamination
(``leaderboard/aggregate.py`` says why).

The ``real`` oracle's samples are the train images themselves: its
``copy_fraction`` is 1 by construction (a flag is never raised on it) and its
``test_copy_fraction`` is ``copy_quantile`` to within one image, by
construction too (its samples are the images the threshold is taken from;
digits at ``fast``: 15 of 1,438, 0.0104).

``details``: the thresholds and median distances, the number of samples that
are a train or a test image bit for bit, and the closest
synthetic/train (``closest_pairs``) and synthetic/test (``closest_test_pairs``)
pairs in pixel space, for the leaderboard.
"""

from __future__ import annotations

from typing import Any

from synthbench.benchmark.analysis import penultimate_features
from synthbench.benchmark.context import CellContext
from synthbench.benchmark.metrics import metric
from synthbench.benchmark.nearest import copy_check
from synthbench.benchmark.options import Option
from synthbench.protocols.base import Protocol, ProtocolResult

CLOSEST_PAIRS = 8
SPACES = ("pixel", "feature")


class CopiesProtocol(Protocol):
    name = "copies"
    version = 1
    description = ("nearest-neighbour copy check of the samples against the train split (memorisation) and the "
                   "test split (contamination), for every generator, pre-generated samples included")
    source = ("after Yuan et al. 2024 (Real-Fake), arXiv 2310.10402 Sec. 4.5, Fig. 4: nearest real images of the "
              "samples (SSCD features there; pixels and the reference classifier's features here)")
    metrics = {f"{kind}_{space}": False for kind in ("test_copy_fraction", "copy_fraction") for space in SPACES}
    headline = "test_copy_fraction_pixel"
    options = {
        "copy_quantile": Option("copy_quantile", 0.01, "Quantile of real images' nearest distances that defines "
                                "'markedly close'.", float, check=lambda v: 0 < v < 0.5,
                                check_help="must be in (0, 0.5)"),
    }

    def sample_pool_size(self, n_train: int, preset: Any) -> int:
        return n_train

    def run(self, ctx: CellContext) -> ProtocolResult:
        train, test = ctx.dataset.train, ctx.dataset.test
        synth = ctx.synthetic(len(train))
        q = self.opts["copy_quantile"]
        reference = ctx.reference_classifier()
        embed = {  # searched on the cell's device: CIFAR-10's 50,000 x 50,000 pixel pairs are minutes on a CPU core
            "pixel": lambda x: x.flatten(1).to(ctx.device).double() / 255.0,
            "feature": lambda x: penultimate_features(reference, x, ctx.device).to(ctx.device).double(),
        }
        metrics: dict[str, Any] = {}
        details: dict[str, Any] = {"copy_quantile": q, "n_synthetic": len(synth), "n_train": len(train),
                                   "n_test": len(test), "nearest": {}}
        for space in SPACES:
            with ctx.phase("nearest_s"):
                s, r, t = (embed[space](x.images) for x in (synth, train, test))
                memorised = copy_check(s, r, t, q)  # unseen: the test images
                on_test = copy_check(s, t, r, q)  # unseen: the train images, which are not test images
            metrics[f"copy_fraction_{space}"] = metric(memorised.fraction, None, len(synth), False)
            metrics[f"test_copy_fraction_{space}"] = metric(on_test.fraction, None, len(synth), False)
            details["nearest"][space] = {
                "threshold": memorised.threshold, "test_threshold": on_test.threshold,
                "synthetic_to_train_median": float(memorised.distances.median()),
                "test_to_train_median": float(memorised.unseen_distances.median()),
                "synthetic_to_test_median": float(on_test.distances.median()),
                "train_to_test_median": float(on_test.unseen_distances.median()),
            }
            if space == "pixel":
                details["exact_train_copies"] = memorised.exact_copies(synth.images, train.images)
                details["exact_test_copies"] = on_test.exact_copies(synth.images, test.images)
                details["closest_pairs"] = memorised.closest_pairs(synth.images, train.images, synth.labels,
                                                                   CLOSEST_PAIRS, "member")
                details["closest_test_pairs"] = on_test.closest_pairs(synth.images, test.images, synth.labels,
                                                                      CLOSEST_PAIRS, "test")
        if ctx.generator.oracle:
            details["oracle_note"] = ("the real oracle's samples are the train images: copy_fraction is 1 by "
                                      "construction; test_copy_fraction is the chance level")
        return ProtocolResult(metrics, details)
