"""The result store: one JSON record per cell, written atomically, keyed by a
content hash of everything that determines its numbers (DESIGN.md section 5).

A record lives at
``RESULTS/records/<dataset>/<protocol>/<generator>/seed<seed>-<cell_hash[:16]>.json``
and is read and written as a :class:`~synthbench.benchmark.cell.Record`. An ``ok``
or ``unsupported`` record with the same hash is a cache hit; a ``failed`` one is
retried. The record schema is documented in the README ("Result records").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

from synthbench.benchmark.atomic import atomic_write_json
from synthbench.benchmark.cell import CellSpec, Record
from synthbench.benchmark.progress import say
from synthbench.errors import UserError


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


def read_record(path: Path) -> Record:
    """The record at ``path``; ``ValueError`` when it is unreadable or malformed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from None
    return Record.from_json(data)


class ResultStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def cache_dir(self) -> Path:
        """Generator weights, sample pools and classifiers, shared by all protocols."""
        return self.root / "cache"

    def path_for(self, spec: CellSpec) -> Path:
        return (self.root / "records" / _safe(spec.dataset) / _safe(spec.protocol)
                / _safe(spec.generator) / f"seed{spec.seed}-{spec.key[:16]}.json")

    def lookup(self, spec: CellSpec) -> Record | None:
        """The finished (``ok`` or ``unsupported``) record of this cell, or None.
        An unreadable or malformed file is recomputed (and overwritten), with a warning."""
        path = self.path_for(spec)
        if not path.exists():
            return None
        try:
            record = read_record(path)
        except ValueError as exc:
            say(f"warning: record {path} is not a valid record ({exc}); the cell will be recomputed.")
            return None
        if record.spec.key != spec.key or not record.status.finished:
            return None
        return record

    def write(self, record: Record) -> Path:
        return atomic_write_json(self.path_for(record.spec), record.to_json())

    def records(self, strict: bool = False) -> Iterator[Record]:
        """Every record, in path order. Invalid files are skipped, or with
        ``strict`` (a published table must not lose a cell silently) stop the read
        with their path and the fix."""
        for path in sorted((self.root / "records").rglob("*.json")):
            try:
                yield read_record(path)
            except ValueError as exc:
                if strict:
                    raise UserError(f"The record {path} is not a valid synthbench record ({exc}). Restore it "
                                    f"from version control, or delete it and run `synthbench evaluate` again to "
                                    f"recompute that cell.") from None
