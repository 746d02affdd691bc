import re

import pytest

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.store import ResultStore
from synthbench.errors import UserError
from synthbench.plugins import PROTOCOLS
from synthbench.protocols.scaleup import NOT_REACHED, REACHED_AT_SMALLEST, crossing_multiple

from conftest import run_cells


def test_scaleup_curve_and_reference(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_cells(smoke_digits, {"edm": {"eval_batch": "64"}}, {"scaleup": {"multiples": "1,3"}}, [0], store)
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    curve = rec.details["curve"]
    assert curve["multiples"] == [1, 3] and len(curve["top1"]) == 2
    n = len(smoke_digits.train)
    assert rec.details["train_sizes"] == [n, 3 * n]
    assert rec.metrics["top1"]["value"] == rec.metrics["top1_x3"]["value"]
    reached = rec.details["reached_real_at"]
    assert (reached == "not reached") == ("multiple_reaching_real" not in rec.metrics)
    # the x3 pool was generated once; x1 is its prefix
    pools = list((tmp_path / "cache" / "samples").glob("edm-*.npz"))
    assert len(pools) == 1 and re.fullmatch(r"edm-[0-9a-f]{24}\.npz", pools[0].name)


def test_scaleup_real_reaches_itself(smoke_digits, tmp_path):
    cells = run_cells(smoke_digits, ["real"], {"scaleup": {"multiples": "1", "budget": "steps"}}, [0],
                      ResultStore(tmp_path))
    rec = cells[0].record
    assert rec.metrics["top1_x1"]["value"] == rec.metrics["real_top1"]["value"]
    assert rec.details["reached_real_at"] == 1 and rec.details["budget"] == "steps"


@pytest.mark.parametrize("bad", ["0,2", "1,11", "1,1", "a", "1,1.0", "-1,2", "nan", "1,inf", "10.5", ""])
def test_bad_multiples(bad):
    with pytest.raises(UserError):
        resolve_options(PROTOCOLS.get("scaleup").options, {"multiples": bad}, "scaleup")


@pytest.mark.parametrize("text, want", [("1,1.5,2,2.5,5,10", (1, 1.5, 2, 2.5, 5, 10)), ("0.5", (0.5,)),
                                        ("2.0, 1", (2, 1)), ("10", (10,))])
def test_fractional_multiples_parse(text, want):
    got = resolve_options(PROTOCOLS.get("scaleup").options, {"multiples": text}, "scaleup")["multiples"]
    assert got == want
    # integral multiples stay ints: ``1,2,5,10`` keys a cell exactly as before
    assert all(isinstance(m, int) for m in got if m == int(m))


def test_metric_names_of_multiples():
    cls = PROTOCOLS.get("scaleup")
    default = cls(**resolve_options(cls.options, {}, "scaleup"))
    assert default.opts["multiples"] == (1, 2, 5, 10)
    assert default.table_metrics()[:4] == ["top1_x1", "top1_x2", "top1_x5", "top1_x10"]
    frac = cls(**resolve_options(cls.options, {"multiples": "2.5,1,10,1.5"}, "scaleup"))
    assert frac.table_metrics()[:4] == ["top1_x1", "top1_x1.5", "top1_x2.5", "top1_x10"]
    assert frac.sample_pool_size(400, None) == 4000 and cls.declared("crossing_multiple") == "crossing_multiple"
    assert cls.metrics["crossing_multiple"] is False  # lower is better
    assert frac.sample_pool_size(3, None) == 30
    half = cls(**resolve_options(cls.options, {"multiples": "0.5,1.5"}, "scaleup"))
    assert half.sample_pool_size(5, None) == round(1.5 * 5) == 8  # round half to even: 7.5 -> 8


# ------------------------------------------------------------ crossing interpolation

def test_crossing_at_an_exact_bracket_value():
    # the first multiple at/above real is exactly at real: that multiple
    assert crossing_multiple([1, 2, 5], [0.5, 0.8, 0.9], 0.8) == (2.0, (1, 2), "interpolated between x1 and x2")


def test_crossing_between_two_multiples():
    value, bracket, note = crossing_multiple([1, 2, 5, 10], [0.4, 0.6, 0.9, 0.95], 0.7)
    assert bracket == (2, 5) and value == pytest.approx(2 + (0.7 - 0.6) / (0.9 - 0.6) * 3) and "x2 and x5" in note
    value, bracket, _ = crossing_multiple([1, 1.5, 2, 2.5], [0.1, 0.2, 0.3, 0.5], 0.4)
    assert bracket == (2, 2.5) and value == pytest.approx(2.25)


def test_crossing_never_reached():
    assert crossing_multiple([1, 2, 5], [0.1, 0.2, 0.3], 0.9) == (None, None, NOT_REACHED)


def test_crossing_first_multiple_already_above():
    assert crossing_multiple([1.5, 2, 5], [0.95, 0.9, 0.99], 0.9) == (1.5, None, REACHED_AT_SMALLEST)


def test_crossing_of_a_non_monotone_curve_is_the_first():
    # up through real between x1 and x2, down below it at x5, up again at x10: the first crossing
    value, bracket, _ = crossing_multiple([1, 2, 5, 10], [0.5, 0.9, 0.6, 0.95], 0.7)
    assert bracket == (1, 2) and value == pytest.approx(1.5)


# ------------------------------------------------------------ leaderboard order and plot

def test_leaderboard_orders_fractional_multiples_numerically(tmp_path):
    from synthbench.leaderboard.aggregate import _declared_order
    from synthbench.leaderboard.plots import curves_figure, natural_key

    declared = list(PROTOCOLS.get("scaleup").metrics)
    names = ["top1_x10", "top1_x2.5", "crossing_multiple", "top1_x1.25", "top1_x2", "top1_x1.5", "top1_x1"]
    assert _declared_order(names, declared)[:6] == ["top1_x1", "top1_x1.25", "top1_x1.5", "top1_x2", "top1_x2.5",
                                                    "top1_x10"]
    assert sorted(["x10", "x2.5", "x1.5", "x1.25", "x2", "x1"], key=natural_key) == \
        ["x1", "x1.25", "x1.5", "x2", "x2.5", "x10"]
    curve = {"multiples": [1, 1.5, 2.5, 10], "top1": [0.5, 0.6, 0.8, 0.9], "real_top1": 0.7}
    assert curves_figure({"edm": curve}, tmp_path / "c.svg").exists()


# ------------------------------------------------------------ a fractional cell

def test_scaleup_fractional_multiples_cell(smoke_digits, tmp_path):
    """x0.5, x1, x1.5 of `real`: sizes round(m * n), nested prefixes, names
    without a trailing .0, and the crossing at or before x1 (x1 is the real split)."""
    cells = run_cells(smoke_digits, ["real"], {"scaleup": {"multiples": "1.5,0.5,1"}}, [0], ResultStore(tmp_path))
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    n = len(smoke_digits.train)
    d = rec.details
    assert d["curve"]["multiples"] == [0.5, 1, 1.5]
    assert d["train_sizes"] == [round(0.5 * n), n, round(1.5 * n)]
    assert {"top1_x0.5", "top1_x1", "top1_x1.5"} <= set(rec.metrics) and "top1_x1.0" not in rec.metrics
    assert rec.metrics["top1"] == rec.metrics["top1_x1.5"]
    assert rec.metrics["top1_x1"]["value"] == rec.metrics["real_top1"]["value"]
    assert set(d["per_class_accuracy"]) == {"x0.5", "x1", "x1.5"}
    want = crossing_multiple(d["curve"]["multiples"], d["curve"]["top1"], d["curve"]["real_top1"])
    assert rec.metrics["crossing_multiple"]["value"] == want[0] <= 1
    assert rec.metrics["crossing_multiple"]["higher_is_better"] is False
    assert d["crossing"]["note"] == want[2] and d["reached_real_at"] in (0.5, 1)
    assert PROTOCOLS.get("scaleup").version == 2
