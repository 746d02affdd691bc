"""The result store: one JSON record per cell, written atomically, keyed by a
content hash of everything that determines its numbers (DESIGN.md section 5).

A record lives at
``RESULTS/records/<dataset>/<protocol>/<generator>/seed<seed>-<cell_hash[:16]>.json``
and is read and written as a :class:`~synthbench.benchmark.cell.Record`. An ``ok``
or ``unsupported`` record with the same hash is a cache hit; a ``failed`` one is
retried. The record schema is documented in the README ("Result records") and
checked on every read (``record_schema.py``, then the record's digest): an invalid
record is never a cache hit.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from synthbench.benchmark.atomic import atomic_write_json
from synthbench.benchmark.cache import safe_name
from synthbench.benchmark.cell import DIGEST_FIELD, CellSpec, Record, Status, seal
from synthbench.benchmark.record_schema import parse_record
from synthbench.errors import UserError


def read_record(path: Path) -> Record:
    """The record at ``path``; ``ValueError`` when it is unreadable or invalid."""
    return Record.from_json(parse_record(_read_bytes(path)))


_WARNED: set[tuple[str, str, int | None]] = set()
"""The integrity warnings this process has given: (file, reason, its mtime)."""


def warn_once(path: Path, reason: str, message: str) -> None:
    """An integrity warning (a record edited by hand, truncated, unreadable) on
    stderr even with ``-q``: ``-q`` silences progress, never the news that a
    result on the store is not what was written. A run looks a cell up several
    times (planning, before computing it, reading it back), so each file is
    named once per process for each version of it (a file rewritten since is
    news again)."""
    try:
        version: int | None = path.stat().st_mtime_ns
    except OSError:
        version = None
    key = (str(path), reason, version)
    if key in _WARNED:
        return
    _WARNED.add(key)
    print(message, file=sys.stderr, flush=True)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"unreadable ({exc.strerror or type(exc).__name__})") from None


@dataclass
class Migration:
    """What :meth:`ResultStore.migrate` did: records given their digest, records
    that already had a valid one, and records it refused (path, reason)."""

    migrated: list[Path] = field(default_factory=list)
    current: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    rekeyed: list[tuple[Path, Path]] = field(default_factory=list)
    """(old path, new path) of records whose spec held options that are no longer
    part of a cell's key (``Option.in_key``)."""
    kept: list[tuple[Path, Path, str]] = field(default_factory=list)
    """(old path, new path, the status there) of re-keyed records whose cell the
    new path already held as a valid record at least as final: the old file is
    removed as a duplicate."""
    replaced: list[tuple[Path, Path, str]] = field(default_factory=list)
    """(old path, new path, what was there) of re-keyed records written over a
    file at the new path that was not a valid record, or was a less final one
    (``failed`` where the old record is ``ok``)."""


_FINALITY = {Status.FAILED: 0, Status.UNSUPPORTED: 1, Status.OK: 2}
"""How final a record is, for a migration that finds two records of one cell:
an ``ok`` result beats an ``unsupported`` one, and both beat a ``failed`` one
(which a run would compute again)."""


def _read_any(path: Path) -> tuple[dict, Record, bool]:
    """A record file as the migration reads it: its JSON, its record, and whether
    it carries a digest (one without is valid, only not migrated yet);
    ``ValueError`` when it is neither."""
    data = parse_record(_read_bytes(path))
    sealed = isinstance(data, dict) and DIGEST_FIELD in data
    return data, (Record.from_json(data) if sealed else Record.from_unsealed_json(data)), sealed


class ResultStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def cache_dir(self) -> Path:
        """Generator weights, sample pools and classifiers, shared by all protocols."""
        return self.root / "cache"

    def path_for(self, spec: CellSpec) -> Path:
        return (self.root / "records" / safe_name(spec.dataset) / safe_name(spec.protocol)
                / safe_name(spec.generator) / f"seed{spec.seed}-{spec.key[:16]}.json")

    def lookup(self, spec: CellSpec) -> Record | None:
        """The finished (``ok`` or ``unsupported``) record of this cell, or None.
        An unreadable or invalid file (schema, ``cell_hash`` or digest) is never a
        cache hit: the cell is recomputed and the file overwritten, with a warning."""
        path = self.path_for(spec)
        if not path.exists():
            return None
        try:
            record = read_record(path)
        except ValueError as exc:
            warn_once(path, str(exc), f"warning: record {path} is not a valid record ({exc}); it counts as not "
                                      f"computed: a run computes the cell again and overwrites it.")
            return None
        if record.spec.key != spec.key or not record.status.finished:
            return None
        return record

    def write(self, record: Record) -> Path:
        return atomic_write_json(self.path_for(record.spec), record.to_json())

    def paths(self) -> list[Path]:
        return sorted((self.root / "records").rglob("*.json"))

    def scan(self) -> Iterator[tuple[Path, Record | ValueError]]:
        """Every file of the store in path order, with its record or why it is not one."""
        for path in self.paths():
            try:
                yield path, read_record(path)
            except ValueError as exc:
                yield path, exc

    def records(self, strict: bool = False) -> Iterator[Record]:
        """Every record, in path order. Invalid files are skipped, or with
        ``strict`` (a published table must not lose a cell silently) stop the read
        with their path and the fix."""
        for path, record in self.scan():
            if isinstance(record, Record):
                yield record
            elif strict:
                raise invalid_record_error(path, record)

    def migrate(self, dry_run: bool = False, rekey: Callable[[CellSpec], CellSpec] | None = None) -> Migration:
        """Add ``record_digest`` to every record written before records carried one,
        rewriting it atomically with nothing else changed. Only a record that passes
        the schema and whose ``cell_hash`` matches its spec is migrated; the others
        (and records whose digest does not match) are refused, untouched.

        ``rekey`` maps a valid record's spec to the spec the current plugins give
        that cell (:func:`~synthbench.benchmark.cell.current_spec`); a record whose
        spec changes is written under its new key and path, the old file removed,
        unless the new path already holds that cell's record as final as it is
        (:meth:`_rekey`): a finished result is never removed for a lesser one."""
        report = Migration()
        moved_in: set[Path] = set()  # files this pass wrote at a record's new key: not visited again
        for path in self.paths():
            if path in moved_in:
                continue
            try:
                data, record, sealed = _read_any(path)
            except ValueError as exc:
                report.refused.append((path, str(exc)))
                continue
            spec = rekey(record.spec) if rekey is not None else record.spec
            if spec != record.spec:
                target = self.path_for(spec)
                if self._rekey(path, target, dataclasses.replace(record, spec=spec), report, dry_run):
                    moved_in.add(target)
            elif sealed:
                report.current.append(path)
            else:
                if not dry_run:
                    atomic_write_json(path, seal(data))
                report.migrated.append(path)
        return report

    def _rekey(self, path: Path, target: Path, moved: Record, report: Migration, dry_run: bool) -> bool:
        """Move the record at ``path`` to ``target``, its current key's path, as
        ``moved``. A file already at ``target`` is kept, and ``path`` removed as
        its duplicate, only when it is a valid record of that cell at least as
        final (``_FINALITY``); otherwise it would take a finished result's place
        (an ``ok`` record deleted for a ``failed`` one), so ``moved`` is written
        over it. Whether ``target`` was written."""
        there_note = None
        if target != path and (target.exists() or target.is_symlink()):
            try:
                _, there, _ = _read_any(target)
            except ValueError as exc:
                there_note = f"not a valid record: {exc}"
            else:
                if there.spec.key != moved.spec.key:
                    report.refused.append((path, f"its current key's path {target} holds a record of another "
                                                 f"cell ({there.spec.key[:16]}); move one of the two by hand"))
                    return False
                if _FINALITY[there.status] >= _FINALITY[moved.status]:
                    if not dry_run:
                        path.unlink()
                    report.rekeyed.append((path, target))
                    report.kept.append((path, target, there.status.value))
                    return False
                article = "an" if there.status.value[0] in "aeiou" else "a"
                there_note = f"{article} {there.status.value} record, where the moved one is {moved.status.value}"
        if not dry_run:
            try:
                atomic_write_json(target, moved.to_json())
            except OSError as exc:
                report.refused.append((path, f"its current key's path {target} cannot be written "
                                             f"({exc.strerror or exc}); the record is left where it is"))
                return False
            if target != path:
                path.unlink()
        report.rekeyed.append((path, target))
        if there_note is not None:
            report.replaced.append((path, target, there_note))
            # visited before (as current, migrated or refused): it holds the moved record now, counted as such
            report.refused = [(p, why) for p, why in report.refused if p != target]
            report.current = [p for p in report.current if p != target]
            report.migrated = [p for p in report.migrated if p != target]
        return True


def invalid_record_error(path: Path, reason: BaseException | str) -> UserError:
    """The one-paragraph error for a record a strict read cannot skip."""
    return UserError(f"The record {path} is not a valid synthbench record ({reason}). Restore it from version "
                     f"control, or delete it and run `synthbench evaluate` again to recompute that cell.")
