"""Paired comparisons of two generators on the same test images and seeds.

Every generator of a table is scored on the same real test split under the same
run seeds, so two generators' accuracies are paired twice: by test image and by
seed. Comparing their 95% intervals over three seeds throws that pairing away
and calls nearly everything a tie (each interval carries the test set's
binomial noise and the seeds' spread, most of which the two share). A paired
bootstrap keeps it: each replicate draws the seeds, and the test images, with
replacement, the same draw for both generators, and recomputes the difference
of their mean accuracies. The difference is *significant* when the central 95%
of the replicates excludes 0 (Efron & Tibshirani 1993, "An Introduction to the
Bootstrap", ch. 13, percentile interval; Koehn 2004, "Statistical Significance
Tests for Machine Translation Evaluation", the paired bootstrap over test
items).

With three seeds the seed draw has only ten distinct outcomes, so the seed
part of the interval is coarse and somewhat narrow (a bootstrap over k items
sees (k-1)/k of their variance); the test-image part is what the intervals
missed. A metric whose records carry no per-image outcomes (records written
before they were kept, or a metric that is not a mean over the shared test
split, such as ``detect``'s accuracy on each generator's own held-out set) is
compared by its intervals instead, and the table says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthbench.benchmark.metrics import PER_IMAGE, unpack_outcomes

REPLICATES = 2000
"""Bootstrap replicates per comparison: the 2.5% and 97.5% quantiles of 2,000
draws move by about 0.1 standard errors between bootstrap seeds."""

BOOTSTRAP_SEED = 20240521
"""The bootstrap's own fixed seed: the same records always give the same verdict."""

MIN_SEEDS = 2
"""Common seeds a paired comparison needs. With one seed the bootstrap sees
only the test images' noise, not the spread between training runs, which is
often larger: on the published fashion-mnist ``augment`` table, ddpm - edm was
+0.0075 (significant) on seed 0 alone and -0.0019 on seed 1 alone, and over
the three seeds +0.0039, 95% [-0.0022, +0.0100]. Below it the intervals decide."""

_CHUNK = 250
"""Replicates drawn at once (bounds memory at ``_CHUNK x n`` indices)."""


@dataclass(frozen=True)
class PairedResult:
    """``a - b`` over the common seeds, and the bootstrap's 95% interval of it."""

    diff: float
    low: float
    high: float
    seeds: int
    n: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def outcomes_by_seed(entries: dict[int, dict]) -> dict[int, np.ndarray]:
    """Seed -> per-image outcomes, for the metric entries (by seed) that carry them."""
    out = {}
    for seed, entry in entries.items():
        text, n = entry.get(PER_IMAGE), entry.get("n")
        if isinstance(text, str) and isinstance(n, int) and n > 0:
            try:
                out[seed] = unpack_outcomes(text, n)
            except ValueError:  # the record reader already refuses these; never guess
                continue
    return out


def paired_bootstrap(a: dict[int, np.ndarray], b: dict[int, np.ndarray],
                     replicates: int = REPLICATES) -> PairedResult | None:
    """Paired bootstrap of mean(a) - mean(b) over the seeds both hold, resampling
    seeds and test images (one image draw per replicate, shared by every seed:
    the image is the unit both generators were scored on). None when they share
    fewer than :data:`MIN_SEEDS` seeds or their test splits differ in size (not
    the same test images)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < MIN_SEEDS or len({len(a[s]) for s in seeds} | {len(b[s]) for s in seeds}) != 1:
        return None
    d = np.stack([a[s].astype(np.float64) - b[s].astype(np.float64) for s in seeds])  # seeds x images
    k, n = d.shape
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    stats = np.empty(replicates)
    for start in range(0, replicates, _CHUNK):
        m = min(_CHUNK, replicates - start)
        seed_draw = rng.integers(0, k, size=(m, k))
        weights = np.stack([np.bincount(row, minlength=k) for row in seed_draw]) / k  # m x k
        per_image = weights @ d  # m x n: each replicate's seed-weighted difference per image
        images = rng.integers(0, n, size=(m, n))
        stats[start:start + m] = np.take_along_axis(per_image, images, axis=1).mean(axis=1)
    low, high = np.quantile(stats, [0.025, 0.975])
    return PairedResult(diff=float(d.mean()), low=float(low), high=float(high), seeds=k, n=n)
