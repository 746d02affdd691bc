"""Predictive validity (leaderboard/validity.py): Spearman's rho of each cheap
metric against replace top1 and scaleup crossing_multiple, over the board's
units, from synthetic records (nothing is trained)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from synthbench.benchmark.cell import Record
from synthbench.leaderboard.aggregate import build_tables
from synthbench.leaderboard.validity import (
    INCONCLUSIVE, INVERTED, PREDICTS, REPLICATES, TOO_FEW, predictive_validity, spearman, spearman_rows)
from synthbench.plugins import PROTOCOLS
from test_leaderboard import make_record

PROTOCOL_OF = {"fid": "fidelity", "kid": "fidelity", "precision": "fidelity", "recall": "fidelity",
               "density": "fidelity", "coverage": "fidelity", "pixel_acc": "detect", "dct_acc": "detect",
               "top1": "replace", "crossing_multiple": "scaleup"}
HIGHER = {"fid": False, "kid": False, "pixel_acc": False, "dct_acc": False, "crossing_multiple": False}
CURRENT = {name: PROTOCOLS.get(name).version for name in ("fidelity", "detect", "replace", "scaleup")}


def records(generator: str, seed: int = 0, options: dict | None = None, generator_version: int = 1,
            protocol_versions: dict | None = None, **values: float | None) -> list[Record]:
    """One record per protocol the ``values`` (metric -> value) belong to. A
    scaleup record always holds ``top1_x1``; ``crossing_multiple=None`` leaves
    the crossing out (never reached real)."""
    versions = {**CURRENT, **(protocol_versions or {})}
    by_protocol: dict[str, dict] = {}
    for name, value in values.items():
        entries = by_protocol.setdefault(PROTOCOL_OF[name], {})
        if value is not None:
            entries[name] = (value, 0.01, HIGHER.get(name, True))
    if "scaleup" in by_protocol:
        by_protocol["scaleup"]["top1_x1"] = (0.5, 0.01, True)
    return [make_record(generator, protocol, seed, metrics, protocol_version=versions[protocol],
                        generator_options=options, generator_version=generator_version)
            for protocol, metrics in by_protocol.items()]


def board() -> list[Record]:
    """Six generators g0..g5 whose top1 rises with i, an ablation arm of g0 that
    continues the pattern, and rows that would break it if they were units: the
    reference, a memoriser, a superseded generator version and a superseded table."""
    recall = [3, 6, 1, 4, 2, 5, 3.5]  # rho with top1 = 0.03 over g0..g5 (the arm adds 3.5)
    recs = []
    for i in range(6):
        recs += records(f"g{i}", top1=0.5 + 0.05 * i, fid=60.0 - 10 * i, precision=0.9 - 0.1 * i,
                        recall=recall[i] / 10)
    for i in range(9):  # a superseded table, larger than the current one: its top1 falls with i
        recs += records(f"g{i}", protocol_versions={"replace": 1}, top1=0.9 - 0.05 * i)
    recs += records("g0", options={"steps": 3}, top1=0.9, fid=1.0, precision=0.05, recall=0.35)  # the arm
    recs += records("real", top1=0.2, fid=100.0, precision=1.0, recall=0.9)  # monotone if left out only
    recs += records("copycat", top1=0.1, fid=0.5, precision=0.95, recall=0.9)
    recs.append(make_record("copycat", "mia", 0, {"copy_fraction_pixel": (0.95, None, False)}))
    recs += records("ddpm", generator_version=0, top1=0.1, fid=0.5, precision=0.95, recall=0.9)
    return recs


@pytest.fixture(scope="module")
def validity():
    (table,) = predictive_validity(build_tables(board()))
    return table


def test_a_perfectly_monotone_metric_predicts_and_a_reversed_one_is_inverted(validity):
    fid = validity.cell("fid", "top1")
    assert fid.rho == pytest.approx(-1.0) and fid.useful_sign == -1  # lower fid, higher top1
    assert fid.low == pytest.approx(-1.0) and fid.high == pytest.approx(-1.0)
    assert fid.verdict == fid.agrees == PREDICTS and "lower fid goes with higher replace top1" in fid.text
    precision = validity.cell("precision", "top1")  # higher precision went with lower top1 here
    assert precision.rho == pytest.approx(-1.0) and precision.useful_sign == 1 and precision.verdict == INVERTED


def test_an_unrelated_metric_has_an_interval_around_zero(validity):
    recall = validity.cell("recall", "top1")
    assert abs(recall.rho) < 0.3
    assert recall.low < 0 < recall.high and recall.verdict == INCONCLUSIVE
    assert recall.rho == pytest.approx(spearman(np.array([3, 6, 1, 4, 2, 5, 3.5]),
                                                np.array([0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.9])))


def test_reference_flagged_and_superseded_rows_and_tables_are_no_units(validity):
    labels = [u.label for u in validity.units]
    assert labels == ["g0", "g0 (steps=3)", "g1", "g2", "g3", "g4", "g5"]
    assert validity.cell("fid", "top1").n == 7
    why = dict(validity.left_out)
    assert set(why) == {"real", "copycat", "ddpm"}
    assert why["real"] == "the real reference" and why["ddpm"] == "superseded"
    assert why["copycat"].startswith("flagged: memorises")
    current = next(t for t in build_tables(board()) if t.protocol == "replace" and not t.stale)
    assert validity.sources["replace"] == current.anchor  # not the superseded table's


def test_a_row_left_out_in_one_table_is_no_unit_in_any():
    tables = build_tables(board())
    fidelity = next(t for t in tables if t.protocol == "fidelity")
    next(r for r in fidelity.rows if r.label == "g1").flags.append("memorises: test")
    (validity,) = predictive_validity(tables)
    assert "g1" not in [u.label for u in validity.units] and validity.cell("fid", "top1").n == 6
    assert ("g1", "flagged: memorises") in validity.left_out


def test_ablation_arms_are_units_matched_across_tables_by_row_key():
    tables = build_tables(board())
    keys = {t.protocol: {r.label: r.key for r in t.rows} for t in tables if not t.stale}
    assert keys["fidelity"]["g0"] == keys["replace"]["g0"]  # Row.key does not depend on the protocol
    assert keys["fidelity"]["g0 (steps=3)"] == keys["replace"]["g0 (steps=3)"] != keys["replace"]["g0"]
    (validity,) = predictive_validity(tables)
    arm = next(u for u in validity.units if u.label == "g0 (steps=3)")
    assert arm.variant and arm.generator == "g0"
    assert "g0 (steps=3)" in validity.cell("fid", "top1").units


def test_with_arms_among_the_units_each_cell_is_repeated_over_the_generators_alone(validity):
    """Arms of one recipe are not independent generators: every cell also says
    what the default rows alone give, and the note says why."""
    fid = validity.cell("fid", "top1")
    alone = fid.generators_only
    assert alone is not None and alone.n == 6 and "g0 (steps=3)" not in alone.units
    assert alone.rho == pytest.approx(-1.0) and alone.verdict == PREDICTS
    recall = validity.cell("recall", "top1").generators_only
    assert recall.rho == pytest.approx(spearman(np.array([3, 6, 1, 4, 2, 5]),
                                                np.array([0.5, 0.55, 0.6, 0.65, 0.7, 0.75])))
    assert "; generators only: " in fid.summary and fid.summary.startswith("-1.00")
    (note,) = [note for note in validity.notes if "1 of the 7 units are ablation arms of g0" in note]
    assert note.endswith("(independent, but fewer: with 6 units no ordering is rarer than p = 0.003).")  # 2/6!
    (plain,) = predictive_validity(build_tables([r for r in board() if r.spec.generator_options == {}]))
    assert plain.cell("fid", "top1").generators_only is None
    assert not any("are ablation arms of" in note for note in plain.notes)


def test_a_generator_that_never_crosses_ranks_worst_tied_with_the_others():
    """g3 crosses on one seed only, g4 has no crossing_multiple, g5 a null one:
    all three rank worst, tied; fid tied the same way correlates perfectly."""
    recs = []
    for seed in (0, 1):
        for i, crossing in enumerate((1.0, 2.0, 3.0, 1.5 if seed == 0 else None, None, None)):
            fid = 10.0 * (i + 1) if i < 3 else 50.0
            kid = 5.0 + i if i < 3 else 1.0  # the never-crossers hold the best kid
            recs += records(f"g{i}", seed, fid=fid, kid=kid, crossing_multiple=crossing)
    g5 = next(r for r in recs if r.spec.generator == "g5" and r.spec.protocol == "scaleup" and r.spec.seed == 0)
    recs[recs.index(g5)] = dataclasses.replace(g5, metrics={**g5.metrics, "crossing_multiple": {
        "value": None, "stderr": None, "n": 1, "higher_is_better": False}})
    (validity,) = predictive_validity(build_tables(recs))
    assert [t.name for t in validity.targets] == ["crossing_multiple"]
    fid = validity.cell("fid", "crossing_multiple")
    assert fid.n == 6 and fid.rho == pytest.approx(1.0)  # a mean over crossing seeds alone would put g3 second
    assert fid.useful_sign == 1 and fid.verdict == PREDICTS  # lower fid, sooner crossing
    assert validity.cell("kid", "crossing_multiple").rho < -0.5


def test_detect_is_read_as_the_distance_from_chance_per_seed():
    """Accuracies alternate around 0.5; their distance from 0.5 falls as top1
    rises. g6's seeds sit at 0.35 and 0.65: a mean of 0.5 but separable both times."""
    recs = []
    for i in range(6):
        recs += records(f"g{i}", top1=0.95 - 0.05 * i, pixel_acc=0.5 + (-1) ** i * 0.02 * i)
    recs += records("g6", 0, top1=0.5, pixel_acc=0.35) + records("g6", 1, top1=0.5, pixel_acc=0.65)
    (validity,) = predictive_validity(build_tables(recs))
    cell = validity.cell("pixel_acc", "top1")
    assert cell.metric.label == "|pixel_acc − 0.5|"
    assert cell.n == 7 and cell.rho == pytest.approx(-1.0) and cell.verdict == PREDICTS
    assert any("distance from chance" in note for note in validity.notes)


def test_fewer_than_four_units_give_no_correlation():
    recs = []
    for i in range(3):
        recs += records(f"g{i}", top1=0.5 + 0.1 * i, fid=30.0 - 10 * i)
    (validity,) = predictive_validity(build_tables(recs))
    cell = validity.cell("fid", "top1")
    assert cell.n == 3 and cell.rho is None and cell.low is None and cell.verdict == TOO_FEW
    assert "too few units" in cell.text and "too few units, n=3" in validity.to_markdown()
    recs += records("g3", top1=0.8, fid=0.0)
    (validity,) = predictive_validity(build_tables(recs))
    assert validity.cell("fid", "top1").rho == pytest.approx(-1.0)  # four are enough


def test_constant_replicates_are_skipped_and_the_table_is_the_same_every_time():
    recs = []
    for i, (top1, fid) in enumerate(((0.5, 30.0), (0.6, 10.0), (0.7, 20.0), (0.8, 0.0))):
        recs += records(f"g{i}", top1=top1, fid=fid, pixel_acc=0.5 + 0.01 * i)
    tables = build_tables(recs)
    first, second = predictive_validity(tables), predictive_validity(build_tables(recs))
    assert first == second  # fixed bootstrap seed
    cell = first[0].cell("fid", "top1")
    assert 0 < cell.replicates < REPLICATES  # 4 units: some resamples repeat one unit, no ranking
    assert not math.isnan(cell.low) and not math.isnan(cell.high) and cell.low < cell.rho < cell.high
    # each cell draws from its own seed: dropping the detect table moves no other interval
    (without,) = predictive_validity([t for t in tables if t.protocol != "detect"])
    assert without.cell("fid", "top1") == cell and without.cell("pixel_acc", "top1") is None


def test_vectorised_bootstrap_rho_is_scipys_spearman():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(50, 7)).astype(float)  # many ties
    y = rng.normal(size=(50, 7))
    y[:, 3] = np.inf  # a never-crossing unit in every row
    x[0] = 2.0  # a constant row: no rho
    rows = spearman_rows(x, y)
    assert np.isnan(rows[0])
    for i in range(1, 50):
        assert rows[i] == pytest.approx(spearmanr(x[i], np.where(np.isinf(y[i]), 1e9, y[i]))[0])


def test_markdown_is_a_github_table(validity):
    assert [row.metric.name for row in validity.rows] == ["fid", "precision", "recall"]  # metrics some unit holds
    text = validity.to_markdown()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == "| metric | replace top1 ↑ |" and lines[1] == "|---|---|"
    assert lines[2].startswith("| fid ↓ | -1.0000 [-1.0000, -1.0000], n=7, p<0.001, predicts")
    assert all(line.count("|") == 3 for line in lines)
    assert "Units (7): g0, g0 (steps=3), g1" in text and "real (the real reference)" in text


def test_the_permutation_test_keeps_a_handful_of_units_inconclusive():
    """With 4 units no ordering is rarer than 2 in 24 (two-sided), so even a perfect
    rank agreement cannot pass p < 0.05, however narrow its bootstrap interval; with 6
    units it can (2 in 720)."""
    from synthbench.leaderboard.validity import _verdict, permutation_p

    rng = np.random.default_rng(0)
    four = np.arange(4.0)
    assert permutation_p(four, -four, rng) == pytest.approx(2 / 24)
    assert _verdict(-1.0, -1.0, -1.0, -1, permutation_p(four, -four, rng)) == "inconclusive"
    six = np.arange(6.0)
    assert permutation_p(six, -six, rng) == pytest.approx(2 / 720)
    assert _verdict(-1.0, -1.0, -1.0, -1, permutation_p(six, -six, rng)) == "predicts"
    many = np.arange(12.0)  # Monte Carlo above 8 units: (0 + 1) / 10,001 at best, never 0
    shuffled = rng.permutation(many)
    p = permutation_p(many, shuffled, rng)
    assert 0 < permutation_p(many, -many, rng) < 0.001 and 0 < p <= 1
