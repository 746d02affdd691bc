"""Records -> leaderboard tables: one per dataset x protocol (x preset x protocol
options x protocol version), generators as rows, mean and 95% interval over seeds.

Choices a reader of the leaderboard should know (the index page repeats them):

- The interval is the t-distribution's over seeds (``t_{0.975, k-1} * sd / sqrt(k)``);
  with one seed it is the metric's own standard error x 1.96 (e.g. binomial over
  the test set), and none when the record has no standard error.
- *Best* is marked per column by the metric's declared ranking rule
  (``benchmark/metrics.py``: higher, lower, closest to a target such as 0.5 for
  a real-vs-synthetic detector, or none for a diagnostic), never guessed from
  the values. Only generators compete: the reference row (``real``) is shown
  and never ranked, and nor are a generator's variants (rows with non-default
  options, e.g. ablation arms, grouped under the generator's default row). A
  column with one value in every competing row is context, not a contest, and
  carries no mark. A row is *tied with best* unless the best is better beyond
  doubt: for an accuracy whose records keep each test image's outcome, a
  paired bootstrap over the shared test images and seeds
  (``leaderboard/paired.py``) puts the difference's 95% interval away from 0;
  where that test cannot run, their 95% intervals lie apart.
  Nothing is marked when fewer than two rows compete.
- Rows from a generator version older than the installed one, and tables from an
  older protocol version, are kept and labelled *superseded*, never dropped and
  never ranked; so are failed and unsupported cells (shown with their error).
- Columns are the protocol's ``table_metrics()`` (its ``headline`` first) when
  the protocol is registered, else every metric the records hold; the protocol
  page shows every metric either way.
- When one seed of a row has several records (another synthbench version or
  device), the newest by creation time is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from synthbench.benchmark.cache import canonical_json
from synthbench.benchmark.cell import COST_PHASES, CellSpec, Record, Status, body_digest
from synthbench.benchmark.metrics import Target, declared_key, distance, match, rule_text
from synthbench.benchmark.presets import preset_label
from synthbench.benchmark.store import ResultStore, invalid_record_error
from synthbench.errors import UserError


Z95 = 1.959963984540054
"""Two-sided 95% normal quantile, for the one-seed interval from a record's stderr."""


# --------------------------------------------------------------------------- reading


@dataclass
class LeftOut:
    """A file of the store that is in no table: not a valid record, or (``copy``)
    a second file of a cell another file holds. Shown, never rendered."""

    path: str
    """Relative to the store's root (the site must not publish local folders)."""
    reason: str
    copy: bool = False
    """A valid record whose cell another file holds: ``--strict`` does not stop
    on it (no cell is lost), and it needs removing, not restoring."""


@dataclass
class StoreRead:
    records: list[Record]
    left_out: list[LeftOut]
    stamps: dict[str, dict[str, Any]] = field(default_factory=dict)
    """cell_hash -> the verification stamp covering it (``synthbench verify --results``)."""
    files: dict[str, Path] = field(default_factory=dict)
    """cell_hash -> the file each record was read from (not always its cell's own path: a renamed file)."""


def read_store(results: str | Path, strict: bool = False) -> StoreRead:
    """Every valid record of the store at ``results``, in the store's layout and
    order, and the files left out with why (the validation :meth:`Record.from_json`
    applies everywhere: schema, ``cell_hash``, digest).

    By default one bad file does not stop the build: the site renders every valid
    record and lists the left-out ones. ``strict`` (a publishing job that must not
    lose a cell silently) stops at the first one instead with its path and the fix."""
    store = ResultStore(results)
    root = store.root
    if not root.is_dir():
        raise UserError(f"--results {root}: no such folder. Point it at a result store (the folder "
                        f"`synthbench evaluate --results DIR` writes), e.g. --results results.")
    records, left_out, where = [], [], {}
    for path, record in store.scan():
        if isinstance(record, Record):
            records.append(record)
            where[id(record)] = path
        elif strict:
            raise invalid_record_error(path, record)
        else:
            left_out.append(LeftOut(str(path.relative_to(root)), str(record)))
    records, copies = _one_per_cell(records, where, store)
    left_out += copies
    if not records:
        found = (f"no valid records (only {len(left_out)} invalid file(s), e.g. {left_out[0].path}: "
                 f"{left_out[0].reason})" if left_out else f"no records (nothing under {root / 'records'})")
        raise UserError(f"The result store {root} holds {found}. Run "
                        f"`synthbench evaluate --results {root}` first, or give --results the folder "
                        f"that holds records/.")
    from synthbench.leaderboard.submission import read_stamps

    return StoreRead(records, left_out, read_stamps(root), {r.cell_hash: where[id(r)] for r in records})


def _one_per_cell(records: list[Record], where: dict[int, Path], store: ResultStore
                  ) -> tuple[list[Record], list[LeftOut]]:
    """One record per cell: a second file holding the same cell (a hand-made copy,
    ``seed0-... (copy).json``) is left out, named, keeping the file at the cell's
    own path, else the newest. Without it the tables (one record per seed) and
    the export, the downloads and the store digest (every file) disagreed."""
    by_cell: dict[str, list[Record]] = {}
    for rec in records:
        by_cell.setdefault(rec.cell_hash, []).append(rec)
    keep, copies = [], []
    for rec in records:
        same = by_cell[rec.cell_hash]
        chosen = next((r for r in same if where[id(r)] == store.path_for(r.spec)), None) or _newest(same)
        if rec is chosen:
            keep.append(rec)
        else:
            copies.append(LeftOut(str(where[id(rec)].relative_to(store.root)),
                                  f"the same cell as {where[id(chosen)].relative_to(store.root)}, which is used; "
                                  f"remove this copy", copy=True))
    return keep, copies


def store_digest(records: Iterable[Record]) -> str:
    """SHA-256 over the records' canonical JSON, in a fixed order: names the exact
    store a site was built from, independent of file names and formatting. Taken
    over each record's body without its ``record_digest``, so migrating a store
    to digests does not change the name of what it holds."""
    h = hashlib.sha256()
    for text in sorted(canonical_json(r.body()) for r in records):
        h.update(text.encode())
        h.update(b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- statistics


def t_quantile(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def mean_interval(values: list[float], stderr: float | None = None) -> tuple[float | None, float | None]:
    """Mean and 95% half-width over seeds; one seed: ``stderr * 1.96`` (None without one)."""
    vals = [float(v) for v in values if finite(v)]
    if not vals:
        return None, None
    k = len(vals)
    mean = sum(vals) / k
    if not math.isfinite(mean):  # values near the float limit: a record may hold any finite number
        mean = sum(v / k for v in vals)
    if k == 1:
        return mean, _finite_or_none(abs(float(stderr)) * Z95 if finite(stderr) else None)
    try:
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (k - 1))
    except OverflowError:
        return mean, None
    return mean, _finite_or_none(t_quantile(k - 1) * sd / math.sqrt(k))


def _finite_or_none(v: float | None) -> float | None:
    """An interval too wide for a float is shown as no interval, not as ``inf``."""
    return v if v is not None and math.isfinite(v) else None


def same_value(a: float, b: float) -> bool:
    """Equal up to floating-point noise: two rows with the same number of right
    test images over the same seeds have the same mean, whichever order their
    seeds' accuracies were summed in (1,063 right of 3 x 359 digits test images
    averages to 0.9870009285051068 over one row's seeds and ...67 over
    another's), and a FID of a set against itself comes out
    of the matrix square root as about -1e-12 on one row and -1e-13 on the next.
    Such rows share ``best``, rank alike and make a column constant."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def better_gap(a: float, b: float) -> bool:
    """``a`` is a smaller distance from the best than ``b``, beyond floating-point noise (:func:`same_value`)."""
    return a < b and not same_value(a, b)


def finite(v: Any) -> bool:
    """A real, finite number (not a bool, None, NaN or infinity): a record may hold any JSON value."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class Stat:
    """One table cell: a metric's mean over a row's seeds and its 95% interval."""

    mean: float | None = None
    half: float | None = None
    seeds: int = 0
    of: int = 0
    """The row's ok seeds. Fewer ``seeds`` than that: some ok seeds did not
    report the metric (``scaleup``'s ``crossing_multiple`` on a seed whose curve
    never reached real), so the mean speaks for the seeds that did and is not
    ranked (:attr:`partial`)."""
    rule: Any = None
    """The metric's ranking rule (``metrics.Rule``): True, False, a Target or None."""
    gap: float | None = None
    """How far the row is from the best under ``rule`` (smaller is better; None
    for a diagnostic): ``metrics.distance`` of the mean, except for a target,
    where it is the mean over seeds of each seed's distance to it, so a
    detector at 0.2 on one seed and 0.8 on another is not read as one at
    chance (the validity page measures it so too)."""
    mark: str = ""
    """``best``, ``tie`` (not clearly worse than the best) or empty."""
    versus_best: str = ""
    """How this row compares with the best (the paired difference and its
    interval, or the intervals), for the cell's tooltip."""

    @property
    def partial(self) -> bool:
        """Reported by only some of the row's ok seeds: a mean over the seeds
        that reported it would rank a row that reached real accuracy on one seed
        of three above one that reached it on all three, so it is shown with its
        seed count and never starred or ranked."""
        return self.seeds < self.of

    @property
    def coverage(self) -> str:
        """``" (2 of 3 seeds)"`` for a partial stat, else empty."""
        return f" ({self.seeds} of {self.of} seeds)" if self.partial else ""

    def overlaps(self, other: Stat) -> bool:
        """The two 95% intervals overlap on the scale the rule ranks: for a
        closest-to-a-target rule, the intervals of the distance to the target
        (a detector at 0.45 ± 0.025 and one at 0.56 ± 0.025 lie apart, but
        their distances from 0.5, 0.025..0.075 and 0.035..0.085, do not)."""
        if self.mean is None or other.mean is None:
            return False
        if self.half is None or other.half is None:
            return self.mean == other.mean
        (a_low, a_high), (b_low, b_high) = self._interval(), other._interval()
        return a_low <= b_high and b_low <= a_high

    def _interval(self) -> tuple[float, float]:
        low, high = self.mean - self.half, self.mean + self.half
        if not isinstance(self.rule, Target):
            return low, high
        t = self.rule.value
        far = max(abs(low - t), abs(high - t))
        return (0.0 if low <= t <= high else min(abs(low - t), abs(high - t))), far


def unsigned_zero(text: str) -> str:
    """``-0.0000`` -> ``0.0000``: FID of a set against itself comes out of the
    matrix square root as about -1e-13, and a table must not print a sign there."""
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def fmt(value: float | None, half: float | None = None) -> str:
    """``0.9851 ± 0.0052``: decimals chosen by magnitude, the interval in the same decimals."""
    if value is None:
        return "n/a"
    mag = abs(value)
    digits = 1 if mag >= 100 else 2 if mag >= 10 else 4
    text = unsigned_zero(f"{value:.{digits}f}")
    return text if half is None else f"{text} ± {half:.{digits}f}"


# --------------------------------------------------------------------------- tables


@dataclass
class Row:
    """One generator (name x version x options) in one table."""

    generator: str
    generator_version: Any
    options: dict[str, Any]
    changed: dict[str, Any]
    """The options that differ from the generator's defaults (all when unknown)."""
    oracle: bool
    stale: str
    """Why this row is superseded (an older generator version), or empty."""
    records: list[Record]
    """One record per seed (the newest), ordered by seed."""
    key: str
    stats: dict[str, Stat] = field(default_factory=dict)
    variant: bool = False
    """Non-default options of a generator whose default row is in the same table
    (an ablation arm): shown under that row, never ranked beside it."""
    flags: list[str] = field(default_factory=list)
    """Why this row must not be trusted as a score (a memoriser), shown in every
    table it appears in; a flagged row is never starred."""
    verification: str = ""
    """``verified`` (a maintainer recomputed cells of its submission: the text
    says with which synthbench and when), ``unverified`` (submitted code or
    samples nobody re-ran), or empty (a built-in generator the board's own runs
    computed)."""
    verification_text: str = ""

    @property
    def ok_records(self) -> list[Record]:
        return [r for r in self.records if r.status is Status.OK]

    @property
    def seeds(self) -> list[int]:
        return [r.spec.seed for r in self.records]

    @property
    def status(self) -> str:
        """``ok`` (every seed ok), ``partial`` (some seeds failed or unsupported),
        ``failed`` or ``unsupported`` (no seed ok)."""
        statuses = {r.status for r in self.records}
        if statuses == {Status.OK}:
            return "ok"
        if Status.OK in statuses:
            return "partial"
        return (Status.FAILED if Status.FAILED in statuses else Status.UNSUPPORTED).value

    @property
    def problems(self) -> list[dict[str, Any]]:
        """The records that are not ok, with their seed, status, error and traceback."""
        return [{"seed": r.spec.seed, "status": r.status.value, "error": str(r.error or ""),
                 "traceback": str(r.traceback or "")} for r in self.records if r.status is not Status.OK]

    @property
    def wall_s(self) -> float:
        """Wall seconds spent on this row, all seeds (cell time plus the generator's fit)."""
        total = 0.0
        for r in self.records:
            wall = r.cost.get("wall_s") or {}
            total += sum(float(wall.get(k) or 0.0) for k in COST_PHASES if finite(wall.get(k)))
        return total

    @property
    def devices(self) -> str:
        return ", ".join(sorted({str(r.cost.get("device") or r.spec.device_type) for r in self.records}))

    @property
    def options_label(self) -> str:
        """``changed`` as the tables write it (``mmd=False, prior_init=False``)."""
        return _options_text(self.changed)

    @property
    def label(self) -> str:
        return f"{self.generator} ({self.options_label})" if self.options_label else self.generator


@dataclass
class Table:
    """Every row of one dataset x protocol x preset x protocol options x protocol version."""

    dataset: str
    dataset_digest: str
    protocol: str
    protocol_version: Any
    preset: str
    protocol_options: dict[str, Any]
    columns: list[str]
    """The index page's metric columns (headline first)."""
    all_metrics: list[str]
    """Every metric any row holds (the protocol page's columns)."""
    headline: str | None
    description: str
    source: str
    stale: str
    """Why this table is superseded (an older protocol version), or empty."""
    rows: list[Row]
    key: str
    rules: dict[str, Any] = field(default_factory=dict)
    """Each column's ranking rule (declared by the protocol, else the records' direction)."""
    detectable: float | None = None
    """The smallest difference in the headline this table can detect (see :func:`detectable_difference`)."""
    saturated: bool = False
    """The competing generators' headline means lie closer together than ``detectable``."""
    comparers: dict[str, Any] = field(default_factory=dict, repr=False)
    """Per ranked column, the :class:`Comparer` that decided its ties."""
    default_options: bool = False
    """The protocol ran with its declared defaults (an ablation or a sweep of a
    user's own is another table of the same protocol)."""

    @property
    def representative(self) -> tuple[bool, int]:
        """Which of a protocol's tables speaks for it in the headline and the
        findings: the one with the default options, else the one with the most rows."""
        return self.default_options, len(self.rows)

    def test_text(self, name: str) -> str:
        """How the column's ties were decided, for the table's note: the tests
        the :class:`Comparer` used, and why the intervals decided where they did."""
        methods = self.comparers[name].methods if name in self.comparers else set()
        if PAIRED in methods:
            return ("decided by a paired bootstrap over the shared test images and seeds"
                    + (" (by 95% intervals apart for the pairs it cannot take)" if methods - {PAIRED} else ""))
        why = [INTERVAL_REASONS[m] for m in sorted(methods) if m in INTERVAL_REASONS]
        return f"decided by the 95% intervals ({'; '.join(why)})" if methods else ""

    @property
    def anchor(self) -> str:
        return slug(f"{self.dataset}-{self.protocol}-{self.preset}", self.key)

    @property
    def options_label(self) -> str:
        return _options_text(self.protocol_options)

    def rule_text(self, name: str) -> str:
        return rule_text(self.rules.get(name))

    def best_end(self, name: str) -> str:
        """Which end of :meth:`sort_value` is best, for the column's first click
        (``low`` for lower-is-better and closest-to-a-target columns)."""
        rule = self.rules.get(name)
        return "low" if rule is False or isinstance(rule, Target) else "high"

    def sort_value(self, name: str, stat: Stat) -> float:
        """What the column sorts by: the mean, or for a closest-to-a-target
        column (``detect``'s accuracy, best at 0.5) its distance to the target
        (:attr:`Stat.gap`), so that sorting best-first puts the least
        detectable generator first."""
        return stat.gap if isinstance(self.rules.get(name), Target) and stat.gap is not None else stat.mean

    def arrow(self, name: str) -> str:
        """↑, ↓, →0.5 (closest to), or nothing for a diagnostic."""
        rule = self.rules.get(name)
        if isinstance(rule, Target):
            return f" →{rule.value:g}"
        return "" if rule is None else " ↑" if rule else " ↓"

    def variants(self, row: Row) -> list[Row]:
        """The rows shown under ``row`` (its generator's other options)."""
        return [r for r in self.rows if r.variant and r.generator == row.generator] if not row.variant else []


def slug(name: str, key: str = "") -> str:
    """A file/anchor-safe name: readable part plus a short hash of the exact name,
    so names that differ only in unsafe characters never collide."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:48] or "x"
    return f"{base}-{hashlib.sha256((key or name).encode()).hexdigest()[:8]}"


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value_text(v)}" for k, v in sorted(options.items()))


def _value_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def _normalised(v: Any) -> Any:
    return json.loads(json.dumps(v, default=list)) if isinstance(v, (list, tuple, dict)) else v


class PluginInfo:
    """What the registries say about a plugin name, or nothing when it is not
    installed (records of an uninstalled plugin still render, unranked by version)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], Any] = {}

    def _get(self, kind: str, name: str) -> Any:
        if (kind, name) not in self._cache:
            from synthbench.plugins import GENERATORS, PROTOCOLS

            registry = GENERATORS if kind == "generator" else PROTOCOLS
            try:
                self._cache[(kind, name)] = registry.get(name)
            except UserError:  # unknown or broken plugin: render from the records alone
                self._cache[(kind, name)] = None
        return self._cache[(kind, name)]

    def generator(self, name: str) -> Any:
        return self._get("generator", name)

    def protocol(self, name: str) -> Any:
        return self._get("protocol", name)

    def origin(self, name: str) -> str:
        """``built-in``, ``entry point (...)``, or ``not installed``."""
        from synthbench.plugins import GENERATORS

        try:
            return GENERATORS.origin(name) if self.generator(name) is not None else "not installed"
        except KeyError:
            return "not installed"


def _newest(records: list[Record]) -> Record:
    return max(records, key=lambda r: str(r.provenance.get("created") or ""))


def build_tables(records: list[Record], plugins: PluginInfo | None = None,
                 stamps: dict[str, dict[str, Any]] | None = None) -> list[Table]:
    """Group records into tables and rows, compute the cells, mark best and ties;
    ``stamps`` (cell hash -> verification) mark the verified rows.

    Tables come out ordered by dataset, protocol, preset; superseded ones last."""
    plugins = plugins or PluginInfo()
    stamps = stamps or {}
    groups: dict[str, dict[str, Any]] = {}
    for rec in records:
        spec = rec.spec
        tkey = canonical_json([spec.dataset, spec.dataset_digest, spec.protocol, spec.protocol_version,
                               spec.preset.get("name"), spec.preset, spec.protocol_options,
                               *([spec.protocol_extra] if spec.protocol_extra else [])])  # other ood_folder files
        rkey = canonical_json([spec.generator, spec.generator_version, spec.generator_options,
                               spec.generator_extra])
        group = groups.setdefault(tkey, {"spec": spec, "rows": {}})
        group["rows"].setdefault(rkey, {}).setdefault(spec.seed, []).append(rec)

    flags = memorisation_flags(records)
    tables = []
    for tkey, group in groups.items():
        spec = group["spec"]
        rows = [_make_row(rkey, {seed: _newest(recs) for seed, recs in by_seed.items()}, plugins)
                for rkey, by_seed in group["rows"].items()]
        for row in rows:
            row.flags = list(flags.get((spec.dataset_digest, canonical_json(spec.preset), row.key), []))
            _verification(row, stamps, plugins)
        tables.append(_make_table(tkey, spec, rows, plugins))
    tables.sort(key=lambda t: (bool(t.stale), t.dataset, t.protocol, t.preset, t.options_label,
                               str(t.protocol_version)))
    return tables


COPY_MARGIN = 0.5
"""A generator is flagged as a memoriser when, in a copy check (``mia``'s, on a
generator fitted on a member half, or ``copies``', on the generator as fitted
for every protocol; pixel or feature space), at least this fraction of its
samples lie nearer a training image than 99% of held-out real images do (the
check's ``copy_quantile``, 0.01 by default). A generator that copies nothing
scores about 0.01; one that returns its training images scores 1.0. The
margin lets a model that memorises a little through (``realfake`` on digits: a
fifth of its samples in pixel space)."""

CONTAMINATION_MARGIN = 0.1
"""The same check against the test split flags a *contaminated* generator:
samples nearer a test image than 99% of real train images are (a web-scale
model may have seen a public test set; a released synthetic set may hold test
images). The margin is lower than a memoriser's because a classifier trained on
such samples is then tested on the images it was shown: a tenth of a training
set is enough to move top-1. Fresh samples score about 0.01 (the binomial noise
of 0.01 over the 400 samples of smoke digits is 0.005); the published
generators' ``mia`` records (five generators, digits and fashion-mnist, 3
seeds, both spaces) lie at 0.022 and below, their ``copies`` records at 0.017
and below on digits and 0.0033 and below on fashion-mnist."""

COPY_CHECKS = ("mia", "copies")
"""The protocols whose records carry ``copy_fraction_*`` and ``test_copy_fraction_*``."""


def row_key(spec: Any) -> str:
    """The board's key of the row a record's generator lands in (``Row.key``)."""
    return slug(spec.generator, canonical_json([spec.generator, spec.generator_version, spec.generator_options,
                                                spec.generator_extra]))


def flag_key(spec: Any) -> tuple[str, str, str]:
    """Where :func:`memorisation_flags` files a record's flags."""
    return spec.dataset_digest, canonical_json(spec.preset), row_key(spec)


def memorisation_flags(records: list[Record]) -> dict[tuple[str, str, str], list[str]]:
    """Flags by (dataset digest, preset, row key) from the copy checks' records
    (``COPY_CHECKS``), mean over seeds and the protocols that ran; the reference
    row (``real``, whose "samples" are the train images themselves) is never
    flagged."""
    checks = (("copy_fraction", COPY_MARGIN, "memorises: {:.0%} of its samples are nearer a training image than "
                                             "99% of held-out real images are ({} copy check; flagged from {:.0%})"),
              ("test_copy_fraction", CONTAMINATION_MARGIN,
               "contaminated: {:.0%} of its samples are nearer a test image than 99% of real train images are ({} "
               "copy check against the test split; flagged from {:.0%})"))
    values: dict[tuple[str, str, str], dict[str, list[tuple[str, float]]]] = {}
    for rec in records:
        s = rec.spec
        if s.protocol not in COPY_CHECKS or rec.status is not Status.OK or s.generator == "real":
            continue
        for prefix, _, _ in checks:
            frac = max((rec.metrics[k]["value"] for k in (f"{prefix}_pixel", f"{prefix}_feature")
                        if k in rec.metrics and finite(rec.metrics[k]["value"])), default=None)
            if frac is not None:
                values.setdefault(flag_key(s), {}).setdefault(
                    prefix, []).append((s.protocol, frac))
    out: dict[tuple[str, str, str], list[str]] = {}
    for key, by_check in values.items():
        for prefix, margin, text in checks:
            v = [frac for _, frac in by_check.get(prefix, [])]
            if v and sum(v) / len(v) >= margin:
                ran = {protocol for protocol, _ in by_check[prefix]}
                source = " and ".join(p for p in COPY_CHECKS if p in ran)
                out.setdefault(key, []).append(text.format(sum(v) / len(v), source, margin))
    return out


def _vouched(record: Record, stamp: dict[str, Any] | None) -> dict[str, Any] | None:
    """``stamp`` if it vouches for this very record: the stamp's record digest,
    where it keeps one, must be the record's (a cell computed again later, in
    the same store, is no longer the record that was verified)."""
    if stamp is None or ("record_digest" in stamp and stamp["record_digest"] != body_digest(record.body())):
        return None
    return stamp


def _verification(row: Row, stamps: dict[str, dict[str, Any]], plugins: PluginInfo) -> None:
    """Verified when every record of the row is covered by a stamp; unverified
    when it is not and its numbers came from outside (a third-party adapter, or
    pre-generated samples); nothing for the board's own built-in runs. The text
    says how many of the submission's cells the maintainers re-ran: ``verify``
    recomputes a random few and vouches for the rest through them."""
    covered = [_vouched(r, stamps.get(r.cell_hash)) for r in row.records]
    if covered and all(covered):
        latest = max(covered, key=lambda s: s.get("verified_at", ""))
        checked = (f"{latest['checked']} of its submission's {latest['cells']} cells"
                   if "checked" in latest and "cells" in latest else "cells of its submission")
        row.verification = "verified"
        row.verification_text = (f"verified: {checked} re-run by the maintainers and matched, with synthbench "
                                 f"{latest.get('synthbench_version')} on {latest.get('verified_at')}")
    elif row.generator == "samples" or plugins.origin(row.generator) != "built-in":
        row.verification = "unverified"
        row.verification_text = "unverified: no maintainer has re-run cells of this row (synthbench verify)"


def _make_row(rkey: str, by_seed: dict[int, Record], plugins: PluginInfo) -> Row:
    records = [by_seed[s] for s in sorted(by_seed)]
    spec = records[0].spec
    name = spec.generator
    options = dict(spec.generator_options)
    cls = plugins.generator(name)
    stale = ""
    if cls is not None:
        defaults = {k: _normalised(o.default) for k, o in getattr(cls, "options", {}).items()}
        shown = {k: v for k, v in options.items() if k not in defaults or _normalised(v) != defaults[k]}
        current = getattr(cls, "version", None)
        if current is not None and spec.generator_version not in (None, current):
            stale = f"generator v{spec.generator_version}; the installed {name} is v{current}"
    else:
        shown = options
    oracle = bool(getattr(cls, "oracle", False)) if cls is not None else name == "real"
    return Row(generator=name, generator_version=spec.generator_version, options=options,
               changed=shown, oracle=oracle, stale=stale, records=records, key=slug(name, rkey))


def _make_table(tkey: str, spec: CellSpec, rows: list[Row], plugins: PluginInfo) -> Table:
    name = spec.protocol
    options = dict(spec.protocol_options)
    metric_names: list[str] = []
    for row in rows:
        for rec in row.ok_records:
            for m in rec.metrics:
                if m not in metric_names:
                    metric_names.append(m)
    cls = plugins.protocol(name)
    headline, columns, declared, stale = None, None, [], ""
    declared_rules: dict[str, Any] = dict(getattr(cls, "metrics", {}) or {}) if cls is not None else {}
    description = source = ""
    if cls is not None:
        description, source = getattr(cls, "description", ""), getattr(cls, "source", "")
        headline = getattr(cls, "headline", None)
        declared = list(getattr(cls, "metrics", {}))
        try:
            columns = list(cls(**options).table_metrics())
        except Exception:  # options of another version: fall back to every metric
            columns = None
        current = getattr(cls, "version", None)
        if current is not None and spec.protocol_version not in (None, current):
            stale = f"protocol v{spec.protocol_version}; the installed {name} is v{current}"
    declared_options = getattr(cls, "options", None) if cls is not None else None
    default_options = isinstance(declared_options, dict) and {k: _normalised(v) for k, v in options.items()} == {
        k: _normalised(o.default) for k, o in declared_options.items()}
    ordered = _declared_order(metric_names, declared)
    cols = [c for c in (columns or []) if c in metric_names] or ordered
    instances = [c for c in cols if headline and headline not in metric_names and match(headline, c) is not None]
    if instances:
        # A template headline (recon's top1_t{t}) reads on its last instance in the declared order, the
        # largest value, in place: recon's first, t_re = 0, is the real split itself, the reference
        # classifier's accuracy in every generator's row, and ranked generators by noise.
        headline = instances[-1]
    elif headline not in metric_names:
        headline = cols[0] if cols else None
    if headline is not None and not instances:
        cols = [headline] + [c for c in cols if c != headline]
        ordered = [headline] + [c for c in ordered if c != headline]
    rules = {m: _rule(m, declared_rules, rows) for m in ordered}
    defaults = {r.generator for r in rows if not r.options_label and not r.stale}
    for row in rows:
        _fill_stats(row, ordered, rules)
        row.variant = bool(row.options_label) and row.generator in defaults and not row.oracle
    # a superseded table is kept for the record and never ranked: no star, tie, separation or saturation
    comparers = _mark(rows, ordered, rules) if not stale else {}
    rows.sort(key=lambda r: _row_order(r, headline))
    detectable, saturated = detectable_difference(rows, headline) if not stale else (None, False)
    return Table(dataset=spec.dataset, dataset_digest=spec.dataset_digest,
                 protocol=name, protocol_version=spec.protocol_version,
                 preset=preset_label(spec.preset), protocol_options=options,
                 columns=cols, all_metrics=ordered, headline=headline, description=description, source=source,
                 stale=stale, rows=rows, key=tkey, rules=rules, detectable=detectable, saturated=saturated,
                 comparers=comparers, default_options=default_options)


Z_DETECT = 1.959963984540054 + 0.8416212335729143
"""Two-sided 5% test at 80% power: a difference this many standard errors wide is detected."""


def detectable_difference(rows: list[Row], metric: str | None) -> tuple[float | None, bool]:
    """For an accuracy headline (a proportion over ``n`` test images, as the
    records' ``n`` says): the smallest difference between two generators that a
    two-sided 5% test detects with 80% power, ``2.80 * sqrt(q / (n k))`` over k
    seeds, and whether the table is *saturated*: the competing generators
    differ by less than that. ``q`` is the share of test images on which two
    generators' classifiers disagree about being right, measured from the
    records' per-image outcomes (mean over pairs and seeds) where they keep
    them, else ``2 p (1 - p)`` at the competing rows' mean accuracy p (two
    independent classifiers). Test-image noise only, so a lower bound: seeds add
    their own. (None, False) for other metrics. Digits has 359 test images: one
    image is 0.28 points."""
    if not metric or not RATIO_TO_REAL.search(metric):
        return None, False
    comp = [r for r in rows if is_ranked(r, metric)]
    ns = [rec.metrics[metric].get("n") for r in comp for rec in r.ok_records if metric in rec.metrics]
    ns = [n for n in ns if isinstance(n, int) and n > 0]
    if len(comp) < 2 or not ns:
        return None, False
    p = sum(r.stats[metric].mean for r in comp) / len(comp)
    k = min(r.stats[metric].seeds for r in comp) or 1
    n = min(ns)
    q = _discordance(comp, metric)
    q = 2 * p * (1 - p) if q is None else q
    mdd = Z_DETECT * math.sqrt(max(q, 1.0 / n) / (n * k))
    spread = max(r.stats[metric].mean for r in comp) - min(r.stats[metric].mean for r in comp)
    return mdd, spread < mdd


def _discordance(rows: list[Row], metric: str) -> float | None:
    """Mean share of test images on which two rows' outcomes differ, over every
    pair of rows and their common seeds; None without per-image outcomes."""
    from synthbench.leaderboard.paired import outcomes_by_seed

    outcomes = [outcomes_by_seed({r.spec.seed: r.metrics[metric] for r in row.ok_records if metric in r.metrics})
                for row in rows]
    shares = [float((a[s] != b[s]).mean()) for i, a in enumerate(outcomes) for b in outcomes[i + 1:]
              for s in set(a) & set(b) if len(a[s]) == len(b[s])]
    return sum(shares) / len(shares) if shares else None


def _declared_order(names: list[str], declared: list[str]) -> list[str]:
    """Metric names in the protocol's declared order; a declared ``top1_t{t}``
    template matches ``top1_t0``, ``top1_t30``...; the rest sorted after."""
    def rank(name: str) -> tuple[int, str, tuple[Any, ...]]:
        for i, pattern in enumerate(declared):
            values = match(pattern, name)
            if values is not None:
                return i, "", tuple((0, v, "") if isinstance(v, float) else (1, 0.0, v) for v in values)
        return len(declared), name, ()
    return sorted(names, key=rank)


def _rule(name: str, declared: dict[str, Any], rows: list[Row]) -> Any:
    """The declared ranking rule of ``name`` (a template's for its instances),
    else the direction its records carry (a protocol that is not installed)."""
    key = declared_key(declared, name) if declared else None
    if key is not None:
        return declared[key]
    for row in rows:
        for rec in row.ok_records:
            if name in rec.metrics and rec.metrics[name].get("higher_is_better") is not None:
                return bool(rec.metrics[name]["higher_is_better"])
    return None


def _fill_stats(row: Row, metric_names: list[str], rules: dict[str, Any]) -> None:
    for name in metric_names:
        entries = [r.metrics[name] for r in row.ok_records if name in r.metrics]
        if not entries:
            continue
        mean, half = mean_interval([e.get("value") for e in entries], entries[0].get("stderr"))
        rule = rules.get(name)
        values = [float(e["value"]) for e in entries if finite(e.get("value"))]
        if mean is None or rule is None:
            gap = None
        elif isinstance(rule, Target):
            gap = sum(abs(v - rule.value) for v in values) / len(values)
        else:
            gap = distance(rule, mean)
        row.stats[name] = Stat(mean=mean, half=half, seeds=len(values), of=len(row.ok_records), rule=rule, gap=gap)


def competing(row: Row) -> bool:
    """Whether a row takes part in a ranking: not the reference, not superseded,
    not a variant of a generator whose default row is there, not flagged."""
    return not (row.oracle or row.stale or row.variant or row.flags)


def is_ranked(row: Row, name: str) -> bool:
    """Whether ``row`` is ranked on the column ``name``: a competing row with a
    value reported by every one of its ok seeds (:attr:`Stat.partial`)."""
    stat = row.stats.get(name)
    return competing(row) and stat is not None and stat.mean is not None and not stat.partial


PAIRED, APART, NO_OUTCOMES, FEW_SEEDS, NOT_PAIRED = "paired", "apart", "no-outcomes", "few-seeds", "not-paired"
"""How a :class:`Comparer` decided a pair: by the paired test, or by the intervals and why."""

INTERVAL_REASONS = {
    APART: "intervals that lie apart settle a pair no paired test can take",
    NO_OUTCOMES: "these records keep no per-image outcomes",
    FEW_SEEDS: "the paired test needs two common seeds of the same test split",
    NOT_PAIRED: "the paired test covers higher- and lower-is-better metrics, not closest-to-a-target ones",
}


class Comparer:
    """Decides whether one row is better than another *beyond doubt* on one
    metric, and remembers how it decided (the table names its test).

    Beyond doubt means a better mean and, for a higher/lower-is-better metric
    whose records keep each test image's outcome, a paired bootstrap over the
    common seeds and the shared test images whose 95% interval of the
    difference excludes 0; where that test cannot run (no outcomes, fewer than
    two common seeds, a closest-to-a-target rule), 95% intervals that lie
    apart. The paired test decides whenever it can, intervals apart or not:
    the t intervals over seeds hold the spread between training runs only, not
    the test images' noise (every seed is scored on the same images), so rows
    whose seeds agree exactly (``0.9721 ± 0.0000``) lie apart from a row one
    test image behind, which the paired test does not separate."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.methods: set[str] = set()
        self._outcomes: dict[int, dict[int, Any]] = {}
        self._decided: dict[tuple[int, int], tuple[bool, str]] = {}

    def _per_image(self, row: Row) -> dict[int, Any]:
        if id(row) not in self._outcomes:
            from synthbench.leaderboard.paired import outcomes_by_seed

            self._outcomes[id(row)] = outcomes_by_seed(
                {r.spec.seed: r.metrics[self.metric] for r in row.ok_records if self.metric in r.metrics})
        return self._outcomes[id(row)]

    def better(self, a: Row, b: Row) -> tuple[bool, str]:
        """(``a`` clearly better than ``b``, how that reads)."""
        key = (id(a), id(b))
        if key not in self._decided:
            self._decided[key] = self._decide(a, b)
        return self._decided[key]

    def _decide(self, a: Row, b: Row) -> tuple[bool, str]:
        sa, sb = a.stats[self.metric], b.stats[self.metric]
        rule = sa.rule
        if rule is None or not better_gap(sa.gap, sb.gap):
            return False, ""
        oa = ob = None
        if isinstance(rule, bool):
            from synthbench.leaderboard.paired import paired_bootstrap

            oa, ob = self._per_image(a), self._per_image(b)
            result = paired_bootstrap(oa, ob) if oa and ob else None
            if result is not None:
                self.methods.add(PAIRED)
                text = (f"paired difference {result.diff:+.4f}, 95% [{result.low:+.4f}, {result.high:+.4f}] "
                        f"over {result.seeds} seeds x {result.n} test images")
                return result.significant and (result.diff > 0) == rule, text
        if not sa.overlaps(sb) and sa.half is not None and sb.half is not None:
            self.methods.add(APART)
            return True, "95% intervals apart"
        if not isinstance(rule, bool):
            self.methods.add(NOT_PAIRED)
        else:
            self.methods.add(FEW_SEEDS if oa and ob else NO_OUTCOMES)
        return False, "95% intervals overlap"


def _mark(rows: list[Row], metric_names: list[str], rules: dict[str, Any]) -> dict[str, Comparer]:
    """Best per column among competing rows under the column's rule; a row the
    best does not beat beyond doubt (:class:`Comparer`) is tied with it; a
    diagnostic or a constant column marks nothing. Returns the comparers of the
    columns it marked (the headline's ranks reuse their decisions)."""
    comparers = {}
    for name in metric_names:
        rule = rules.get(name)
        candidates = [r for r in rows if is_ranked(r, name)]
        if rule is None or len(candidates) < 2 or all(same_value(r.stats[name].mean, candidates[0].stats[name].mean)
                                                       for r in candidates):
            continue
        compare = comparers[name] = Comparer(name)
        best = min(candidates, key=lambda r: r.stats[name].gap)
        top = best.stats[name].gap
        for row in candidates:  # equally close share "best"
            stat = row.stats[name]
            if same_value(stat.gap, top):
                stat.mark = "best"
                continue
            beaten, how = compare.better(best, row)
            stat.mark, stat.versus_best = ("" if beaten else "tie"), (f"vs best: {how}" if how else "")
    return comparers


def _row_order(row: Row, headline: str | None) -> tuple:
    """Oracle first (the line everything is read against), then by headline, best
    first, flagged rows after the ranked ones; rows without a value (failed,
    unsupported) last."""
    stat = row.stats.get(headline) if headline else None
    has = stat is not None and stat.mean is not None
    score = 0.0
    if has:
        score = stat.gap if stat.gap is not None else -stat.mean
    return (not row.oracle, bool(row.stale), row.variant, not has, bool(row.flags), score, row.generator,
            row.options_label)


def by_dataset(tables: list[Table]) -> list[tuple[str, list[Table]]]:
    """Current tables grouped by dataset, in table order."""
    out: dict[str, list[Table]] = {}
    for t in tables:
        if not t.stale:
            out.setdefault(t.dataset, []).append(t)
    return list(out.items())


# --------------------------------------------------------------------------- the headline


@dataclass
class HeadlineCell:
    """One generator's headline score under one protocol, and its rank there."""

    text: str
    value: float | None
    """What the cell sorts by (the ratio to real where that is how it reads)."""
    rank: int | None = None
    rank_range: tuple[int, int] | None = None
    """Best and worst rank the intervals allow: others clearly better (intervals
    apart) always rank above, others that tie may rank either side."""
    mark: str = ""


@dataclass
class HeadlineRow:
    generator: str
    label: str
    oracle: bool
    flags: list[str]
    cells: dict[str, HeadlineCell]
    wall_s: float
    mean_rank: float | None = None
    rank_span: tuple[float, float] | None = None
    """The mean over protocols of the best and of the worst rank each allows."""


@dataclass
class Headline:
    """Generators x protocols of one dataset and preset: each protocol's headline
    metric, the mean rank across protocols with the range the intervals allow,
    cost and flags (HELM's core table and the Open LLM Leaderboard's average,
    with the uncertainty of each rank shown)."""

    dataset: str
    preset: str
    columns: list[tuple[str, str, str]]
    """(protocol, metric shown, how it reads) per column, with its table's anchor."""
    anchors: dict[str, str]
    rows: list[HeadlineRow]

    @property
    def anchor(self) -> str:
        return slug(f"headline-{self.dataset}-{self.preset}")


RATIO_TO_REAL = re.compile(r"(^|_)top1($|_)")
"""Headline metrics read as utility relative to real data: accuracies."""


def _clearly_better(a: Stat, b: Stat) -> bool:
    """``a`` beats ``b`` beyond doubt: a better mean and intervals that do not overlap."""
    return better_gap(a.gap, b.gap) and not a.overlaps(b)


def build_headlines(tables: list[Table]) -> list[Headline]:
    """One headline per dataset x preset from the current tables: the default row
    of each generator (variants and superseded rows left out), each protocol's
    headline metric (as a ratio to ``real`` for accuracies), per-protocol ranks
    among competing rows with the range their intervals allow, and the mean."""
    groups: dict[tuple[str, str], list[Table]] = {}
    for t in tables:
        if not t.stale and t.headline and t.rules.get(t.headline) is not None:
            groups.setdefault((t.dataset, t.preset), []).append(t)
    out = []
    for (dataset, preset), group in groups.items():
        by_protocol: dict[str, Table] = {}
        for t in group:  # one table per protocol: the one with the default options, else the largest
            have = by_protocol.get(t.protocol)
            if have is None or t.representative > have.representative:
                by_protocol[t.protocol] = t
        rows: dict[str, HeadlineRow] = {}
        columns = []
        for name in sorted(by_protocol):
            t = by_protocol[name]
            metric, rule = t.headline, t.rules[t.headline]
            real = next((r.stats.get(metric) for r in t.rows if r.oracle and not r.stale), None)
            as_ratio = bool(RATIO_TO_REAL.search(metric)) and real is not None and bool(real.mean)
            columns.append((name, f"{metric} / real" if as_ratio else metric,
                            "ratio to real, higher is better" if as_ratio else rule_text(rule)))
            for r in t.rows:
                if r.stale or r.variant:
                    continue
                row = rows.setdefault(r.key, HeadlineRow(r.generator, r.label, r.oracle, list(r.flags), {}, 0.0))
                row.wall_s += r.wall_s
                s = r.stats.get(metric)
                if s is None or s.mean is None:
                    row.cells[name] = HeadlineCell("n/a" if r.status == "ok" else r.status.replace("unsupported",
                                                                                                    "not supported"),
                                                   None)
                    continue
                if as_ratio:
                    value, half = s.mean / real.mean, (s.half / real.mean if s.half is not None else None)
                else:
                    value, half = s.mean, s.half
                row.cells[name] = HeadlineCell(fmt(value, half) + s.coverage, value, mark=s.mark)
            competing_rows = [r for r in t.rows if is_ranked(r, metric)]
            compare = t.comparers.get(metric)
            clearly_better = ((lambda a, b: compare.better(a, b)[0]) if compare is not None
                              else (lambda a, b: _clearly_better(a.stats[metric], b.stats[metric])))
            for r in competing_rows:
                s = r.stats[metric]
                better = sum(1 for o in competing_rows if o is not r and better_gap(o.stats[metric].gap, s.gap))
                clearly = sum(1 for o in competing_rows if o is not r and clearly_better(o, r))
                not_worse = sum(1 for o in competing_rows if o is not r and not clearly_better(r, o))
                cell = rows[r.key].cells[name]
                cell.rank, cell.rank_range = better + 1, (clearly + 1, not_worse + 1)
        for row in rows.values():
            ranked = [c for c in row.cells.values() if c.rank is not None]
            if ranked and not row.oracle and not row.flags:
                row.mean_rank = sum(c.rank for c in ranked) / len(ranked)
                row.rank_span = (sum(c.rank_range[0] for c in ranked) / len(ranked),
                                 sum(c.rank_range[1] for c in ranked) / len(ranked))
        ordered = sorted(rows.values(), key=lambda r: (not r.oracle, r.mean_rank is None,
                                                       r.mean_rank if r.mean_rank is not None else 0.0, r.label))
        out.append(Headline(dataset, preset, columns, {n: t.anchor for n, t in by_protocol.items()}, ordered))
    out.sort(key=lambda h: (h.dataset, h.preset))
    return out
