"""``mia``: membership inference against a classifier trained on synthetic data
(Real-Fake: Yuan et al. 2024, "Real-Fake: Effective Training Data Synthesis Through
Distribution Matching", arXiv 2310.10402, Sec. 4.5, Fig. 3), with the Likelihood
Ratio Attack (LiRA) of Carlini et al. 2022, "Membership Inference Attacks From
First Principles", arXiv 2112.03570, plus a copy check.

1. The train split is cut into members and non-members, half each, seeded by
   ``split_seed`` (fixed across run seeds, so the generator is fitted on the
   members once and the run seeds vary sampling, classifiers and shadows).
   The generator is fitted on the members only.
2. The target classifier is trained on a synthetic set of the members' size
   and class balance; the baseline classifier on the members themselves.
3. LiRA (``benchmark/lira.py``): ``shadows`` classifiers (default 8 at
   smoke/fast, 16 at paper), one per half of the full train split (halves in
   complementary pairs), give each example's IN and OUT distributions of
   logit-scaled confidence; the online and offline attacks (optionally with a
   fixed global variance) score every train example against the target and
   against the baseline. Reported: AUC and TPR at 0.1% and 1% FPR. For a
   private generator the target's AUC sits near 0.5; the members-trained
   baseline shows what the attack finds when a model did see the data.

   ``shadows_from`` says how a shadow is trained (default ``real`` at
   smoke/fast, ``generator`` at paper):

   - ``real``: on its real half itself (cheap; halves drawn anew for each run
     seed), as in v2. Such shadows model a classifier trained on real data,
     not the target's pipeline, so against the synthetic target the attack
     measures something other than LiRA's IN/OUT test.
   - ``generator``: as the target is, which is what LiRA asks for (Carlini et
     al. model the target's outputs with shadows trained the way the target
     was): the cell's generator is refitted on the half, a synthetic set of the
     half's size and class balance is sampled from it, and the shadow
     classifier is trained on those samples. The halves are seeded by
     ``split_seed``, not the run seed, so each shadow's generator fit is the same
     for every run seed (one cached fit, planned as a fit task ``shadow-K`` by
     ``generator_fits`` when the preset is known there); the run seed varies the
     sampling and the classifiers only. This mirrors the target, whose generator
     is fitted once on the members across run seeds. For the ``real`` oracle a
     synthetic set is its half itself, so ``generator`` is ``real``
     (``details`` says so). The members-trained baseline is scored with the
     same shadows, so under ``generator`` its attack uses shadows trained the
     way the target was, not the way the baseline was: read its AUC as a
     reference, not as LiRA's own test against it.

   An unconditional generator's samples are pseudo-labelled by the reference
   classifier, which was trained on the whole train split: labels (not
   images) then carry what that classifier learnt from the non-members too.

   ``queries``: ``plain`` scores each example on its image; ``flip`` on the
   image and its horizontal flip, each an independent query with its own shadow
   statistics, the two scores averaged (Carlini et al. Sec. VI). Each attack's
   ``details["roc"]`` entry holds the number of negatives (non-members) and of
   false positives each low-FPR TPR rests on, and flags a TPR at an FPR below
   one negative (the TPR at zero false positives).
4. Copy check, no shadows needed: each synthetic sample's distance to its
   nearest member and nearest non-member, in pixel space and in the reference
   classifier's feature space. ``copy_fraction`` is the share of samples closer
   to a member than the ``copy_quantile`` (1%) quantile of real held-out test
   images' nearest-member distances: about ``copy_quantile`` for a generator
   that draws fresh samples, near 1 for one that copies its training set. The
   closest pairs are kept for the leaderboard.

Lower is better for every attack and copy metric: they measure leakage.
``nearer_member_fraction_*`` (the share of samples nearer a member than a
non-member) is best at 0.5, where a generator that keeps nothing of its members
sits: below it is not less leakage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthbench.benchmark.analysis import penultimate_features
from synthbench.benchmark.context import CellContext, GeneratorFit
from synthbench.benchmark.datasets import Dataset, Split
from synthbench.benchmark.lira import (lira_scores_queries, logit_confidence, paired_halves, roc_points,
                                       roc_summary, roc_support)
from synthbench.benchmark.options import Option, by_preset
from synthbench.benchmark.presets import Preset
from synthbench.benchmark.seeding import derive_seed, numpy_rng
from synthbench.benchmark.metrics import Target, metric
from synthbench.benchmark.nearest import copy_check, nearest_distances
from synthbench.benchmark.trainer import predict_logits
from synthbench.errors import Unsupported
from synthbench.protocols.base import Protocol, ProtocolResult

CLOSEST_PAIRS = 8


def _even_shadows(v) -> bool:
    return v is None or (v >= 2 and v % 2 == 0)


class MIAProtocol(Protocol):
    name = "mia"
    version = 3
    """v3: shadows trained like the target (``shadows_from=generator``, the paper
    preset's default) and augmented queries (``queries=flip``); records say which
    shadows and queries were used and how many negatives and false positives each
    low-FPR TPR rests on. With ``shadows_from=real`` and ``queries=plain`` (the
    smoke and fast defaults) every v2 metric is unchanged.
    v2: the copy check also runs against the test split (``test_copy_fraction_*``,
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
        # the share of samples nearer a member than a non-member: 0.5 when the generator keeps nothing of the
        # members (members and non-members are drawn alike), above it when it leans to them; below 0.5 is chance
        # or a lean to the non-members, not less leakage, so closest to 0.5 is best (records say False, as always)
        "nearer_member_fraction_pixel": Target(0.5), "nearer_member_fraction_feature": Target(0.5),
        "synthetic_top1": True, "members_top1": None,
    }
    headline = "synthetic_online_auc"
    options = {
        "split_seed": Option("split_seed", 0, "Seed of the member / non-member split.", int),
        "shadows": Option("shadows", None, "Shadow classifiers (even); default 8 at smoke/fast, 16 at paper.",
                          int, check=_even_shadows, check_help="must be an even number >= 2",
                          per_preset=by_preset(smoke=8, fast=8, paper=16)),
        "shadows_from": Option("shadows_from", None, "What a shadow classifier trains on: its real half "
                               "(real) or samples of the generator refitted on its half, as the target (generator); "
                               "default real at smoke/fast, generator at paper.", str, choices=("real", "generator"),
                               per_preset=by_preset(smoke="real", fast="real", paper="generator")),
        "queries": Option("queries", "plain", "LiRA queries per example: the image (plain), or the image and "
                          "its horizontal flip, scores averaged (flip).", str, choices=("plain", "flip")),
        "fixed_variance": Option("fixed_variance", True, "LiRA with one global variance (robust with few "
                                 "shadows) instead of per-example variances.", bool),
        "copy_quantile": Option("copy_quantile", 0.01, "Held-out quantile that defines 'markedly close' "
                                "in the copy check.", float, check=lambda v: 0 < v < 0.5,
                                check_help="must be in (0, 0.5)"),
    }

    def table_metrics(self) -> list[str]:
        return ["synthetic_online_auc", "synthetic_offline_auc", "members_online_auc",
                "synthetic_online_tpr@0.01", "copy_fraction_pixel", "synthetic_top1"]

    @classmethod
    def spec_extras(cls, options: dict[str, Any], preset: Any = None) -> dict[str, Any]:
        """``shadows=2`` takes LiRA's fixed variance from the side's overall
        spread; before, it was 0 and every Gaussian 1e-6 wide. Those
        cells are keyed apart, so a store's cells computed the old way are not
        cache hits; the defaults (8, 16 at paper) and every published record key
        as before."""
        return {"lira_two_shadows": "overall variance"} if options.get("shadows") == 2 else {}

    def needs_fitted_generator(self) -> bool:
        return False  # the generator is fitted on the members only, below

    def _is_member(self, n: int) -> np.ndarray:
        """The members half of the train split (fixed by ``split_seed``, the same for every run seed)."""
        rng = numpy_rng("mia-split", self.opts["split_seed"])
        is_member = np.zeros(n, dtype=bool)
        is_member[rng.permutation(n)[: n // 2]] = True
        return is_member

    def _shadow_masks(self, n: int, num_shadows: int) -> np.ndarray:
        """The IN masks of ``shadows_from=generator``: seeded by ``split_seed`` (the
        same for every run seed), so each shadow's generator fit is shared."""
        return paired_halves(n, num_shadows, numpy_rng("mia-shadows", "split", self.opts["split_seed"]))

    def _shadow_fit_count(self, preset: Preset | None) -> int:
        """How many shadow generator fits ``run`` asks for: ``shadows`` in
        ``generator`` mode, else 0; without a preset, 0 unless both options are
        set explicitly (a per-preset default cannot be resolved)."""
        if preset is None:
            mode, count = self.opts.get("shadows_from"), self.opts.get("shadows")
        else:
            mode, count = self.setting("shadows_from", preset), self.setting("shadows", preset)
        return int(count) if mode == "generator" and count else 0

    def unsupported_reason(self, generator: Any) -> str | None:
        if getattr(generator, "refits", True):
            return None
        return (f"generator {generator.name!r} is not changed by a fit (fixed images, or pretrained weights used "
                f"as they are); mia trains the generator on the members half of the train split only, so it needs "
                f"a model it can fit (an adapter that trains or fine-tunes). The copies protocol checks its samples "
                f"for copies of real images without a fit.")

    def generator_fits(self, dataset: Dataset, generator: Any, preset: Preset | None = None) -> list[GeneratorFit]:
        """The members' fit and, with ``shadows_from=generator``, one fit per
        shadow half (``shadow-K``). The shadow count and mode may default per
        preset: given no ``preset``, shadow fits are listed only when both
        options are set; ``run`` fits (and caches) any it was not handed."""
        if self.unsupported_reason(generator) is not None or generator.oracle:
            return []
        train = dataset.train
        members = train.subset(torch.from_numpy(self._is_member(len(train))))
        fits = [GeneratorFit("members", members)]
        count = self._shadow_fit_count(preset)
        if count:
            fits += [GeneratorFit(f"shadow-{k}", train.subset(torch.from_numpy(mask)))
                     for k, mask in enumerate(self._shadow_masks(len(train), count))]
        return fits

    def run(self, ctx: CellContext) -> ProtocolResult:
        reason = self.unsupported_reason(ctx.generator)
        if reason is not None:
            raise Unsupported(reason)
        num_shadows = self.setting("shadows", ctx.preset)
        if not self.opts["fixed_variance"] and num_shadows < 4:  # before any training
            from synthbench.errors import UserError

            raise UserError(f"mia: fixed_variance=false estimates each example's IN and OUT variance from its own "
                            f"shadows, and shadows={num_shadows} gives each example one of each (no variance); "
                            f"give shadows=4 or more, or leave fixed_variance at true.")
        train, test = ctx.dataset.train, ctx.dataset.test
        n = len(train)
        is_member = self._is_member(n)
        members = train.subset(torch.from_numpy(is_member))
        non_members = train.subset(torch.from_numpy(~is_member))

        generator = ctx.fit_generator(members)
        synthetic = ctx.synthetic(len(members), generator=generator, like=members)
        target = ctx.train(synthetic, desc=f"{ctx.generator.name}/mia target seed {ctx.seed}")
        baseline = ctx.train(members, desc=f"mia members baseline seed {ctx.seed}")

        requested = self.setting("shadows_from", ctx.preset)
        shadows_from = "real" if ctx.generator.oracle else requested
        queries = self.opts["queries"]
        views = [train.images] if queries == "plain" else [train.images, train.images.flip(-1)]
        if shadows_from == "generator":
            in_mask = self._shadow_masks(n, num_shadows)
        else:  # v2's shadows: halves drawn anew for each run seed
            in_mask = paired_halves(n, num_shadows, numpy_rng("mia-shadows", ctx.seed))
        shadow_phi = np.stack([self._shadow_phi(ctx, train, mask, k, num_shadows, shadows_from, views)
                               for k, mask in enumerate(in_mask)], axis=1)  # [queries, shadows, n]

        support = roc_support(is_member)
        metrics, roc, curves = {}, {}, {}
        for who, model in (("synthetic", target), ("members", baseline)):
            phi = np.stack([logit_confidence(predict_logits(model, x, ctx.device), train.labels) for x in views])
            online, offline = lira_scores_queries(phi, shadow_phi, in_mask, self.opts["fixed_variance"])
            for kind, scores in (("online", online), ("offline", offline)):
                summary = roc_summary(scores, is_member)
                roc[f"{who}_{kind}"] = {**summary, **support}
                curves[f"{who}_{kind}"] = roc_points(scores, is_member)
                for key, value in summary.items():
                    metrics[f"{who}_{kind}_{key}"] = metric(value, None, n, False)
            ev = ctx.evaluate(model)
            metrics[f"{who}_top1"] = ev.metric()

        copy = self._copy_check(ctx, synthetic, members, non_members, test)
        metrics.update(copy.pop("metrics"))
        details: dict[str, Any] = {
            "members": int(is_member.sum()), "non_members": int((~is_member).sum()),
            "shadows": num_shadows, "shadows_from": shadows_from, "queries": queries,
            "shadow_generator_fits": num_shadows if shadows_from == "generator" else 0,
        }
        if shadows_from != requested:
            details["shadows_note"] = (f"shadows_from={requested} asked; the {ctx.generator.name} oracle's synthetic "
                                       f"set of a half is that half itself, so its shadows are real halves")
        if queries == "flip" and not ctx.dataset.hflip:
            details["queries_note"] = (f"{ctx.dataset.name} trains without horizontal flips: the flipped query is "
                                       f"an image no classifier trained on")
        return ProtocolResult(metrics, {
            **details, "fixed_variance": self.opts["fixed_variance"], "roc": roc, "roc_curves": curves, **copy,
        })

    def _shadow_phi(self, ctx: CellContext, train: Split, mask: np.ndarray, k: int, num_shadows: int,
                    shadows_from: str, views: list[torch.Tensor]) -> np.ndarray:
        """Shadow ``k``'s logit-scaled confidence on every train example, per query
        (``[queries, n]``): trained on its half (``real``) or, like the target, on
        samples of the generator refitted on its half (``generator``)."""
        half = train.subset(torch.from_numpy(mask))
        desc = f"mia shadow {k + 1}/{num_shadows} seed {ctx.seed}"
        if shadows_from == "generator":
            generator = ctx.fit_generator(half)
            half = ctx.synthetic(len(half), generator=generator, like=half)
            desc = f"{ctx.generator.name}/{desc}"
        model = ctx.train(half, desc=desc, seed=derive_seed("mia-shadow", ctx.seed, k) & 0xFFFFFFF)
        return np.stack([logit_confidence(predict_logits(model, x, ctx.device), train.labels) for x in views])

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
            # Memorisation: samples nearer a member than held-out test images come by chance.
            member = copy_check(s, m, t, q)
            d_non, _ = nearest_distances(s, nm)
            nearer = float((member.distances < d_non).double().mean())
            # Contamination: samples that sit on test images. The reference is real train images the generator
            # never saw (the non-members): how near an unseen real image comes to the test split by chance.
            on_test = copy_check(s, t, nm, q)
            out["metrics"][f"test_copy_fraction_{space}"] = metric(on_test.fraction, None, len(synthetic), False)
            out["metrics"][f"copy_fraction_{space}"] = metric(member.fraction, None, len(synthetic), False)
            out["metrics"][f"nearer_member_fraction_{space}"] = metric(nearer, None, len(synthetic), False)
            out["nearest"][space] = {
                "threshold": member.threshold,
                "synthetic_to_member_median": float(member.distances.median()),
                "synthetic_to_non_member_median": float(d_non.median()),
                "heldout_to_member_median": float(member.unseen_distances.median()),
                "test_threshold": on_test.threshold,
                "synthetic_to_test_median": float(on_test.distances.median()),
            }
            if space == "pixel":
                out["closest_pairs"] = member.closest_pairs(synthetic.images, members.images, synthetic.labels,
                                                            CLOSEST_PAIRS, "member")
        return out
