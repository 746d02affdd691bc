"""What a third-party plugin author, writing against ``synthbench.api`` only,
runs into: each test is a mistake (or a gap) found by writing a generator, a
protocol and a dataset as an installed package, with the fix's behaviour."""

from __future__ import annotations

import pytest

import synthbench.api as api
from synthbench.benchmark.registry import Registry

GENERATOR_BASE = "synthbench.generators.base:Generator"
PROTOCOL_BASE = "synthbench.protocols.base:Protocol"


def _registry(kind: str, cls: type) -> Registry:
    base = GENERATOR_BASE if kind == "generator" else PROTOCOL_BASE
    reg = Registry(kind, "synthbench.test-author-review", {}, base=base)
    reg._targets["mine"] = f"{cls.__module__}:{cls.__qualname__}"
    reg._origin["mine"] = "entry point (my-package)"
    return reg


# ------------------------------------------------------------ the public API


def test_a_protocol_can_declare_every_documented_ranking_rule_from_the_api():
    """``metrics`` rules are True, False, None or a Target (closest to a value);
    Target was not in synthbench.api, so a plugin had to import an internal module."""
    from synthbench.api import Target, number_text, parse_float_list, parse_int_list

    assert Target(0.5).value == 0.5
    assert [f"top1_x{number_text(m)}" for m in parse_float_list("1,2.5")] == ["top1_x1", "top1_x2.5"]
    assert parse_int_list("0,30") == (0, 30)
