"""Predictive validity: which cheap fidelity metric predicts a generator's
training utility.

FID, precision/recall, density/coverage and a real-vs-synthetic detector cost a
forward pass; ``replace`` and ``scaleup`` train classifiers. A cheap metric is
worth reading only if it *ranks* generators the way training does. This module
measures that on the board's own records, per dataset x preset: Spearman's rank
correlation (Spearman 1904, "The proof and measurement of association between
two things") between each cheap metric and each utility target, over every
*unit* of the board, with a bootstrap 95% interval and a verdict.

Choices a reader of the table should know (its note repeats them):

- **Units** are the rows of the current tables: each generator's default row and
  each ablation arm (a row with non-default options), matched across tables by
  ``Row.key`` (generator, its version, its options and extras: the key
  ``build_tables`` gives a row, the same in every table of a store). Left out:
  the reference row (``real``: it is the target's ceiling, not a generator),
  superseded rows and tables (an older generator or protocol version measured
  something else), and flagged rows (a memoriser's FID and accuracy are both
  those of the training set, which would flatter every metric).
- **Values** are a unit's mean over seeds (``row.stats[name].mean``). For
  ``detect`` the metric is ``|accuracy - 0.5|``, the distance from chance (0.5:
  the detector cannot tell real from synthetic), averaged over seeds (a detector
  at 0.4 on one seed and 0.6 on the next is separable both times, not
  indistinguishable on average). For ``scaleup``'s ``crossing_multiple`` a seed
  whose synthetic-only curve never reached real accuracy within the multiples
  tried (the metric absent, or null/NaN) counts as beyond the largest multiple:
  infinite, so its unit ranks worst, tied with every other unit that did not
  cross on some seed.
- **Sign.** ``rho`` is the raw correlation between the metric *as shown* (FID as
  FID, the detector as its distance from 0.5) and the target as shown (``top1``,
  ``crossing_multiple``). Whether that sign means "predicts utility" depends on
  both directions: a useful metric's better values go with better targets, so
  its expected sign is (+1 if the metric is higher-is-better else -1) x (+1 if
  the target is higher-is-better else -1). A useful FID (lower better) has
  ``rho < 0`` with ``top1`` and ``rho > 0`` with ``crossing_multiple`` (lower,
  i.e. sooner, is better). Each cell carries that expected sign.
- **Interval.** A percentile bootstrap over units (Efron & Tibshirani 1993, ch.
  13): 2,000 replicates resample the units with replacement and recompute rho.
  A replicate in which the metric or the target takes one value only has no
  ranking and no rho; it is skipped, and the cell says how many replicates it
  kept. The generator is ``numpy.random.default_rng`` seeded from a fixed seed
  and the cell's names (dataset, preset, metric, target), so the same store
  always gives the same table, and adding a metric or a dataset never moves
  another cell's interval.
- **Verdict.** ``predicts``: the interval excludes 0, rho has the expected
  sign, and a permutation test of rho = 0 gives p < 0.05 (exact over every
  ordering up to 8 units, else 10,000 seeded random orderings). The bootstrap
  alone is overconfident over a handful of units: with 4 units it can exclude 0
  although no ordering of 4 points is rarer than 2 in 24 (p = 0.083), so the
  permutation test keeps a verdict honest where units are few. ``inverted``:
  the same with the other sign (better metric, worse training);
  ``inconclusive``: otherwise. Under 4 units nothing is computed
  (``too few units``: a rank correlation over 3 points can take only 4 values);
  a metric or target with one value across all units is ``constant``.
- **Tables.** Where a dataset x preset has several current tables of one
  protocol (different protocol options), the one holding the metric for the
  most units is used, and the table names it.

Unlike the rest of the leaderboard this module knows protocols by name: the
question it answers is about these protocols' metrics.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from synthbench.leaderboard.aggregate import Row, Table, finite, fmt, slug

REPLICATES = 2000
"""Bootstrap replicates per cell (before skipping constant ones)."""

BOOTSTRAP_SEED = 19040101
"""The bootstrap's fixed base seed (each cell mixes in its own names)."""

MIN_UNITS = 4
"""Fewest units a correlation is computed over: with 3 the rank correlation
takes only the values -1, -0.5, 0.5 and 1."""

PREDICTS, INVERTED, INCONCLUSIVE, TOO_FEW, CONSTANT = (
    "predicts", "inverted", "inconclusive", "too few units", "constant")


@dataclass(frozen=True)
class Measure:
    """A metric or target as the validity table reads it."""

    protocol: str
    name: str
    """The metric's name in the records."""
    label: str
    """How the table shows it (``|pixel_acc − 0.5|`` for a detector)."""
    higher_is_better: bool
    """Of the value as shown, which sets the sign a useful metric's rho has."""
    note: str = ""

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


CHEAP_METRICS: tuple[Measure, ...] = (
    Measure("fidelity", "fid", "fid", False),
    Measure("fidelity", "kid", "kid", False),
    Measure("fidelity", "precision", "precision", True),
    Measure("fidelity", "recall", "recall", True),
    Measure("fidelity", "density", "density", True),
    Measure("fidelity", "coverage", "coverage", True),
    Measure("detect", "pixel_acc", "|pixel_acc − 0.5|", False,
            "the real-vs-synthetic detector's distance from chance (0.5 is best), mean over seeds"),
    Measure("detect", "dct_acc", "|dct_acc − 0.5|", False,
            "the real-vs-synthetic detector's distance from chance (0.5 is best), mean over seeds"),
)
"""The metrics that cost no classifier training, in the order the table shows them."""

TARGETS: tuple[Measure, ...] = (
    Measure("replace", "top1", "replace top1", True, "accuracy of a classifier trained on the samples alone"),
    Measure("scaleup", "crossing_multiple", "scaleup crossing_multiple", False,
            "smallest multiple of the real train size at which synthetic-only training reaches real accuracy; "
            "never reached ranks worst"),
)
"""The training-utility targets, in the order the table shows them."""

PROTOCOL_NOTES = {
    "detect": "detect: |accuracy − 0.5|, the detector's distance from chance (0.5 is best), mean over seeds.",
    "scaleup": "scaleup: a unit that did not reach real accuracy within the multiples tried (on any seed) ranks "
               "worst, tied with the others that did not.",
}
"""How a protocol's values are read, noted under a table that shows them."""


# --------------------------------------------------------------------------- unit values


def _mean_stat(row: Row, name: str) -> float | None:
    stat = row.stats.get(name)
    return stat.mean if stat is not None and stat.mean is not None else None


def _distance_from_chance(row: Row, name: str) -> float | None:
    """Mean over seeds of ``|acc - 0.5|``."""
    vals = [abs(float(r.metrics[name]["value"]) - 0.5) for r in row.ok_records
            if name in r.metrics and finite(r.metrics[name].get("value"))]
    return sum(vals) / len(vals) if vals else None


def _crossing(row: Row, name: str) -> float | None:
    """Mean over seeds of the crossing multiple, a seed that never crossed
    counting as infinite (so the unit ranks worst); None without an ok seed."""
    vals = []
    for r in row.ok_records:
        v = r.metrics.get(name, {}).get("value")
        vals.append(float(v) if finite(v) else math.inf)
    return sum(vals) / len(vals) if vals else None


_VALUE: dict[tuple[str, str], Callable[[Row, str], float | None]] = {
    ("detect", "pixel_acc"): _distance_from_chance,
    ("detect", "dct_acc"): _distance_from_chance,
    ("scaleup", "crossing_multiple"): _crossing,
}
"""How a measure's unit value is read, where it is not the row's mean."""


def unit_value(measure: Measure, row: Row) -> float | None:
    """The value a unit enters the correlation with (see the module's notes)."""
    return _VALUE.get((measure.protocol, measure.name), _mean_stat)(row, measure.name)


# --------------------------------------------------------------------------- statistics


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of ``x`` and ``y`` (shape replicates x n):
    Pearson's correlation of their average ranks, as ``scipy.stats.spearmanr``
    computes it, vectorised over the bootstrap's replicates. NaN where a row
    is constant (no ranking). Infinite values rank last, tied."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=1)
    ry = rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / den, np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """``scipy.stats.spearmanr`` of two vectors, None when either is constant.
    Ranked first, so an infinite value (never crossed) is a tie at the bottom."""
    from scipy.stats import rankdata, spearmanr

    rx, ry = rankdata(x), rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return None
    return float(spearmanr(rx, ry)[0])


def _cell_rng(*names: str) -> np.random.Generator:
    """A generator of its own per cell: the fixed seed and the cell's names."""
    digest = hashlib.sha256("\x1f".join(names).encode()).digest()
    return np.random.default_rng([BOOTSTRAP_SEED, int.from_bytes(digest[:8], "big")])


def bootstrap_interval(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                       replicates: int = REPLICATES) -> tuple[float | None, float | None, int]:
    """Percentile 95% interval of rho over ``replicates`` resamples of the
    units (pairs kept together); replicates with a constant side are skipped.
    Returns ``(low, high, replicates kept)``; no interval when none was kept."""
    idx = rng.integers(0, len(x), size=(replicates, len(x)))
    rhos = spearman_rows(x[idx], y[idx])
    kept = rhos[~np.isnan(rhos)]
    if kept.size == 0:
        return None, None, 0
    low, high = np.percentile(kept, [2.5, 97.5])
    return float(low), float(high), int(kept.size)


# --------------------------------------------------------------------------- the table


@dataclass
class Unit:
    """One generator row or ablation arm, as the validity table lists it."""

    key: str
    """``Row.key``: generator, version, options and extras."""
    label: str
    generator: str
    variant: bool
    """An ablation arm (non-default options of a generator whose default row is on the board)."""


@dataclass
class Correlation:
    """One cell: a cheap metric against a utility target over the units holding both."""

    metric: Measure
    target: Measure
    n: int
    """Units holding both values."""
    units: list[str]
    """Their labels."""
    rho: float | None
    """Raw Spearman rho between the metric and the target as shown (None: not computed)."""
    low: float | None
    high: float | None
    """The bootstrap's 95% interval of rho."""
    replicates: int
    """Bootstrap replicates kept (those with a ranking on both sides)."""
    useful_sign: int
    """The sign of rho a metric that predicts utility has: -1 or +1."""
    verdict: str
    """``predicts``, ``inverted``, ``inconclusive``, ``too few units`` or ``constant``."""
    p: float | None = None
    """Two-sided permutation p-value of rho = 0 (exact up to 8 units)."""
    generators_only: Correlation | None = None
    """The same cell over the generators' default rows alone, when ablation arms
    are among the units: arms of one recipe share a base network, so they are
    not independent draws of generators and the all-units p and interval are
    optimistic; this one is not, at the price of fewer units."""

    @property
    def agrees(self) -> str:
        """The direction flag: the verdict."""
        return self.verdict

    @property
    def computed(self) -> bool:
        return self.rho is not None

    @property
    def direction_text(self) -> str:
        """What a useful metric does, in words: ``lower fid goes with higher replace top1``."""
        better = "higher" if self.metric.higher_is_better else "lower"
        target = "higher" if self.target.higher_is_better else "lower"
        return f"{better} {self.metric.label} goes with {target} {self.target.label}"

    @property
    def text(self) -> str:
        """The verdict as a sentence, for a tooltip or a footnote."""
        if self.verdict == TOO_FEW:
            return f"too few units ({self.n}; a rank correlation needs at least {MIN_UNITS})"
        if self.verdict == CONSTANT:
            return f"not computed: the metric or the target takes one value across the {self.n} units"
        sign = "< 0" if self.useful_sign < 0 else "> 0"
        if self.verdict == PREDICTS:
            return f"predicts utility: {self.direction_text} (rho {sign}, 95% interval excludes 0)"
        if self.verdict == INVERTED:
            return f"inverted: the opposite of '{self.direction_text}' holds (95% interval excludes 0)"
        if self.low is not None and self.high is not None and not self.low <= 0 <= self.high:
            why = (f"p = {self.p:.3f} (permutation test), not under 0.05" if self.p is not None and self.p >= 0.05
                   else "rho lies on the other side of 0 than its interval")
            return f"inconclusive: the 95% interval excludes 0 but {why} (a useful metric has rho {sign})"
        return f"inconclusive: the 95% interval contains 0 (a useful metric has rho {sign})"

    @property
    def summary(self) -> str:
        """``-0.83 [-0.95, -0.41], n=9, predicts``: the cell as one line."""
        if self.rho is None:
            return f"{self.verdict}, n={self.n}"
        interval = (f" [{fmt(self.low)}, {fmt(self.high)}]" if self.low is not None and self.high is not None
                    else "")
        p = "" if self.p is None else ", p<0.001" if self.p < 0.001 else f", p={self.p:.3f}"  # never "p=0.000"
        text = f"{fmt(self.rho)}{interval}, n={self.n}{p}, {self.verdict}"
        if self.generators_only is not None:
            text += f"; generators only: {self.generators_only.summary}"
        return text


@dataclass
class ValidityRow:
    """One cheap metric against every target."""

    metric: Measure
    cells: list[Correlation]
    """One per target, in the table's ``targets`` order."""


@dataclass
class ValidityTable:
    """Cheap metrics x utility targets of one dataset x preset."""

    dataset: str
    dataset_digest: str
    preset: str
    units: list[Unit]
    """Every unit of the board that entered some cell, by label."""
    left_out: list[tuple[str, str]]
    """(label, why) of the rows that are no units: the reference, superseded, flagged."""
    targets: list[Measure]
    rows: list[ValidityRow]
    sources: dict[str, str] = field(default_factory=dict)
    """protocol -> the anchor of the table its values came from."""
    source_options: dict[str, str] = field(default_factory=dict)
    """protocol -> that table's protocol options, as the leaderboard writes them."""
    replicates: int = REPLICATES

    @property
    def anchor(self) -> str:
        return slug(f"validity-{self.dataset}-{self.preset}", f"{self.dataset_digest}|{self.preset}")

    @property
    def computed(self) -> bool:
        """Whether any correlation could be computed (enough units, values that vary)."""
        return any(c.computed for row in self.rows for c in row.cells)

    def cell(self, metric: str, target: str) -> Correlation | None:
        """The cell of a metric and a target, by record name (``fid``, ``top1``)."""
        for row in self.rows:
            if row.metric.name == metric:
                return next((c for c in row.cells if c.target.name == target), None)
        return None

    @property
    def notes(self) -> list[str]:
        """What the table's reader must know, one line each."""
        return [
            "Spearman's rank correlation (rho) between each metric and each target over the units holding both, "
            "each unit's mean over seeds; 95% interval: percentile bootstrap over units "
            f"({self.replicates:,} replicates, fixed seed; replicates with one value on a side are skipped).",
            "rho is the raw correlation of the values as shown; ↑/↓ say which way is better, and a useful metric's "
            "rho has the sign those imply (e.g. lower fid with higher top1: rho < 0).",
            "predicts: the interval excludes 0 with that sign and a permutation test gives p < 0.05 (exact up to "
            f"{EXACT_UP_TO} units); inverted: the same with the other sign; "
            f"inconclusive: otherwise (the interval contains 0, or p >= 0.05); under {MIN_UNITS} units nothing "
            "is computed.",
            "Units: generator rows and ablation arms; not the real reference, superseded or flagged rows.",
        ] + self._dependence_note + [note for protocol, note in PROTOCOL_NOTES.items()
                                     if protocol in {m.protocol for m in self.measures}]

    @property
    def _dependence_note(self) -> list[str]:
        arms = [u for u in self.units if u.variant]
        if not arms:
            return []
        owners = ", ".join(sorted({u.generator for u in arms}))
        alone = len(self.units) - len(arms)
        floor = (f": with {alone} units no ordering is rarer than p = {2 / math.factorial(alone):.3f}"
                 if MIN_UNITS <= alone <= EXACT_UP_TO else "")
        return [f"{len(arms)} of the {len(self.units)} units are ablation arms of {owners}: arms of one recipe "
                "share its base network and data, so they are not independent draws of generators, and the "
                "all-units interval and p-value are optimistic. 'generators only' repeats each cell over the "
                f"generators' default rows alone (independent, but fewer{floor})."]

    @property
    def measures(self) -> list[Measure]:
        """Every metric and target the table shows."""
        return [row.metric for row in self.rows] + self.targets

    def to_markdown(self) -> str:
        """The table as GitHub Markdown (for the README): a heading, the grid and its notes."""
        out = [f"#### Predictive validity: {markdown_cell(self.dataset)}, preset {markdown_cell(self.preset)}", ""]
        out.append("| metric | " + " | ".join(f"{markdown_cell(t.label)} {t.arrow}" for t in self.targets) + " |")
        out.append("|---|" + "---|" * len(self.targets))
        for row in self.rows:
            out.append(f"| {markdown_cell(row.metric.label)} {row.metric.arrow} | "
                       + " | ".join(markdown_cell(c.summary) for c in row.cells) + " |")
        out.append("")
        out.append("Units (" + str(len(self.units)) + "): " + (", ".join(markdown_cell(u.label) for u in self.units) or "none")
                   + ".")
        if self.left_out:
            out.append("Left out: " + ", ".join(f"{markdown_cell(label)} ({markdown_cell(why)})" for label, why in self.left_out) + ".")
        out.append("")
        out.extend(f"- {note}" for note in self.notes)
        return "\n".join(out) + "\n"


def markdown_text(text: str) -> str:
    """Text that Markdown shows as written, never as HTML: a ``<`` that could
    open a tag (a generator label from a ``samples:`` path may hold any
    characters) is written ``&lt;``; ``p<0.001`` stays as it is."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text))


def markdown_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return markdown_text(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


EXACT_UP_TO = 8
"""Units up to which the permutation test enumerates every ordering (8! = 40,320)."""

PERMUTATIONS = 10_000
"""Random orderings of the Monte Carlo permutation test above ``EXACT_UP_TO`` units."""


def permutation_p(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
    """Two-sided p-value of Spearman's rho = 0: the share of orderings of ``y``
    whose |rho| reaches the observed one; every ordering up to
    :data:`EXACT_UP_TO` units, else ``(hits + 1) / (draws + 1)`` over
    :data:`PERMUTATIONS` seeded ones."""
    import itertools

    observed = abs(spearman(x, y) or 0.0) - 1e-12
    n = len(y)
    if n <= EXACT_UP_TO:
        orders = np.array(list(itertools.permutations(range(n))))
        rhos = spearman_rows(np.broadcast_to(x, orders.shape), y[orders])
        return float(np.mean(np.abs(np.nan_to_num(rhos)) >= observed))
    orders = np.argsort(rng.random((PERMUTATIONS, n)), axis=1)
    rhos = spearman_rows(np.broadcast_to(x, orders.shape), y[orders])
    return float((np.sum(np.abs(np.nan_to_num(rhos)) >= observed) + 1) / (PERMUTATIONS + 1))


def _verdict(rho: float, low: float | None, high: float | None, useful_sign: int, p: float | None = None) -> str:
    """The interval's side decides, when the permutation test agrees (p < 0.05);
    a rho on the other side of 0 than its own interval (possible with a
    percentile bootstrap, rarely) decides nothing."""
    if low is None or high is None or low <= 0 <= high or (p is not None and p >= 0.05):
        return INCONCLUSIVE
    side = 1 if low > 0 else -1
    if (rho > 0) != (side > 0):
        return INCONCLUSIVE
    return PREDICTS if side == useful_sign else INVERTED


def correlate(metric: Measure, target: Measure, pairs: list[tuple[str, float, float]],
              rng: np.random.Generator, replicates: int = REPLICATES) -> Correlation:
    """The cell of ``metric`` x ``target`` over ``pairs`` (unit label, metric value, target value)."""
    useful_sign = (1 if metric.higher_is_better else -1) * (1 if target.higher_is_better else -1)
    n = len(pairs)
    labels = [p[0] for p in pairs]
    empty = dict(rho=None, low=None, high=None, replicates=0)
    if n < MIN_UNITS:
        return Correlation(metric, target, n, labels, useful_sign=useful_sign, verdict=TOO_FEW, **empty)
    x = np.array([p[1] for p in pairs], dtype=float)
    y = np.array([p[2] for p in pairs], dtype=float)
    rho = spearman(x, y)
    if rho is None:
        return Correlation(metric, target, n, labels, useful_sign=useful_sign, verdict=CONSTANT, **empty)
    low, high, kept = bootstrap_interval(x, y, rng, replicates)
    p = permutation_p(x, y, rng)
    return Correlation(metric, target, n, labels, rho, low, high, kept, useful_sign,
                       _verdict(rho, low, high, useful_sign, p), p)


def _pick(tables: list[Table], protocol: str) -> Table | None:
    """Of one protocol's current tables, the one holding one of its measures for
    the most eligible rows (the first in the leaderboard's order on a tie)."""
    measures = [m for m in CHEAP_METRICS + TARGETS if m.protocol == protocol]
    best, most = None, 0
    for t in tables:
        if t.protocol != protocol:
            continue
        count = sum(1 for r in t.rows if _why_left_out(r) is None
                    and any(unit_value(m, r) is not None for m in measures))
        if count > most:
            best, most = t, count
    return best


def _why_left_out(row: Row) -> str | None:
    if row.oracle:
        return "the real reference"
    if row.stale:
        return "superseded"
    if row.flags:
        return "flagged: " + row.flags[0].split(":")[0]
    return None


def predictive_validity(tables: list[Table], replicates: int = REPLICATES) -> list[ValidityTable]:
    """One :class:`ValidityTable` per dataset x preset that holds at least one
    cheap metric and one target among its current tables, ordered by dataset and
    preset. Superseded tables are ignored; see the module's notes for units,
    values, the sign convention, the interval and the verdicts."""
    groups: dict[tuple[str, str, str], list[Table]] = {}
    for t in tables:
        if not t.stale:
            groups.setdefault((t.dataset, t.dataset_digest, t.preset), []).append(t)
    out = []
    for (dataset, digest, preset), group in sorted(groups.items()):
        chosen = {p: t for p in dict.fromkeys(m.protocol for m in CHEAP_METRICS + TARGETS)
                  if (t := _pick(group, p)) is not None}
        units, left_out = _units(list(chosen.values()))
        order = sorted(units.values(), key=lambda u: (u.label, u.key))
        values = {(m.protocol, m.name): {r.key: v for r in chosen[m.protocol].rows
                                         if r.key in units and (v := unit_value(m, r)) is not None}
                  for m in CHEAP_METRICS + TARGETS if m.protocol in chosen}
        metrics = [m for m in CHEAP_METRICS if values.get((m.protocol, m.name))]  # a metric some unit holds
        targets = [m for m in TARGETS if values.get((m.protocol, m.name))]
        if not metrics or not targets:
            continue
        rows = []
        for m in metrics:
            cells = []
            for tg in targets:
                xs, ys = values[(m.protocol, m.name)], values[(tg.protocol, tg.name)]
                held = [u for u in order if u.key in xs and u.key in ys]
                pairs = [(u.label, xs[u.key], ys[u.key]) for u in held]
                cell = correlate(m, tg, pairs, _cell_rng(dataset, digest, preset, m.name, tg.name), replicates)
                if any(u.variant for u in held):  # its own seed: the all-units cell stays as it was
                    cell.generators_only = correlate(
                        m, tg, [(u.label, xs[u.key], ys[u.key]) for u in held if not u.variant],
                        _cell_rng(dataset, digest, preset, m.name, tg.name, "generators only"), replicates)
                cells.append(cell)
            rows.append(ValidityRow(m, cells))
        entered = {label for row in rows for c in row.cells for label in c.units}
        out.append(ValidityTable(
            dataset=dataset, dataset_digest=digest, preset=preset,
            units=[u for u in order if u.label in entered], left_out=left_out, targets=targets, rows=rows,
            sources={p: t.anchor for p, t in chosen.items()},
            source_options={p: t.options_label for p, t in chosen.items()}, replicates=replicates))
    return out


def _units(tables: list[Table]) -> tuple[dict[str, Unit], list[tuple[str, str]]]:
    """The units of these tables by ``Row.key``, and the rows left out with why.
    A row left out in one table is no unit in any. Two units with one label
    (same name and options, another version or extras) get the version and the
    key's hash appended, so every listed unit is told apart."""
    units: dict[str, Unit] = {}
    excluded: dict[str, tuple[str, str]] = {}
    versions: dict[str, object] = {}
    for t in tables:
        for r in t.rows:
            why = _why_left_out(r)
            if why is not None:
                excluded.setdefault(r.key, (r.label, why))
                continue
            versions[r.key] = r.generator_version
            unit = units.setdefault(r.key, Unit(r.key, r.label, r.generator, r.variant))
            unit.variant = unit.variant or r.variant
    for key in excluded:
        units.pop(key, None)
    by_label: dict[str, list[Unit]] = {}
    for u in units.values():
        by_label.setdefault(u.label, []).append(u)
    for same in by_label.values():
        if len(same) > 1:
            for u in same:
                u.label = f"{u.label} v{versions[u.key]} [{u.key[-8:]}]"
    return units, sorted(set(excluded.values()))
