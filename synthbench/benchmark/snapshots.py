"""Snapshots of a training loop, so a killed training resumes instead of
starting again.

An in-suite generator fit takes half an hour per generator on fashion-mnist at
``fast`` and days at ``paper``; scale-up's x10 classifier trains for about 25
minutes. A worker stopped by a SLURM pre-emption, a job's time limit or a
closed laptop would otherwise train it again from the start. The loop hands
its state to a :class:`Resumable`: networks and their EMA copies, optimisers,
schedulers, and the seeded ``torch.Generator`` every draw comes from. Every
:func:`interval_s` seconds of training it writes them with the step count next
to the file being computed (the classifier trainer at an epoch's end). The
write is atomic and carries the disk cache's digest, and a corrupt snapshot
stops the run like any cached file (``cache.py``). The next start of the same
training loads them and goes on from that step. All of that state is saved
whole, so a resumed training's weights are bit-identical to an uninterrupted
one's (``tests/test_snapshots.py``). The disk cache deletes the snapshot once
the file is written (``cache.snapshot_of``).

The snapshot lives under the file's own key, which names the data, the recipe,
the version and the compute tag, so it is only ever picked up by the training
that wrote it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from synthbench.benchmark import charges
from synthbench.benchmark.cache import SNAPSHOT, DiskCache
from synthbench.errors import UserError

EVERY_S = 300.0
"""Seconds of training between two snapshots: a kill loses at most this much
work. Writing one takes well under a second for the networks trained at
``fast`` (the fashion EDM's is 11 MB). A large network's snapshot holds four
copies of its weights (network, EMA, Adam's two moments), so on a slow shared
filesystem set ``SYNTHBENCH_SNAPSHOT_S`` (seconds; ``off`` writes none)."""


def interval_s() -> float | None:
    """The interval in force: ``SYNTHBENCH_SNAPSHOT_S`` (seconds, or ``off``),
    else :data:`EVERY_S`. None: no snapshots."""
    given = os.environ.get("SYNTHBENCH_SNAPSHOT_S", "").strip()
    if not given:
        return EVERY_S
    if given.lower() == "off":
        return None
    try:
        seconds = float(given)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UserError(f"SYNTHBENCH_SNAPSHOT_S={given!r} is not a number of seconds >= 0 or 'off'; unset it for "
                        f"a snapshot every {EVERY_S:.0f} s, or give e.g. SYNTHBENCH_SNAPSHOT_S=1800.")
    return seconds


def _state_of(obj: Any) -> Any:
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def _restore(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


class Resumable:
    """The state of one training loop, written every ``every_s`` seconds (None:
    :func:`interval_s`) to ``path`` (None: never written, e.g. a loop run outside
    the cache).

    ``state`` maps names to what the loop mutates: modules, optimisers and
    ``torch.Generator``s. On construction a snapshot at ``path`` is loaded into
    them, and :attr:`start` is the first step still to run. Call
    :meth:`step_done` after each step."""

    def __init__(self, path: Path | None, state: dict[str, Any], every_s: float | None = None):
        self.path, self.state = path, state
        self.every_s = every_s if every_s is not None else interval_s()
        self.start = 0
        self.prior_s = 0.0
        """Training seconds already spent before the snapshot was written: a fit
        task adds them to its cost, a cell gets them as ``resumed_s``
        (``charges.py``), so a resumed training costs what it cost."""
        if path is not None and path.exists():
            self.start, self.prior_s = DiskCache.read(path, SNAPSHOT, "training snapshot", self._load)
            charges.resumed_training(path, self.prior_s)
        self._began = time.perf_counter()
        self._last = self._began

    def _load(self, saved: dict[str, Any]) -> tuple[int, float]:
        if sorted(saved["state"]) != sorted(self.state):
            raise ValueError(f"it holds {sorted(saved['state'])}, this training loop {sorted(self.state)}")
        for name, obj in self.state.items():
            _restore(obj, saved["state"][name])
        return int(saved["step"]), float(saved["elapsed_s"])

    def step_done(self, step: int) -> None:
        """Step ``step`` (0-based) is finished; write a snapshot if one is due."""
        now = time.perf_counter()
        if self.path is None or self.every_s is None or now - self._last < self.every_s:
            return
        content = {"step": step + 1, "elapsed_s": self.prior_s + now - self._began,
                   "state": {name: _state_of(obj) for name, obj in self.state.items()}}
        DiskCache.save(self.path, SNAPSHOT, content)
        self._last = time.perf_counter()
