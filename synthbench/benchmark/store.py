"""The result store: one JSON record per cell, written atomically, keyed by a
content hash of everything that determines its numbers (DESIGN.md section 5).

A cell is generator x options x protocol x dataset x preset x seed. Its *spec*
(names, plugin versions, resolved options, dataset digest, preset fields, seed,
synthbench version) hashes to ``cell_hash``; the record lives at
``RESULTS/records/<dataset>/<protocol>/<generator>/seed<seed>-<cell_hash[:16]>.json``.
An ``ok`` record with the same hash is a cache hit; a ``failed`` one is retried.
The record schema is documented in the README ("Result records").
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

from synthbench.benchmark.atomic import atomic_write_json
from synthbench.benchmark.progress import say

SCHEMA_VERSION = 1
FINISHED = ("ok", "unsupported")
"""Statuses that count as done; ``failed`` cells are retried."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cell_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


class ResultStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def cache_dir(self) -> Path:
        """Generator weights, sample pools and classifiers, shared by all protocols."""
        return self.root / "cache"

    def path_for(self, spec: dict[str, Any]) -> Path:
        h = cell_hash(spec)
        return (self.root / "records" / _safe(spec["dataset"]) / _safe(spec["protocol"])
                / _safe(spec["generator"]) / f"seed{spec['seed']}-{h[:16]}.json")

    def lookup(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """The finished (``ok`` or ``unsupported``) record of this cell, or None."""
        path = self.path_for(spec)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            say(f"warning: record {path} is unreadable ({exc}); the cell will be recomputed.")
            return None
        if record.get("cell_hash") != cell_hash(spec) or record.get("status") not in FINISHED:
            return None
        return record

    def write(self, record: dict[str, Any]) -> Path:
        return atomic_write_json(self.path_for(record["spec"]), record)

    def records(self) -> Iterator[dict[str, Any]]:
        for path in sorted((self.root / "records").rglob("*.json")):
            try:
                yield json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue


def metric(value: float, stderr: float | None, n: int, higher_is_better: bool) -> dict[str, Any]:
    """The record's metric entry: ``{value, stderr, n, higher_is_better}``."""
    return {"value": float(value), "stderr": None if stderr is None else float(stderr), "n": int(n),
            "higher_is_better": bool(higher_is_better)}
