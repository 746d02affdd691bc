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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
