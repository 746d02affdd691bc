"""``mia``: membership inference against a classifier trained on synthetic data
(Real-Fake, Yuan et al. 2024, arXiv 2310.10402, Sec. 4.5, Fig. 3; LiRA of Carlini et al. 2022), plus a copy check.

1. The train split is cut into members and non-members, half each, seeded by
   ``split_seed`` (fixed across run seeds, so the generator is fitted on the
   members once and the run seeds vary sampling, classifiers and shadows).
   The generator is fitted on the members only.
2. The target classifier is trained on a synthetic set of the members' size
   and class balance; the baseline classifier on the members themselves.
3. LiRA (``benchmark/lira.py``): ``shadows`` classifiers (default 8 at
   smoke/fast, 16 at paper), each trained on a random half of the full train
   split in complementary pairs, give each example's IN and OUT distributions of
   logit-scaled confidence; the online and offline attacks (optionally with a
   fixed global variance) score every train example against the target and
   against the baseline. Reported: AUC and TPR at 0.1% and 1% FPR. For a
   private generator the target's AUC sits near 0.5; the members-trained
   baseline shows what the attack finds when a model did see the data.
4. Copy check, no shadows needed: each synthetic sample's distance to its
   nearest member and nearest non-member, in pixel space and in the reference
   classifier's feature space. ``copy_fraction`` is the share of samples closer
   to a member than the ``copy_quantile`` (1%) quantile of real held-out test
   images' nearest-member distances: about ``copy_quantile`` for a generator
   that draws fresh samples, near 1 for one that copies its training set. The
   closest pairs are kept for the leaderboard.

Lower is better for every attack and copy metric: they measure leakage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthbench.benchmark.analysis import penultimate_features
from synthbench.benchmark.context import CellContext, GeneratorFit
from synthbench.benchmark.datasets import Dataset, Split
from synthbench.benchmark.lira import lira_scores, logit_confidence, paired_halves, roc_points, roc_summary
from synthbench.benchmark.options import Option, by_preset
from synthbench.benchmark.seeding import derive_seed, numpy_rng
from synthbench.benchmark.metrics import metric
from synthbench.benchmark.trainer import predict_logits
from synthbench.errors import Unsupported
from synthbench.protocols.base import Protocol, ProtocolResult

CLOSEST_PAIRS = 8


def _even_shadows(v) -> bool:
    return v is None or (v >= 2 and v % 2 == 0)


def nearest_distances(queries: torch.Tensor, refs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from each query to its nearest reference, and its index."""
    dists, idx = [], []
    for i in range(0, len(queries), 1024):
        d = torch.cdist(queries[i:i + 1024].double(), refs.double())
        m = d.min(1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists), torch.cat(idx)


class MIAProtocol(Protocol):
    name = "mia"
    version = 2
    """v2: the copy check also runs against the test split (``test_copy_fraction_*``,
    contamination) and records carry each attack's ROC curve; every v1 metric is
    unchanged."""
    description = "LiRA membership inference (online/offline) and a nearest-neighbour copy check"
    source = "Yuan et al. 2024 (Real-Fake), arXiv 2310.10402 Sec. 4.5; Carlini et al. 2022"
    metrics = {
        **{f"synthetic_{kind}_{m}": False for kind in ("online", "offline") for m in ("auc", "tpr@0.001", "tpr@0.01")},
        # the same attack on a classifier trained on the members themselves: the baseline, not ranked
        **{f"members_{kind}_{m}": None for kind in ("online", "offline") for m in ("auc", "tpr@0.001", "tpr@0.01")},
        "copy_fraction_pixel": False, "copy_fraction_feature": False,
        "test_copy_fraction_pixel": False, "test_copy_fraction_feature": False,
        "nearer_member_fraction_pixel": False, "nearer_member_fraction_feature": False,
        "synthetic_top1": True, "members_top1": None,
    }
    headline = "synthetic_online_auc"
    options = {
        "split_seed": Option("split_seed", 0, "Seed of the member / non-member split.", int),
        "shadows": Option("shadows", None, "Shadow classifiers (even); default 8 at smoke/fast, 16 at paper.",
                          int, check=_even_shadows, check_help="must be an even number >= 2",
                          per_preset=by_preset(smoke=8, fast=8, paper=16)),
        "fixed_variance": Option("fixed_variance", True, "LiRA with one global variance (robust with few "
                                 "shadows) instead of per-example variances.", bool),
        "copy_quantile": Option("copy_quantile", 0.01, "Held-out quantile that defines 'markedly close' "
                                "in the copy check.", float, check=lambda v: 0 < v < 0.5,
                                check_help="must be in (0, 0.5)"),
    }

    def table_metrics(self) -> list[str]:
        return ["synthetic_online_auc", "synthetic_offline_auc", "members_online_auc",
                "synthetic_online_tpr@0.01", "copy_fraction_pixel", "synthetic_top1"]

    def needs_fitted_generator(self) -> bool:
        return False  # the generator is fitted on the members only, below

    def _is_member(self, n: int) -> np.ndarray:
        """The members half of the train split (fixed by ``split_seed``, the same for every run seed)."""
        rng = numpy_rng("mia-split", self.opts["split_seed"])
        is_member = np.zeros(n, dtype=bool)
        is_member[rng.permutation(n)[: n // 2]] = True
        return is_member

    def unsupported_reason(self, generator: Any) -> str | None:
        if getattr(generator, "refits", True):
            return None
        return (f"generator {generator.name!r} holds fixed images that no fit changes; mia trains the generator "
                f"on the members half of the train split only, so it needs a model it can fit (an adapter).")

    def generator_fits(self, dataset: Dataset, generator: Any) -> list[GeneratorFit]:
        if self.unsupported_reason(generator) is not None or generator.oracle:
            return []
        members = dataset.train.subset(torch.from_numpy(self._is_member(len(dataset.train))))
        return [GeneratorFit("members", members)]

    def run(self, ctx: CellContext) -> ProtocolResult:
        reason = self.unsupported_reason(ctx.generator)
        if reason is not None:
            raise Unsupported(reason)
        train, test = ctx.dataset.train, ctx.dataset.test
        n = len(train)
        is_member = self._is_member(n)
        members = train.subset(torch.from_numpy(is_member))
        non_members = train.subset(torch.from_numpy(~is_member))

        generator = ctx.fit_generator(members)
        synthetic = ctx.synthetic(len(members), generator=generator, like=members)
        target = ctx.train(synthetic, desc=f"{ctx.generator.name}/mia target seed {ctx.seed}")
        baseline = ctx.train(members, desc=f"mia members baseline seed {ctx.seed}")

        num_shadows = self.setting("shadows", ctx.preset)
        in_mask = paired_halves(n, num_shadows, numpy_rng("mia-shadows", ctx.seed))
        shadow_phi = np.stack([
            logit_confidence(predict_logits(ctx.train(
                train.subset(torch.from_numpy(mask)), desc=f"mia shadow {k + 1}/{num_shadows} seed {ctx.seed}",
                seed=derive_seed("mia-shadow", ctx.seed, k) & 0xFFFFFFF), train.images, ctx.device), train.labels)
            for k, mask in enumerate(in_mask)])

        metrics, roc, curves = {}, {}, {}
        for who, model in (("synthetic", target), ("members", baseline)):
            phi = logit_confidence(predict_logits(model, train.images, ctx.device), train.labels)
            online, offline = lira_scores(phi, shadow_phi, in_mask, self.opts["fixed_variance"])
            for kind, scores in (("online", online), ("offline", offline)):
                summary = roc_summary(scores, is_member)
                roc[f"{who}_{kind}"] = summary
                curves[f"{who}_{kind}"] = roc_points(scores, is_member)
                for key, value in summary.items():
                    metrics[f"{who}_{kind}_{key}"] = metric(value, None, n, False)
            ev = ctx.evaluate(model)
            metrics[f"{who}_top1"] = ev.metric()

        copy = self._copy_check(ctx, synthetic, members, non_members, test)
        metrics.update(copy.pop("metrics"))
        return ProtocolResult(metrics, {
            "members": int(is_member.sum()), "non_members": int((~is_member).sum()),
            "shadows": num_shadows, "fixed_variance": self.opts["fixed_variance"], "roc": roc, "roc_curves": curves, **copy,
        })

    def _copy_check(self, ctx: CellContext, synthetic: Split, members: Split, non_members: Split,
                    test: Split) -> dict:
        q = self.opts["copy_quantile"]
        reference = ctx.reference_classifier()
        spaces = {
            "pixel": lambda x: x.flatten(1).double() / 255.0,
            "feature": lambda x: penultimate_features(reference, x, ctx.device).double(),
        }
        out: dict = {"metrics": {}, "copy_quantile": q, "nearest": {}}
        for space, embed in spaces.items():
            s, m, nm, t = (embed(x.images) for x in (synthetic, members, non_members, test))
            d_member, idx_member = nearest_distances(s, m)
            d_non, _ = nearest_distances(s, nm)
            d_heldout, _ = nearest_distances(t, m)
            threshold = float(torch.quantile(d_heldout, q))
            copy_fraction = float((d_member < threshold).double().mean())
            nearer = float((d_member < d_non).double().mean())
            # Contamination: samples that sit on test images. The reference is real train images the generator
            # never saw (the non-members): how near an unseen real image comes to the test split by chance.
            d_test, _ = nearest_distances(s, t)
            d_unseen_to_test, _ = nearest_distances(nm, t)
            test_threshold = float(torch.quantile(d_unseen_to_test, q))
            test_copy = float((d_test < test_threshold).double().mean())
            out["metrics"][f"test_copy_fraction_{space}"] = metric(test_copy, None, len(synthetic), False)
            out["metrics"][f"copy_fraction_{space}"] = metric(copy_fraction, None, len(synthetic), False)
            out["metrics"][f"nearer_member_fraction_{space}"] = metric(nearer, None, len(synthetic), False)
            out["nearest"][space] = {
                "threshold": threshold,
                "synthetic_to_member_median": float(d_member.median()),
                "synthetic_to_non_member_median": float(d_non.median()),
                "heldout_to_member_median": float(d_heldout.median()),
                "test_threshold": test_threshold,
                "synthetic_to_test_median": float(d_test.median()),
            }
            if space == "pixel":
                order = torch.argsort(d_member)[:CLOSEST_PAIRS]
                out["closest_pairs"] = [{
                    "distance": float(d_member[i]),
                    "synthetic": synthetic.images[i].tolist(),
                    "member": members.images[idx_member[i]].tolist(),
                    "label": int(synthetic.labels[i]),
                } for i in order.tolist()]
        return out
