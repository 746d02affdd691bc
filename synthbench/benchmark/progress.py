"""Progress bars (tqdm) for anything longer than a few seconds, on stderr so the
metric table on stdout stays clean. ``SYNTHBENCH_PROGRESS=0`` or ``--quiet``
turns them off."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")
_enabled = os.environ.get("SYNTHBENCH_PROGRESS", "1") != "0"


def set_enabled(flag: bool) -> None:
    global _enabled
    _enabled = flag


def bar(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None, unit: str = "it"):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not _enabled,
                leave=False, dynamic_ncols=True, mininterval=0.5)


def say(message: str) -> None:
    """A status line on stderr (not part of the results)."""
    if _enabled:
        import sys

        print(message, file=sys.stderr, flush=True)
