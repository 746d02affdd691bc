"""Metric entries, metric-name templates and ranking rules.

A protocol declares each metric it may report with its ranking rule: ``True``
(higher is better), ``False`` (lower is better), :class:`Target` (closest to a
value is best: a real-vs-synthetic detector at 0.5 cannot tell them apart) or
``None`` (a diagnostic with no better or worse: an entropy, the real-data floor
of a fidelity score, the members-only baseline of a membership attack). The
leaderboard ranks by the declared rule, never by guessing from the values. A name that
depends on options is declared as a *template*: ``top1_x{m}`` stands for
``top1_x1``, ``top1_x2.5``...; ``{arm}_folder{i}_top1`` for ``replace_folder0_top1``.
A placeholder matches one run of letters, digits, dots and minus signs; the
leaderboard orders a template's metrics by their placeholder values.
"""

from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

PER_IMAGE = "per_image"
"""The optional metric field holding per-test-image outcomes (see :func:`pack_outcomes`)."""


def metric(value: float, stderr: float | None, n: int, higher_is_better: bool | None,
           outcomes: np.ndarray | None = None) -> dict[str, Any]:
    """The record's metric entry: ``{value, stderr, n, higher_is_better}``
    (``None``: a diagnostic with no better or worse, such as an entropy), and
    for an accuracy over a test split every generator shares, the per-image
    outcomes (``per_image``): with them the leaderboard decides "best" and
    "tied with best" by a paired test over the same test images instead of by
    overlapping intervals, which with three seeds call nearly everything a tie."""
    entry = {"value": float(value), "stderr": None if stderr is None else float(stderr), "n": int(n),
             "higher_is_better": None if higher_is_better is None else bool(higher_is_better)}
    if outcomes is not None:
        entry[PER_IMAGE] = pack_outcomes(outcomes)
    return entry


def pack_outcomes(outcomes: np.ndarray) -> str:
    """0/1 outcomes per test image (1: correct), in the test split's order, as
    base64 of ``numpy.packbits`` (big-endian bits, zero-padded to a byte): 10,000
    images take 1,668 characters."""
    bits = np.asarray(outcomes).astype(bool).ravel()
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def unpack_outcomes(text: str, n: int) -> np.ndarray:
    """The ``n`` 0/1 outcomes :func:`pack_outcomes` wrote, as int8; ``ValueError``
    when ``text`` is not base64 of exactly ``ceil(n / 8)`` bytes with zero padding."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError("is not base64 text") from None
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"holds {len(raw) * 8} bits, not the {n} of the metric's n (padded to a byte)")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[n:].any():
        raise ValueError("has bits set past the metric's n")
    return bits[:n].astype(np.int8)


@dataclass(frozen=True)
class Target:
    """A ranking rule: the value closest to ``value`` is best."""

    value: float


Rule = Union[bool, Target, None]


def rule_text(rule: Rule) -> str:
    """How a rule reads in ``synthbench list`` and on the site."""
    if isinstance(rule, Target):
        return f"closest to {rule.value:g} is best"
    if rule is None:
        return "diagnostic, not ranked"
    return "higher is better" if rule else "lower is better"


def distance(rule: Rule, value: float) -> float | None:
    """How far ``value`` is from the best under ``rule`` (smaller is better), or
    None when the rule ranks nothing."""
    if isinstance(rule, Target):
        return abs(value - rule.value)
    if rule is None:
        return None
    return -value if rule else value


@functools.lru_cache(maxsize=256)
def _regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[A-Za-z_]+\\\}", r"([A-Za-z0-9.-]+?)", re.escape(template)) + "$")


def is_template(name: str) -> bool:
    return "{" in name


def match(template: str, name: str) -> tuple[Any, ...] | None:
    """The placeholder values (floats where they parse) if ``name`` is an instance
    of ``template`` (an exact name matches itself with no values), else None."""
    if not is_template(template):
        return () if template == name else None
    m = _regex(template).match(name)
    if m is None:
        return None
    out: list[Any] = []
    for part in m.groups():
        try:
            out.append(float(part))
        except ValueError:
            out.append(part)
    return tuple(out)


def declared_key(declared: dict[str, Any] | list[str], name: str) -> str | None:
    """The declared name or template that ``name`` is an instance of (exact names
    first), or None when the protocol never declared it."""
    if name in declared:
        return name
    return next((t for t in declared if is_template(t) and match(t, name) is not None), None)
