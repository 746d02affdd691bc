"""``synthbench regress``: recompute a small fixed grid and compare it with a baseline.

The suite (``configs/regress.yaml``) names a dataset, a preset, seeds, the
generators and the protocols (each with options), and per-metric tolerances.
The baseline (``configs/regress-baseline/<suite name>.json``) is a compact,
committed file: every metric's value per cell ``generator/protocol/seed<S>``,
each cell's status, and the plugin versions it was computed with.

A metric *drifts* when ``|current - baseline| > max(abs, rel * |baseline|)`` for
its tolerance (the first pattern in ``tolerance.metrics`` that matches
``protocol.metric`` or ``metric``, else ``tolerance.default``). A cell whose status
changed, a metric that appeared or vanished, a cell missing on either side, a
suite changed since the baseline was written, and a plugin whose version differs
from the baseline's all count as drift: a change that moves scores on purpose
bumps the plugin's version and regenerates the baseline (``--update-baseline``)
in the same commit, so the baseline always says which code produced it.

The grid is recomputed in a fresh temporary result store (never a stale
cache), on the CPU with a fixed thread count, so the same kind of machine
gives the same numbers; the tolerances absorb floating-point noise across
CPUs, not real changes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synthbench.benchmark.cache import canonical_json
from synthbench.errors import UserError

BASELINE_FORMAT = 1


@dataclass(frozen=True)
class Tolerance:
    """Allowed movement: ``max(abs, rel * |baseline|)``."""

    abs: float = 0.0
    rel: float = 0.0

    def allowed(self, baseline: float) -> float:
        return max(self.abs, self.rel * abs(baseline))

    def text(self) -> str:
        parts = ([f"abs {self.abs:g}"] if self.abs else []) + ([f"rel {self.rel:g}"] if self.rel else [])
        return " / ".join(parts) or "exact"


@dataclass(frozen=True)
class Suite:
    """A parsed, validated suite file."""

    path: Path
    name: str
    dataset: str
    preset: str
    seeds: tuple[int, ...]
    device: str
    threads: int | None
    generators: dict[str, dict[str, Any]]
    protocols: dict[str, dict[str, Any]]
    default_tolerance: Tolerance
    tolerances: tuple[tuple[str, Tolerance], ...]

    @property
    def digest(self) -> str:
        """What determines the numbers (not the tolerances): a baseline written for
        another grid must not pass as this one's."""
        grid = {"dataset": self.dataset, "preset": self.preset, "seeds": list(self.seeds), "device": self.device,
                "threads": self.threads, "generators": self.generators, "protocols": self.protocols}
        return hashlib.sha256(canonical_json(grid).encode()).hexdigest()

    def tolerance(self, protocol: str, metric: str) -> Tolerance:
        """The first pattern matching ``protocol.metric`` or the bare metric name
        (metric names may hold dots, e.g. ``tpr@0.01``, so both are tried): a
        pattern like ``*fid*`` would also catch every ``fidelity.*`` metric."""
        for pattern, tol in self.tolerances:
            if fnmatch.fnmatchcase(f"{protocol}.{metric}", pattern) or fnmatch.fnmatchcase(metric, pattern):
                return tol
        return self.default_tolerance


def _bad(path: Path, what: str) -> UserError:
    return UserError(f"The regression suite {path} is invalid: {what}. Fix the file (configs/regress.yaml "
                     f"shows the format).")


def _tolerance(path: Path, where: str, raw: Any) -> Tolerance:
    if not isinstance(raw, dict) or not raw or set(raw) - {"abs", "rel"}:
        raise _bad(path, f"{where} must be a mapping with abs and/or rel, e.g. {{abs: 0.02}}")
    try:
        tol = Tolerance(abs=float(raw.get("abs", 0.0)), rel=float(raw.get("rel", 0.0)))
    except (TypeError, ValueError):
        raise _bad(path, f"{where}: abs and rel must be numbers") from None
    if tol.abs < 0 or tol.rel < 0 or not (math.isfinite(tol.abs) and math.isfinite(tol.rel)):
        raise _bad(path, f"{where}: abs and rel must be finite and >= 0")
    return tol


def load_suite(path: str | Path) -> Suite:
    """Read and check a regression suite (a suite file, ``benchmark/suite.py``,
    with one dataset and tolerances); every problem is a :class:`UserError`."""
    from synthbench.benchmark.suite import load_suite as load_any_suite

    path = Path(path)
    try:
        base = load_any_suite(path, flag="--suite")
    except UserError as exc:
        if "no such file" in str(exc):
            raise UserError(f"--suite {path}: no such file. Run from the repository root (the default is "
                            f"configs/regress.yaml) or give --suite the suite's path.") from None
        raise
    if len(base.datasets) != 1:
        raise _bad(path, "a regression suite names one dataset")
    for key, given in (("generators", base.generators), ("protocols", base.protocols)):
        arms = [name for name, opts in given.items() if isinstance(opts, list)]
        if arms:  # the baseline keys its cells by generator/protocol/seed: two arms would overwrite each other
            raise _bad(path, f"{key}.{arms[0]} gives a list of option mappings; a regression suite gives one "
                             f"mapping per name (put each arm under its own suite)")
    data = base.raw
    tol = data.get("tolerance") or {}
    if not isinstance(tol, dict) or set(tol) - {"default", "metrics"}:
        raise _bad(path, "tolerance must be a mapping with default and metrics")
    default = _tolerance(path, "tolerance.default", tol.get("default", {"abs": 0.0}) or {"abs": 0.0})
    patterns = tol.get("metrics") or {}
    if not isinstance(patterns, dict):
        raise _bad(path, "tolerance.metrics must map metric patterns to {abs, rel}")
    return Suite(
        path=path, name=base.name, dataset=base.datasets[0], preset=str(data.get("preset", "smoke")),
        seeds=base.seeds, device=str(data.get("device", "cpu")), threads=base.threads,
        generators=base.generators, protocols=base.protocols, default_tolerance=default,
        tolerances=tuple((str(p), _tolerance(path, f"tolerance.metrics[{p!r}]", t)) for p, t in patterns.items()),
    )


def baseline_path(suite: Suite, baseline_dir: str | Path | None) -> Path:
    folder = Path(baseline_dir) if baseline_dir else suite.path.parent / "regress-baseline"
    return folder / f"{suite.name}.json"


def read_baseline(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"No baseline at {path}. Write one with `synthbench regress --update-baseline` (it "
                        f"recomputes the suite), check the numbers and commit it; or give --baseline the folder "
                        f"that holds it.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"The baseline {path} is unreadable ({type(exc).__name__}: {exc}). Restore it from "
                        f"version control or regenerate it with `synthbench regress --update-baseline`.") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), dict) or data.get("format") != BASELINE_FORMAT:
        raise UserError(f"The baseline {path} is not a synthbench regression baseline (format "
                        f"{BASELINE_FORMAT}). Regenerate it with `synthbench regress --update-baseline`.")
    return data


def cell_key(generator: str, protocol: str, seed: int) -> str:
    return f"{generator}/{protocol}/seed{seed}"


def compute(suite: Suite, results: str | Path | None = None, executor: Any = None) -> dict[str, Any]:
    """Run the suite's grid (on ``executor``, default inline) and return it in the
    baseline's form (nothing compared yet)."""
    import torch

    from synthbench.benchmark.provenance import cpu_model, device_name
    from synthbench.benchmark.runner import make_grid, run_grid
    from synthbench.benchmark.store import ResultStore

    grid = make_grid(suite.generators, suite.protocols, suite.dataset, suite.preset, suite.seeds, suite.device,
                     with_real=False, where=f"in suite {suite.path}")
    threads_before = torch.get_num_threads()
    if suite.threads:
        torch.set_num_threads(suite.threads)
    threads_used = torch.get_num_threads()
    device = device_name(grid.device)  # named at the suite's thread count, before it is restored below
    cells: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="synthbench-regress-") as tmp:
            for outcome in run_grid(grid, ResultStore(results if results else tmp), executor=executor):
                rec, spec = outcome.record, outcome.spec
                cells[cell_key(spec.generator, spec.protocol, spec.seed)] = {
                    "status": rec.status.value if rec else "missing",
                    "error": rec.error if rec else None,
                    "metrics": {name: m.get("value") for name, m in sorted((rec.metrics if rec else {}).items())},
                }
    finally:
        torch.set_num_threads(threads_before)
    return {
        "format": BASELINE_FORMAT,
        "suite": suite.name,
        "suite_digest": suite.digest,
        "dataset": suite.dataset,
        "dataset_digest": grid.dataset.digest,
        "preset": suite.preset,
        "plugins": {**{f"generator:{g.name}": g.cls.version for g in grid.generators},
                    **{f"protocol:{p.name}": p.cls.version for p in grid.protocols}},
        "environment": {"synthbench": _version(), "torch": torch.__version__, "threads": threads_used,
                        "device": device,
                        **({"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
                           if grid.device.type == "cpu" else {})},
        "cells": cells,
    }


def _version() -> str:
    import synthbench

    return synthbench.__version__


def write_baseline(path: Path, suite: Suite, current: dict[str, Any]) -> Path:
    from synthbench.benchmark.atomic import atomic_write_json

    data = dict(current, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                note=f"Written by `synthbench regress --suite {suite.path} --update-baseline`; regenerate it together "
                     f"with a plugin version bump whenever a change moves scores on purpose.")
    try:
        return atomic_write_json(path, data)
    except OSError as exc:
        raise UserError(f"Cannot write the baseline {path} ({exc.strerror or exc}). Give --baseline a folder you "
                        f"can write to.") from None


# --------------------------------------------------------------------------- comparison


@dataclass
class Line:
    """One compared value."""

    cell: str
    metric: str
    baseline: Any
    current: Any
    tolerance: str
    verdict: str
    """``same``, ``within tolerance``, or a drift: ``DRIFT``, ``status changed``,
    ``missing``, ``new``."""

    @property
    def drift(self) -> bool:
        return self.verdict not in ("same", "within tolerance")

    @property
    def delta(self) -> float | None:
        if _num(self.baseline) and _num(self.current):
            return float(self.current) - float(self.baseline)
        return None


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Drift that is not one metric: versions, suite, dataset."""
    cells: int = 0
    """Cells compared (the union of both sides)."""
    machines: str | None = None
    """Where the baseline and this run were computed, when that differs: not
    drift, but what tells a reader why values moved within tolerance."""

    @property
    def drifted(self) -> bool:
        return bool(self.notes) or any(line.drift for line in self.lines)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same_missing(a: Any, b: Any) -> bool:
    """None and NaN (JSON null / NaN) both mean 'no value': equal to each other."""
    def empty(v: Any) -> bool:
        return v is None or (_num(v) and math.isnan(v))
    return empty(a) and empty(b)


def compare(suite: Suite, baseline: dict[str, Any], current: dict[str, Any]) -> Report:
    """Every metric of every cell against the baseline, with the suite's tolerances."""
    report = Report()
    if baseline.get("suite_digest") != current.get("suite_digest"):
        report.notes.append("the suite's grid (dataset, preset, seeds, generators, protocols or options) changed "
                            "since the baseline was written")
    if baseline.get("dataset_digest") != current.get("dataset_digest"):
        report.notes.append(f"dataset {current.get('dataset')} digest changed: "
                            f"{str(baseline.get('dataset_digest'))[:12]} -> {str(current.get('dataset_digest'))[:12]}")
    old_versions, new_versions = baseline.get("plugins") or {}, current.get("plugins") or {}
    for plugin in sorted(set(old_versions) | set(new_versions)):
        old, new = old_versions.get(plugin), new_versions.get(plugin)
        if old != new:
            report.notes.append(f"{plugin.replace(':', ' ')} is v{new} but the baseline was written with v{old}: "
                                f"regenerate the baseline (--update-baseline) with the version bump")
    report.machines = _machines(baseline.get("environment") or {}, current.get("environment") or {})
    old_cells, new_cells = baseline.get("cells") or {}, current.get("cells") or {}
    report.cells = len(set(old_cells) | set(new_cells))
    for key in sorted(set(old_cells) | set(new_cells)):
        protocol = key.split("/")[1] if key.count("/") >= 2 else ""
        old, new = old_cells.get(key), new_cells.get(key)
        if old is None or new is None:
            report.lines.append(Line(key, "(cell)", "absent" if old is None else old.get("status"),
                                     "absent" if new is None else new.get("status"), "", "new" if old is None
                                     else "missing"))
            continue
        if old.get("status") != new.get("status"):
            report.lines.append(Line(key, "status", old.get("status"), f"{new.get('status')}"
                                     + (f" ({new.get('error')})" if new.get("error") else ""), "", "status changed"))
        old_m, new_m = old.get("metrics") or {}, new.get("metrics") or {}
        for metric in sorted(set(old_m) | set(new_m)):
            tol = suite.tolerance(protocol, metric)
            a, b = old_m.get(metric, "absent"), new_m.get(metric, "absent")
            if metric not in new_m or metric not in old_m:
                verdict = "missing" if metric not in new_m else "new"
            elif _same_missing(a, b) or a == b:
                verdict = "same"
            elif _num(a) and _num(b) and math.isfinite(a) and math.isfinite(b):
                verdict = "within tolerance" if abs(b - a) <= tol.allowed(a) else "DRIFT"
            else:
                verdict = "DRIFT"
            report.lines.append(Line(key, metric, a, b, tol.text(), verdict))
    return report


MACHINE_KEYS = ("torch", "device", "cpu", "cpu_capability")


def _machine_text(env: dict[str, Any]) -> str:
    text = f"torch {env.get('torch', '?')}, {env.get('device', '?')}"
    if env.get("cpu"):
        text += f", {env['cpu']}"
    if str(env.get("device", "")).startswith("cpu"):
        text += f", {env['cpu_capability']} kernels" if env.get("cpu_capability") else ", kernels not recorded"
    return text


def _machines(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """One line naming both machines when they differ. fp32 smoke numbers repeat
    bitwise only with the same torch on the same kind of CPU (torch dispatches
    its kernels by instruction set: ``torch.backends.cpu.get_cpu_capability()``),
    so this is the first thing to read beside values that moved."""
    if all(old.get(k) == new.get(k) for k in MACHINE_KEYS):
        return None
    return (f"baseline computed with {_machine_text(old)}; this run with {_machine_text(new)}: across machines "
            f"values may move, and the suite's tolerances were sized on such moves")


def _cell_text(v: Any) -> str:
    if _num(v):
        return f"{v:.6g}"
    return str(v)


def render(report: Report, show_all: bool = False) -> str:
    """The table of what moved (every metric with ``show_all``), then a summary."""
    from tabulate import tabulate

    shown = [line for line in report.lines if show_all or line.verdict != "same"]
    out = []
    if shown:
        rows = [[line.cell, line.metric, _cell_text(line.baseline), _cell_text(line.current),
                 "" if line.delta is None else f"{line.delta:+.3g}", line.tolerance, line.verdict]
                for line in shown]
        out.append(tabulate(rows, headers=["cell", "metric", "baseline", "now", "delta", "tolerance", "verdict"],
                            tablefmt="github"))
    for note in report.notes:
        out.append(f"DRIFT: {note}")
    if report.machines:
        out.append(f"machines: {report.machines}")
    drifted = sum(line.drift for line in report.lines)
    moved = sum(line.verdict == "within tolerance" for line in report.lines)
    verdict = "FAIL" if report.drifted else "ok"
    out.append(f"regress {verdict}: {len(report.lines)} values in {report.cells} cells; {drifted} drifted, "
               f"{moved} moved within tolerance, {len(report.notes)} suite/version notes.")
    return "\n".join(out)
