"""What the board's numbers rest on: one provenance per table, what they cost,
and how many generator pairs each table can tell apart.

A table is only a fair comparison when its rows were computed the same way.
Trained weights differ between CPU thread counts (a reduction sums in another
order) and between precisions, so a table that mixes them compares runs that
would not reproduce each other; a row with fewer seeds than its neighbours has
a wider interval and a different chance of a lucky draw. ``synthbench
leaderboard`` prints a warning for each, and the findings page repeats them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from synthbench.benchmark.cell import COST_PHASES, Record, Status
from synthbench.leaderboard.aggregate import Table, finite, is_ranked


SETTLED = (Status.OK, Status.UNSUPPORTED)
"""A seed that says all it will: a score, or that the generator cannot take part
(``real`` under ``recon``). A failed seed is missing evidence."""


def device_threads(device: str | None) -> int | None:
    """The CPU thread count a ``cost.device`` text names (``cpu (x86_64, 2 threads)``), or None."""
    m = re.search(r"(\d+) threads?\)", device or "")
    return int(m.group(1)) if m else None


def threads(rec: Record) -> int | None:
    """The CPU thread count a record ran at; None on a GPU or when unsaid."""
    return device_threads(str(rec.cost.get("device") or "")) if rec.spec.device_type == "cpu" else None


def precision(rec: Record) -> str:
    return str(rec.spec.preset.get("precision") or "fp32")


def _where(table: Table) -> str:
    return f"{table.dataset} {table.protocol} ({table.preset}{', ' + table.options_label if table.options_label else ''})"


def provenance_warnings(tables: list[Table]) -> list[str]:
    """One line per current table whose rows were computed in different ways
    (several thread counts or device kinds, or rows with fewer seeds than the
    table's most complete row), and one when the board's tables were computed
    at different precisions (a preset's precision keys its own table)."""
    out = []
    by_precision: dict[str, list[str]] = {}
    for t in tables:
        if not t.stale:
            for p in {precision(r) for row in t.rows if not row.stale for r in row.records}:
                by_precision.setdefault(p, []).append(_where(t))
    if len(by_precision) > 1:  # the preset (and so its precision) keys a table: the mix is across tables
        out.append("the board mixes precisions: " + "; ".join(
            f"{p} in {', '.join(where)}" for p, where in sorted(by_precision.items())) + ".")
    short: dict[tuple, list[Table]] = {}  # (dataset, preset, row, seeds, table's most) -> its tables
    for t in tables:
        if t.stale:
            continue
        recs = [r for row in t.rows if not row.stale for r in row.records]
        counts = sorted({n for n in map(threads, recs) if n is not None})
        if len(counts) > 1:
            out.append(f"{_where(t)} mixes records trained at {', '.join(map(str, counts))} CPU threads "
                       f"(trained weights differ between thread counts).")
        devices = sorted({r.spec.device_type for r in recs})
        if len(devices) > 1:
            out.append(f"{_where(t)} mixes devices {', '.join(devices)}.")
        rows = [row for row in t.rows if not row.stale]
        done = {row.key: sum(1 for r in row.records if r.status in SETTLED) for row in rows}
        most = max(done.values(), default=0)
        for row in rows:
            if done[row.key] < most:
                short.setdefault((t.dataset, t.preset, row.label, done[row.key], most), []).append(t)
    # A row still computing is short in every protocol at once: one line for it, not one per table.
    current = [t for t in tables if not t.stale]
    for (dataset, preset, label, n, most), where in short.items():
        out.append(f"{dataset} ({preset}): {label} has {n} of {most} seeds computed (failed seeds not counted) "
                   f"in {', '.join(_table_name(t, current) for t in where)}.")
    return out


def _table_name(table: Table, current: list[Table]) -> str:
    """A table's protocol, with its options only where another current table of
    the same dataset, preset and protocol needs telling apart from it."""
    twins = [t for t in current if (t.dataset, t.preset, t.protocol) == (table.dataset, table.preset, table.protocol)]
    return f"{table.protocol} ({table.options_label})" if len(twins) > 1 and table.options_label else table.protocol


def provenance_text(tables: list[Table]) -> str:
    """The thread counts, precisions and devices of the current tables' records, in words."""
    recs = [r for t in tables if not t.stale for row in t.rows if not row.stale for r in row.records]
    counts = sorted({n for n in map(threads, recs) if n is not None})
    parts = [f"{len(recs)} current records"]
    if counts:
        parts.append(f"CPU records at {', '.join(map(str, counts))} thread{'s' if counts != [1] else ''}")
    parts.append(f"precision {', '.join(sorted(set(map(precision, recs)))) or 'n/a'}")
    parts.append(f"device {', '.join(sorted({r.spec.device_type for r in recs})) or 'n/a'}")
    cpus = Counter(r.provenance.get("cpu") for r in recs if r.spec.device_type == "cpu")
    if any(cpus):  # named in records since provenance had a `cpu` field: fp32 bytes repeat on one kind only
        parts.append("CPUs " + ", ".join(f"{name or 'not recorded'} ({n})" for name, n in
                                         sorted(cpus.items(), key=lambda kv: (kv[0] is None, str(kv[0])))))
    return "; ".join(parts)


@dataclass
class CostTable:
    """CPU-hours (wall seconds x threads; GPU records in wall hours) per
    generator x protocol of one dataset and preset."""

    dataset: str
    preset: str
    protocols: list[str]
    hours: dict[str, dict[str, float]] = field(default_factory=dict)
    """generator -> protocol -> hours."""

    @property
    def generators(self) -> list[str]:
        return sorted(self.hours, key=lambda g: (g != "real", g))

    def row_total(self, generator: str) -> float:
        return sum(self.hours[generator].values())

    def column_total(self, protocol: str) -> float:
        return sum(by.get(protocol, 0.0) for by in self.hours.values())

    @property
    def total(self) -> float:
        return sum(self.row_total(g) for g in self.hours)


def record_hours(rec: Record) -> float:
    """The compute a record charges, in CPU-hours at its thread count (wall hours
    off the CPU or when the count is unsaid)."""
    wall = rec.cost.get("wall_s") or {}
    seconds = sum(float(v) for k, v in wall.items() if k in COST_PHASES and finite(v))
    return seconds * (threads(rec) or 1) / 3600.0


def cost_tables(tables: list[Table]) -> list[CostTable]:
    """CPU-hours of the current tables' records, by dataset x preset, generator
    (ablation arms summed under their generator) and protocol."""
    out: dict[tuple[str, str], CostTable] = {}
    for t in tables:
        if t.stale:
            continue
        ct = out.setdefault((t.dataset, t.preset), CostTable(t.dataset, t.preset, []))
        if t.protocol not in ct.protocols:
            ct.protocols.append(t.protocol)
        for row in t.rows:
            if row.stale:
                continue
            cell = ct.hours.setdefault(row.generator, {})
            cell[t.protocol] = cell.get(t.protocol, 0.0) + sum(record_hours(r) for r in row.records)
    for ct in out.values():
        ct.protocols.sort()
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True)
class Separation:
    """How many pairs of competing generators a table's headline tells apart."""

    separated: int
    pairs: int
    method: str

    @property
    def text(self) -> str:
        return f"{self.separated} of {self.pairs} generator pair{'s' if self.pairs != 1 else ''}"


def separation(table: Table) -> Separation | None:
    """Pairs of competing rows whose headline differs beyond doubt, by the same
    test that marks ties (the paired bootstrap where the records keep per-image
    outcomes, else the intervals). None for a table with no ranked headline or
    fewer than two competing rows."""
    metric = table.headline
    compare: Any = table.comparers.get(metric) if metric else None
    if compare is None:
        return None
    rows = [r for r in table.rows if is_ranked(r, metric)]
    pairs = list(combinations(rows, 2))
    if not pairs:
        return None
    separated = sum(1 for a, b in pairs if compare.better(a, b)[0] or compare.better(b, a)[0])
    return Separation(separated, len(pairs), table.test_text(metric))
