"""Cached work done by a cell's killed run, charged to the cell when it runs again.

A cell computes artefacts on its way to a record: classifiers, reconstructions,
features, corruption-suite accuracies. Each is kept in the disk cache as soon as
it is done (``cache.py``). When the worker is killed before the record lands (a
pre-emption, a time limit, the end of a session), the next run of the cell finds
those files and spends nothing on them. Its record would then say the cell cost
minutes when it cost hours, and the board's CPU-hours, which sum the records'
``cost``, would be too low.

So a file computed inside a cell carries the cell's key and the seconds it took
(``cache.MADE_KEY``, covered by the file's digest). A later run of the same cell
that reads it adds those seconds to the record as ``resumed_s``. It is outside
``cell_s``, like ``fit_s``, because this run did not spend it. A file read by
another cell (``ood`` reusing ``replace``'s classifiers) is charged to no one
there: the cell that made it pays for it. Fits, pools and reference classifiers
are tasks of their own, which ``tasks.py`` charges through their markers. A fit
resumed from its snapshot counts the training before the kill
(``snapshots.py``), and a pool task the blocks a killed run generated
(``sample_cache.py``).

The current cell is process-wide, not per thread: a worker runs one cell at a
time, and adapter calls may run on a watchdog thread (``guard.py``).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass
class Charge:
    """The cell being computed in this process, and what it found of its own earlier run."""

    cell: str
    resumed_s: float = 0.0
    counted: set[str] = field(default_factory=set)
    """Files already charged, or computed by this run: each is counted at most once."""


_current: Charge | None = None

_before_kill: dict[str, float] = {}
"""Training seconds a killed run spent on a file being computed, read from its
snapshot (``snapshots.py``), by the snapshot's path."""

_resumed_total = 0.0
"""Training seconds of killed runs that this process's trainings went on from:
a task charges what grew while it ran (:func:`spent`)."""


@contextmanager
def charging(charge: Charge) -> Iterator[Charge]:
    """Charge the cached work of ``charge.cell``'s earlier runs to it while inside."""
    global _current
    outer, _current = _current, charge
    try:
        yield charge
    finally:
        _current = outer


def current() -> Charge | None:
    """The cell being computed in this process (None: a task's work, or none)."""
    return _current


def resumed_training(snapshot: Path, seconds: float) -> None:
    """A training loop went on from ``snapshot``, which holds ``seconds`` of a
    killed run's training: charge them to the current cell, and count them in
    the note of the file the snapshot belongs to when it is written."""
    global _resumed_total
    if seconds > 0:
        _before_kill[str(snapshot)] = _before_kill.get(str(snapshot), 0.0) + seconds
        _resumed_total += seconds
        if _current is not None:
            _current.resumed_s += seconds


@dataclass
class Spent:
    """What a block of work cost: see :func:`spent`."""

    seconds: float = 0.0


@contextmanager
def spent() -> Iterator[Spent]:
    """Times a block of work outside any cell (a fit, a reference classifier):
    its wall seconds plus the training a killed run did before the snapshots
    the block went on from, so the task charges all the work."""
    out, start, resumed = Spent(), time.perf_counter(), _resumed_total
    try:
        yield out
    finally:
        out.seconds = time.perf_counter() - start + _resumed_total - resumed


def made_here(path: Path, snapshot: Path, seconds: float) -> str | None:
    """What the file ``path``, computed now in ``seconds`` (resumed, maybe, from
    ``snapshot``), records of its making (None: outside a cell); a later read in
    this run does not count it again."""
    seconds += _before_kill.pop(str(snapshot), 0.0)
    if _current is None:
        return None
    _current.counted.add(str(path))
    return json.dumps({"cell": _current.cell, "seconds": round(seconds, 3)}, sort_keys=True)


def read_back(path: Path, made: str | None) -> None:
    """A cached file was read: if an earlier run of the current cell made it,
    charge its seconds to this cell (once)."""
    if _current is None or not made or str(path) in _current.counted:
        return
    try:
        info = json.loads(made)
        cell, seconds = info["cell"], float(info["seconds"])
    except (ValueError, KeyError, TypeError):
        return  # the digest checked the file; an odd note only costs the charge
    if cell == _current.cell:
        _current.counted.add(str(path))
        _current.resumed_s += seconds
