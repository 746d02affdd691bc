"""The one atomic-write helper every kept file goes through: write to a temporary
file in the same folder, fsync, then rename over the target. A killed run leaves
either the old file or the new one, never half of one, plus at most a hidden
``.NAME.XXXX.tmp`` that :func:`remove_orphans` deletes on the next run."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()
"""The mode ``open()`` would give a new file. ``mkstemp`` makes its files 0600,
which would leave records, caches, submissions and baselines unreadable to the
others who share a store (a lab's results folder); the umask is read once, at
import, because reading it means setting it."""


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        refused = exc if isinstance(exc, OSError) and exc.filename is None else _os_error_within(exc)
        if refused is not None and refused.errno is not None:  # named, so the error says where the disk is full
            raise OSError(refused.errno, refused.strerror, tmp) from exc
        raise
    return path


def _os_error_within(exc: BaseException) -> OSError | None:
    """The system's error under a writer's own: ``torch.save`` turns a full disk
    (``ENOSPC`` from the file's ``write``) into ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos``, which reads as a failed fit, and a
    run recorded every cell of the generator failed with it instead of
    stopping on the full disk (``runner.storage_error``). None for an
    ``OSError`` itself (raised as it is) or an error with none beneath it."""
    if isinstance(exc, OSError) or not isinstance(exc, RuntimeError):
        return None
    seen: set[int] = set()
    inner = exc.__cause__ or exc.__context__
    while inner is not None and id(inner) not in seen:
        if isinstance(inner, OSError) and inner.errno is not None:
            return inner
        seen.add(id(inner))
        inner = inner.__cause__ or inner.__context__
    return None


ORPHAN_AGE_S = 900.0
"""A temporary file older than this is an orphan: no single write takes 15
minutes, and a younger one may belong to another run writing to the same store."""

_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")


def remove_orphans(root: str | Path, min_age_s: float = ORPHAN_AGE_S) -> int:
    """Delete the temporary files killed writes left under ``root``; how many."""
    removed = 0
    cutoff = time.time() - min_age_s
    for tmp in Path(root).rglob(".*.tmp"):
        try:
            if _TEMP_NAME.match(tmp.name) and tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed += 1
        except OSError:  # gone meanwhile, or not ours to delete: leave it
            continue
    return removed


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n"
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_save_npz(path: str | Path, **arrays: Any) -> Path:
    import numpy as np

    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def json_default(obj: Any) -> Any:
    """How a kept JSON file writes numpy scalars and arrays, tuples, sets and paths."""
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
