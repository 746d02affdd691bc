"""The Likelihood Ratio Attack (LiRA) of Carlini et al. 2022, "Membership
Inference Attacks From First Principles" (IEEE S&P), as Real-Fake (Yuan et al. 2024,
arXiv 2310.10402) Sec. 4.5 uses it.

For every candidate example (x, y) the attack looks at the logit-scaled
confidence phi = log(p_y / (1 - p_y)) of the target model and of shadow models
trained with (IN) or without (OUT) the example:

- online (Carlini et al. Alg. 1): score = log N(phi_t; mu_in, s_in^2) -
  log N(phi_t; mu_out, s_out^2);
- offline: only OUT shadows; score = -log Pr[Z > phi_t], Z ~ N(mu_out, s_out^2),
  a one-sided test (large confidence on the target -> member);
- fixed variance: one global variance per side instead of per-example
  variances, which is what works with few shadows (Carlini et al. Sec. VI-C):
  the spread of the shadows' values about their examples' means, pooled; with
  2 shadows (one IN and one OUT of each example) there is no such spread, and
  it is the spread of all the side's values, as in their reference code.
  Per-example variances need 4 shadows or more;
- several queries per example (augmentations, e.g. the image and its
  horizontal flip; Carlini et al. Sec. VI): ``lira_scores_queries`` treats each
  query as an independent test with its own shadow statistics and averages the
  per-query scores (what their reference code does); one query is
  ``lira_scores`` exactly.

Higher scores mean "member". ``roc_summary`` gives AUC and TPR at fixed FPRs,
``roc_support`` how many negatives and false positives each such TPR rests on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import norm


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """phi = log p_y - log(1 - p_y), computed stably as z_y - logsumexp_{j != y} z_j."""
    z = logits.double()
    z_y = z.gather(1, labels.view(-1, 1)).squeeze(1)
    others = z.scatter(1, labels.view(-1, 1), float("-inf"))
    return (z_y - torch.logsumexp(others, dim=1)).numpy()


def paired_halves(n: int, num_shadows: int, rng: np.random.Generator) -> np.ndarray:
    """IN masks ``[num_shadows, n]``: shadows come in complementary pairs of random
    halves, so every example is IN for exactly half of the shadows."""
    if num_shadows < 2 or num_shadows % 2:
        raise ValueError("num_shadows must be an even number >= 2")
    masks = np.zeros((num_shadows, n), dtype=bool)
    for k in range(0, num_shadows, 2):
        perm = rng.permutation(n)
        masks[k, perm[: n // 2]] = True
        masks[k + 1, perm[n // 2:]] = True
    return masks


def lira_scores(target_phi: np.ndarray, shadow_phi: np.ndarray, in_mask: np.ndarray,
                fixed_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """(online, offline) membership scores for each example.

    ``shadow_phi`` and ``in_mask`` are ``[num_shadows, n]``."""
    out_mask = ~in_mask
    eps = 1e-6

    def stats(mask):
        count = mask.sum(0)
        if not fixed_variance and count.min() < 2:
            raise ValueError("per-example variances need at least two IN and two OUT shadows of every example "
                             "(4 shadows in complementary pairs); use the fixed variance")
        mean = np.where(count > 0, (shadow_phi * mask).sum(0) / np.maximum(count, 1), np.nan)
        dev = np.where(mask, shadow_phi - mean, 0.0)
        var = (dev ** 2).sum(0) / np.maximum(count - 1, 1)
        if count.max() <= 1:
            # One shadow of each example on this side (2 shadows): no spread about an example's own mean, and the
            # pooled variance below would be 0 (every Gaussian eps wide). The spread of all the side's values
            # instead, as Carlini et al.'s reference code takes its fixed variance (np.std over examples).
            global_var = float(shadow_phi[mask].var())
        else:
            global_var = (dev ** 2).sum() / max(mask.sum() - 1, 1)
        return mean, np.sqrt(np.full_like(var, global_var) if fixed_variance else var) + eps

    mu_in, sd_in = stats(in_mask)
    mu_out, sd_out = stats(out_mask)
    online = norm.logpdf(target_phi, mu_in, sd_in) - norm.logpdf(target_phi, mu_out, sd_out)
    offline = -norm.logsf(target_phi, mu_out, sd_out)
    return online, offline


def lira_scores_queries(target_phi: np.ndarray, shadow_phi: np.ndarray, in_mask: np.ndarray,
                        fixed_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """(online, offline) membership scores from several queries of each example.

    ``target_phi`` is ``[queries, n]``, ``shadow_phi`` ``[queries, num_shadows, n]``
    (each shadow answers every query), ``in_mask`` ``[num_shadows, n]``. Each query
    gets its own IN/OUT statistics (``lira_scores``) and the per-query scores are
    averaged, i.e. the queries are treated as independent tests (Carlini et al.
    2022, Sec. VI). A single query gives ``lira_scores`` bit for bit."""
    target_phi, shadow_phi = np.asarray(target_phi), np.asarray(shadow_phi)
    if target_phi.ndim != 2 or shadow_phi.ndim != 3 or shadow_phi.shape[0] != target_phi.shape[0]:
        raise ValueError(f"expected target_phi [queries, n] and shadow_phi [queries, shadows, n], got "
                         f"{target_phi.shape} and {shadow_phi.shape}")
    per_query = [lira_scores(t, s, in_mask, fixed_variance) for t, s in zip(target_phi, shadow_phi)]
    if len(per_query) == 1:
        return per_query[0]
    online = np.mean([on for on, _ in per_query], axis=0)
    offline = np.mean([off for _, off in per_query], axis=0)
    return online, offline


def false_positives_allowed(fpr: float, negatives: int) -> int:
    """The most false positives a threshold may let through and keep its FPR at or
    below ``fpr`` (``floor(fpr * negatives)``, robust to rounding): what the TPR
    at that FPR in ``roc_summary`` rests on."""
    k = math.floor(fpr * negatives)
    while k + 1 <= negatives and (k + 1) / negatives <= fpr:
        k += 1
    while k > 0 and k / negatives > fpr:
        k -= 1
    return max(k, 0)


def roc_support(is_member: np.ndarray, fprs=(0.001, 0.01)) -> dict:
    """How many negatives (non-members) the ROC rests on and, for each FPR in
    ``fprs``, how many false positives its threshold allows
    (``false_positives_at@FPR``); ``notes`` flags an FPR below one negative, where
    the TPR there is the TPR at zero false positives."""
    negatives = int((~np.asarray(is_member, dtype=bool)).sum())
    out: dict = {"negatives": negatives}
    notes = []
    for f in fprs:
        allowed = false_positives_allowed(f, negatives)
        out[f"false_positives_at@{f:g}"] = allowed
        if f * negatives < 1:
            notes.append(f"tpr@{f:g} rests on 0 false positives ({negatives} negatives, {f:g} x {negatives} < 1): "
                         f"read it as the TPR at zero false positives")
    if notes:
        out["notes"] = notes
    return out


def roc_points(scores: np.ndarray, is_member: np.ndarray, points: int = 48) -> dict[str, list[float]]:
    """The ROC curve at ``points`` false-positive rates spaced evenly on a log
    scale from 1/n to 1 (the low-FPR end is where a membership attack matters;
    Carlini et al. 2022 plot it on log-log axes): TPR is the largest reached at or
    below each FPR. Rounded, so a record stays small."""
    from sklearn.metrics import roc_curve

    scores = np.nan_to_num(scores, nan=0.0, posinf=1e300, neginf=-1e300)
    fpr, tpr, _ = roc_curve(is_member, scores)
    lo = 1.0 / max(1, int((~is_member.astype(bool)).sum()))
    grid = np.unique(np.geomspace(lo, 1.0, points))
    at = [float(tpr[fpr <= f].max()) if (fpr <= f).any() else 0.0 for f in grid]
    return {"fpr": [round(float(f), 6) for f in grid], "tpr": [round(t, 6) for t in at]}


def roc_summary(scores: np.ndarray, is_member: np.ndarray, fprs=(0.001, 0.01)) -> dict[str, float]:
    """AUC and the TPR at each FPR in ``fprs`` (the largest TPR whose FPR does not exceed it)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = np.nan_to_num(scores, nan=0.0, posinf=1e300, neginf=-1e300)
    fpr, tpr, _ = roc_curve(is_member, scores)
    out = {"auc": float(roc_auc_score(is_member, scores))}
    for f in fprs:
        ok = fpr <= f
        out[f"tpr@{f:g}"] = float(tpr[ok].max()) if ok.any() else 0.0
    return out
