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
  (Fig. 4; ``benchmark/gradcam.py``);
- the augmentation arm (option ``augment_arm``, on by default): a classifier
  trained on the real train split plus its reconstructions (the same ones, so
  twice the images) and tested on the real test split, ``aug_top1_t*`` for each
  t_re > 0: Yamaguchi & Fukuda 2025 (the ACML version of arXiv 2311.13090) find
  that the samples that hurt as a replacement help as an augmentation. It
  costs one more classifier per t_re > 0, on twice the data;
  ``augment_arm=false`` skips it.

The entropies are diagnostics (Fig. 5 reads their fall as samples becoming
"typical", not as better or worse data): declared without a direction, so the
leaderboard ranks no one by them, and their record entries carry
``higher_is_better: null`` (v3 and earlier said true).

Noise levels. t_re is a position on a generator's own schedule, not a noise
level: on the Karras T = 100 grid t_re 30 / 50 / 70 / 100 start at sigma 0.29 /
2.40 / 12.1 / 80, ``ddpm``'s cosine schedule at 0.52 / 1.02 / 1.99 / 2.0e4, and
the reference DDPM-linear schedule (``diffusion.ddpm_linear_sigma``: Ho et al.
2020's linear betas in T = 100 steps) at 1.23 / 3.53 / 13.2 / 221. Every record
keeps, per t_re, the level the generator starts from (its ``recon_sigma``, the
variance-exploding sigma; None when an adapter does not say) and the equivalent
step of the reference schedule: ``details["noise_levels"]``. Option
``t_re_scale``: ``steps`` (the default, v3's reconstructions) keeps t_re a
position; ``sigma`` makes t_re k the reference schedule's level at step k for
every generator, each starting its reverse process there (``reconstruct(...,
sigma=S)``: edm and in-suite realfake at exactly S then the grid's levels
below it; ddpm at its timestep nearest in log sigma, the level it used
recorded). An adapter that cannot start from a given level is unsupported in
that mode.

Reverse process. Algorithm 1 adds noise in its reverse step (line 8, DDPM's
ancestral step). ``churn`` (default 0) is that stochasticity for the Heun-based
generators, as S_churn of Karras et al. Algorithm 2 with image i's extra noise
seeded by its reconstruction seed; at 0 each generator runs its own reverse
process: the deterministic Heun sampler for edm (unless its own ``churn`` option
is set) and realfake, the ancestral chain for ddpm, which is stochastic already
and ignores ``churn``. An adapter whose ``reconstruct`` takes no ``churn``
keyword is unsupported at churn > 0. ``details`` records ``t_re_scale``,
``churn`` and ``reverse_process``.

Reconstructions are computed once per (fitted generator, t_re, images) with the
noise seeded per image index (option ``recon_seed``), cached, and shared by the
run seeds, which then vary the classifiers only: reconstructing 1,438 digits at
t_re = 100 costs 199 network evaluations an image. A sigma-mode or churn
reconstruction has cache entries of its own. t_re = 0 is the real split,
so its classifier is the reference classifier itself.

A generator that cannot reconstruct gets an ``unsupported`` record.
"""

from __future__ import annotations

import inspect
import math
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
from synthbench.generators.diffusion import DDPM_LINEAR_T, ddpm_linear_sigma, ddpm_linear_step
from synthbench.protocols.base import Protocol, ProtocolResult


def _valid_steps(v: tuple[int, ...]) -> bool:
    return all(0 <= t <= 100 for t in v) and len(set(v)) == len(v)


def _count_or_all(text: str) -> int:
    """``"1000"`` -> 1000; ``"all"`` -> 0 (every image)."""
    return 0 if str(text).strip().lower() == "all" else int(text)


FAST_TEST_IMAGES = 1000
"""Test images for the Eq. 4 entropy at smoke and fast (all at paper)."""

T_RE_SCALES = ("steps", "sigma")
REFERENCE_SCHEDULE = (f"DDPM-linear (Ho et al. 2020) in T = {DDPM_LINEAR_T} steps: betas linear 1e-3..0.2 "
                      f"(1e-4..0.02 over 1000 steps, scaled by 1000 / T as Nichol & Dhariwal respace it); "
                      f"sigma = sqrt((1 - abar) / abar)")


def _adapter(gen: Any) -> Any:
    """The adapter behind a :class:`~synthbench.benchmark.guard.Guarded` handle (or ``gen``)."""
    return getattr(gen, "adapter", None) or gen


def _takes_keyword(gen: Any, name: str) -> bool:
    """Whether the adapter's ``reconstruct`` accepts the keyword ``name``."""
    try:
        params = inspect.signature(type(_adapter(gen)).reconstruct).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return False
    return any((p.name == name and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)) or p.kind == p.VAR_KEYWORD
               for p in params)


def _declares_recon_sigma(gen: Any) -> bool:
    from synthbench.generators.base import Generator

    own = getattr(type(_adapter(gen)), "recon_sigma", None)
    return own is not None and own is not Generator.recon_sigma


class ReconProtocol(Protocol):
    name = "recon"
    version = 4
    """v4: the augmentation arm (``aug_top1_t*``: real train + its reconstructions),
    options ``t_re_scale`` (``sigma``: t_re names a noise level of the reference
    DDPM-linear schedule, the same for every generator) and ``churn`` (stochastic
    reverse steps), and each t_re's noise level in ``details["noise_levels"]``.
    At the defaults (``t_re_scale=steps``, ``churn=0``) the reconstructions are
    v3's bit for bit (same calls, same cache entries), and so are the top1,
    entropy, FID, precision and recall numbers; the entropies' entries say
    ``higher_is_better: null`` (a diagnostic), where v3 said true.

    v3: the test-side entropy uses ``test_images`` (1,000 at smoke/fast) instead
    of every test image, and entropies carry their standard error over images.
    Test splits at or under that size (digits: 359) give v2's numbers, to the
    float rounding of taking the mean in float64 (1e-7)."""
    description = "real-sample reconstruction sweep over t_re: accuracy, output entropy, FID, precision/recall, PCA"
    source = ("Yamaguchi & Fukuda 2023, arXiv 2311.13090 Sec. 3.2, 4.1, 4.2; Table 2, Fig. 1b, 3b, 4, 5, 6; "
              "Yamaguchi & Fukuda, ACML 2025 (real + reconstructions)")
    metrics = {"top1_t{t}": True, "entropy_train_t{t}": None, "entropy_test_t{t}": None,
               "fid_t{t}": False, "precision_t{t}": True, "recall_t{t}": True, "aug_top1_t{t}": True}
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
        "t_re_scale": Option("t_re_scale", "steps", "What t_re names: 'steps', a position on each generator's "
                             "own schedule (edm: the Karras T = 100 grid; ddpm: t_re / 100 of its cosine "
                             "schedule; sd: img2img strength t_re / 100), so equal t_re is not equal noise across "
                             "generators; or 'sigma', the noise level of the reference DDPM-linear schedule at step "
                             "t_re, where every generator starts its reverse process (needs a generator that can "
                             "start from a given level: edm, ddpm, in-suite realfake).", str, choices=T_RE_SCALES),
        "churn": Option("churn", 0.0, "Stochastic reverse steps (Algorithm 1 line 8 adds noise in the reverse "
                        "step): S_churn of Karras et al. Algorithm 2 for the Heun-based generators (edm, in-suite "
                        "realfake). 0: each generator's own reverse process (deterministic Heun for edm with its "
                        "churn option at 0 and for realfake; ddpm's is ancestral, stochastic already, and ignores "
                        "it).", float, check=lambda v: v >= 0 and math.isfinite(v), check_help="must be a number >= 0"),
        "augment_arm": Option("augment_arm", True, "Also train a classifier on the real train split plus its "
                              "reconstructions (twice the images) at each t_re > 0: aug_top1_t*. Costs one more "
                              "classifier per t_re on twice the data.", bool),
    }

    def _steps(self) -> list[int]:
        return sorted(self.opts["t_re"])

    def table_metrics(self) -> list[str]:
        return [f"top1_t{t}" for t in self._steps()]

    def unsupported_reason(self, generator) -> str | None:
        if not getattr(generator, "can_reconstruct", False):
            return (f"generator {generator.name!r} cannot reconstruct real samples "
                    f"(Yamaguchi & Fukuda 2023 Algorithm 1); recon needs one that can, e.g. edm.")
        if self.opts["t_re_scale"] == "sigma" and not (_takes_keyword(generator, "sigma")
                                                        and _declares_recon_sigma(generator)):
            return (f"generator {generator.name!r} cannot start its reconstruction from a given noise level: "
                    f"recon's t_re_scale=sigma needs an adapter whose reconstruct takes a keyword sigma and whose "
                    f"recon_sigma says the level it starts from (edm, ddpm, in-suite realfake); use "
                    f"t_re_scale=steps.")
        if self.opts["churn"] > 0 and not _takes_keyword(generator, "churn"):
            return (f"generator {generator.name!r} takes no churn in reconstruct (stochastic reverse steps); "
                    f"use recon's churn=0.")
        return None

    def _recon_keywords(self, t_re: int) -> dict[str, float]:
        """The keywords ``reconstruct`` gets at ``t_re``: none at the defaults (the
        four-argument call every adapter takes), ``sigma`` in sigma mode,
        ``churn`` when > 0."""
        keywords: dict[str, float] = {}
        if self.opts["t_re_scale"] == "sigma":
            keywords["sigma"] = ddpm_linear_sigma(t_re)
        if self.opts["churn"] > 0:
            keywords["churn"] = float(self.opts["churn"])
        return keywords

    def _noise_levels(self, gen: Any) -> list[dict[str, Any]]:
        """Per t_re: the noise level the generator's reconstruction starts from
        (its ``recon_sigma``; None when it does not say) and the equivalent step
        of the reference DDPM-linear schedule; in sigma mode also the level asked
        for. A generator that cannot start from an asked level is unsupported."""
        sigma_mode = self.opts["t_re_scale"] == "sigma"
        out = []
        for t in self._steps():
            entry: dict[str, Any] = {"t_re": t}
            asked = ddpm_linear_sigma(t) if sigma_mode else None
            if t == 0:
                used: float | None = 0.0  # the real split itself
            elif sigma_mode:
                used = gen.recon_sigma(t, sigma=asked)
                if used is None:
                    raise Unsupported(f"generator {gen.name!r} cannot start its reconstruction from noise level "
                                      f"{asked:.4g} (recon's t_re_scale=sigma); use t_re_scale=steps.")
            else:
                used = gen.recon_sigma(t) if hasattr(gen, "recon_sigma") else None
            if sigma_mode:
                entry["requested_sigma"] = asked
            entry["sigma"] = None if used is None else float(used)
            entry["ddpm_linear_step"] = None if used is None else ddpm_linear_step(used)
            out.append(entry)
        return out

    def _entropy_test_index(self, ctx: CellContext) -> torch.Tensor | None:
        """Indices of the test images whose reconstructions enter the test entropy;
        None for all of them."""
        want = self.setting("test_images", ctx.preset)
        test = ctx.dataset.test
        if want == 0 or want >= len(test):
            return None
        _, idx = stratified_split(test.labels.numpy(), want / len(test),
                                  derive_seed("recon-test-subset", self.opts["recon_seed"]))
        if len(idx) == 0:  # each class takes round(its count x want / n): none at all for a tiny count
            from synthbench.errors import UserError

            raise UserError(f"recon: test_images={want} takes no test image: the subset is class-stratified, each "
                            f"class giving round(its test images x {want} / {len(test)}), which is 0 for every one "
                            f"of the {ctx.dataset.num_classes} classes. Give at least {ctx.dataset.num_classes} (the "
                            f"number of classes), or 'all'.")
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
        keywords = self._recon_keywords(t_re)

        def compute() -> dict[str, np.ndarray]:
            with ctx.phase("reconstruct_s", shared=True):
                worker = gen if reconstructor is None else reconstructor()
                # the defaults: the contract's four-argument call; sigma mode / churn add keywords
                out = worker.reconstruct(split.images, split.labels, t_re, seeds, **keywords)
                return {"images": out.numpy()}

        identity = (gen.fingerprint(), t_re, self.opts["recon_seed"], split.images,
                    np.asarray(positions, dtype=np.int64))
        name = f"{gen.name}-{tag}-t{t_re}"
        if keywords:  # sigma mode / churn: their own entries (the defaults keep v3's keys)
            identity += (sorted(keywords.items()),)
            name += "".join(f"-{k}" for k in sorted(keywords))
        return DiskCache(ctx.cache_dir).load_or_compute("recon", name, identity, NPZ, "reconstructions", compute,
                                                        lambda z: torch.from_numpy(z["images"]))

    def run(self, ctx: CellContext) -> ProtocolResult:
        gen = ctx.generator
        reason = self.unsupported_reason(gen)
        if reason is not None:
            raise Unsupported(reason)
        noise_levels = self._noise_levels(gen)  # before any work: sigma mode may find the generator unsupported
        train, test = ctx.dataset.train, ctx.dataset.test
        reference = ctx.reference_classifier()
        pca_idx = torch.arange(min(PCA_POINTS, len(train)))
        real_feats = penultimate_features(reference, train.images[pca_idx], ctx.device)
        all_real_feats = classifier_features(reference, train.images, ctx.device)
        metrics: dict = {}
        augment = bool(self.opts["augment_arm"])
        curves: dict[str, list] = {key: [] for key in ("t_re", "top1", "entropy_train", "entropy_test", "fid", "kid",
                                                       "precision", "recall", "density", "coverage",
                                                       *(("aug_top1",) if augment else ()))}
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
            if augment:
                aug_top1 = None
                if t > 0:  # real + reconstructions (t_re = 0 would be the real split twice)
                    aug_model = ctx.train(Split(torch.cat([train.images, rec_train]),
                                                torch.cat([train.labels, train.labels])),
                                          desc=f"{gen.name}/recon+real t_re={t} seed {ctx.seed}")
                    aug_ev = ctx.evaluate(aug_model)
                    metrics[f"aug_top1_t{t}"] = aug_ev.metric()
                    aug_top1 = aug_ev.top1
                curves["aug_top1"].append(aug_top1)
            metrics[f"entropy_train_t{t}"] = metric(h_train, se_train, len(train), None)  # a diagnostic
            h_test = None
            if measure_test:
                rec_test = self._reconstruct(ctx, test, t, "test", test_index, test_reconstructor)
                h_test, se_test = output_entropy(reference, rec_test, ctx.device)
                metrics[f"entropy_test_t{t}"] = metric(h_test, se_test, n_entropy_test, None)
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
            "t_re_scale": self.opts["t_re_scale"], "noise_levels": noise_levels,
            "reference_schedule": REFERENCE_SCHEDULE, "churn": float(self.opts["churn"]),
            "reverse_process": ("churn 0 (the default): each generator's own reverse process, deterministic Heun "
                                "for edm (at its churn option's 0) and realfake, ancestral for ddpm"
                                if self.opts["churn"] == 0 else
                                f"S_churn {self.opts['churn']:g} on the Heun-based generators' reverse steps; "
                                f"ddpm's ancestral chain ignores it"),
            "augment_arm": augment,
            **({} if measure_test else {"entropy_test": "not measured: held-out test images are handed only to "
                                                        "built-in adapters"}),
        })
