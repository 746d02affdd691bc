"""The store's work log: one line per piece of work a process actually
computed (a cell, a generator fit, a cached file, a block of samples), never for
a cache hit. Each process appends to its own file
``RESULTS/worklog/<host>-<pid>-<suffix>.jsonl``, so workers on a shared
filesystem never append to one file together (``O_APPEND`` is not atomic over
NFS). It answers "was anything computed twice?" after a distributed run, and the
tests count it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from synthbench.benchmark.lease import owner_id


def log_computed(store_root: str | Path, kind: str, name: str) -> None:
    """Note that this process computed ``kind`` ``name`` (best effort: a log that
    cannot be written never fails the work it describes)."""
    folder = Path(store_root) / "worklog"
    line = json.dumps({"kind": kind, "name": name, "owner": owner_id(), "t": round(time.time(), 3)})
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{owner_id().replace(':', '-')}.jsonl").open("a") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def read_worklog(store_root: str | Path) -> list[dict]:
    """Every line of every process's log under ``store_root``."""
    out = []
    for path in sorted((Path(store_root) / "worklog").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a killed process
                continue
    return out
