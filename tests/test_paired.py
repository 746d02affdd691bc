"""The paired test behind the leaderboard's "best" and "tie": per-image outcomes
kept in the records, validated on read, and a paired bootstrap over the shared
test images and seeds that separates generators whose intervals overlap."""

from __future__ import annotations

import numpy as np
import pytest

from synthbench.benchmark.cell import Record, cell_hash, seal
from synthbench.benchmark.metrics import PER_IMAGE, metric, pack_outcomes, unpack_outcomes
from synthbench.benchmark.record_schema import check_metric
from synthbench.leaderboard.aggregate import build_headlines, build_tables
from synthbench.leaderboard.paired import paired_bootstrap
from synthbench.plugins import PROTOCOLS

N = 2000


def record(generator: str, seed: int, correct: np.ndarray | None, value: float | None = None) -> Record:
    """A current ``replace`` record whose top1 is the mean of ``correct`` (kept per image unless None)."""
    spec = {"schema_version": 1, "synthbench_version": "0.1.0", "dataset": "digits", "dataset_digest": "d" * 64,
            "generator": generator, "generator_version": 1, "generator_options": {}, "generator_extra": {},
            "protocol": "replace", "protocol_version": PROTOCOLS.get("replace").version, "protocol_options": {},
            "preset": {"name": "smoke"}, "seed": seed, "device_type": "cpu"}
    top1 = float(correct.mean()) if value is None else value
    entry = metric(top1, (top1 * (1 - top1) / N) ** 0.5, N, True)
    if correct is not None and value is None:
        entry[PER_IMAGE] = pack_outcomes(correct)
    return Record.from_json(seal({
        "schema_version": 1, "cell_hash": cell_hash(spec), "spec": spec, "status": "ok", "error": None,
        "metrics": {"top1": entry}, "details": {}, "cost": {"wall_s": {"cell_s": 1.0}, "device": "cpu (test)"},
        "provenance": {"created": f"2024-01-01T00:00:0{seed}+00:00"}}))


def outcomes(rng: np.random.Generator, accuracy: float) -> np.ndarray:
    return (rng.random(N) < accuracy).astype(np.int8)


def seeds_that_move_together() -> dict[str, list[np.ndarray]]:
    """Three generators over three seeds whose accuracy swings by 5 points from
    seed to seed (the same for all: the seed picks a harder or easier run), so
    their t-intervals over seeds are about 0.12 wide and all overlap. ``better``
    is ``base`` plus 1.5% of the images fixed on every seed; ``other`` has
    ``base``'s accuracy on different images."""
    rng = np.random.default_rng(0)
    out: dict[str, list[np.ndarray]] = {"base": [], "better": [], "other": [], "real": []}
    for seed, acc in enumerate((0.80, 0.85, 0.90)):
        base = outcomes(rng, acc)
        better = base.copy()
        wrong = np.flatnonzero(base == 0)
        better[wrong[: int(0.015 * N)]] = 1
        other = outcomes(rng, float(base.mean()))
        out["base"].append(base)
        out["better"].append(better)
        out["other"].append(other)
        out["real"].append(outcomes(rng, 0.95))
    return out


def test_outcomes_pack_to_base64_bits_and_back():
    rng = np.random.default_rng(1)
    for n in (1, 7, 8, 9, 359, 10000):
        bits = (rng.random(n) < 0.7).astype(np.int8)
        text = pack_outcomes(bits)
        assert len(text) == 4 * -(-((n + 7) // 8) // 3)  # base64 of ceil(n/8) bytes
        assert np.array_equal(unpack_outcomes(text, n), bits)
    with pytest.raises(ValueError, match="not the 10 of the metric's n"):
        unpack_outcomes(pack_outcomes(np.ones(20)), 10)
    with pytest.raises(ValueError, match="past the metric's n"):
        unpack_outcomes(pack_outcomes(np.ones(8)), 5)
    with pytest.raises(ValueError, match="not base64"):
        unpack_outcomes("***", 5)


def test_a_record_whose_outcomes_do_not_give_its_value_is_refused():
    bits = np.array([1, 1, 0, 1], dtype=np.int8)
    check_metric("top1", metric(0.75, 0.2, 4, True, outcomes=bits))  # consistent: accepted
    edited = metric(0.75, 0.2, 4, True, outcomes=bits)
    edited["value"] = 1.0
    with pytest.raises(ValueError, match=r"metrics.top1.per_image.*3/4 is not the metric's value"):
        check_metric("top1", edited)
    wrong_n = metric(0.75, 0.2, 5, True, outcomes=bits)
    with pytest.raises(ValueError, match="per_image"):
        check_metric("top1", wrong_n)


def test_the_paired_bootstrap_finds_a_consistent_gain_and_no_gain_where_there_is_none():
    sets = seeds_that_move_together()
    a = dict(enumerate(sets["better"]))
    b = dict(enumerate(sets["base"]))
    c = dict(enumerate(sets["other"]))
    gain = paired_bootstrap(a, b)
    assert gain is not None and gain.seeds == 3 and gain.n == N
    assert gain.diff == pytest.approx(0.015) and gain.significant and gain.low > 0
    none = paired_bootstrap(b, c)
    assert abs(none.diff) < 0.01 and not none.significant
    assert paired_bootstrap(a, b) == gain  # its own fixed seed: the same records, the same verdict
    assert paired_bootstrap(a, {5: sets["base"][0]}) is None  # no common seed
    # one common seed: the interval would hold the test images' noise only, not the runs' spread
    assert paired_bootstrap({0: sets["better"][0]}, {0: sets["base"][0]}) is None
    assert paired_bootstrap(a, {0: sets["base"][0], 7: sets["base"][1]}) is None
    assert paired_bootstrap(a, {0: sets["base"][0], 1: sets["base"][1]}).seeds == 2
    assert paired_bootstrap(a, {0: sets["base"][0][:100]}) is None  # another test split


def test_the_board_stars_a_paired_win_that_overlapping_intervals_called_a_tie():
    sets = seeds_that_move_together()
    recs = [record(g, s, sets[g][s]) for g in sets for s in range(3)]
    (table,) = build_tables(recs)
    stats = {r.generator: r.stats["top1"] for r in table.rows}
    assert stats["better"].overlaps(stats["base"]) and stats["better"].overlaps(stats["other"])  # intervals: all tie
    assert stats["better"].mark == "best"
    assert stats["base"].mark == "" and "paired difference" in stats["base"].versus_best
    assert stats["real"].mark == ""  # the reference never competes
    assert "paired bootstrap" in table.test_text("top1")
    # the headline's rank ranges follow the same test: `base` can never rank above
    # `better`; `other` (its errors on other images) can, the data cannot tell
    (headline,) = build_headlines([table])
    cells = {r.generator: r.cells["replace"] for r in headline.rows}
    assert cells["base"].rank_range == (2, 3) and cells["better"].rank_range == (1, 2)
    assert cells["other"].rank_range == (1, 3)


def test_two_generators_alike_on_different_images_stay_tied():
    sets = seeds_that_move_together()
    recs = [record(g, s, sets[g][s]) for g in ("base", "other") for s in range(3)]
    (table,) = build_tables(recs)
    marks = sorted(r.stats["top1"].mark for r in table.rows)
    assert marks == ["best", "tie"]


def test_records_without_outcomes_fall_back_to_intervals_and_say_so():
    sets = seeds_that_move_together()
    recs = [record(g, s, sets[g][s], value=float(sets[g][s].mean())) for g in ("better", "base") for s in range(3)]
    (table,) = build_tables(recs)
    marks = {r.generator: r.stats["top1"].mark for r in table.rows}
    assert marks == {"better": "best", "base": "tie"}  # the same numbers, no pairing: intervals overlap
    assert "95% intervals" in table.test_text("top1") and "per-image" in table.test_text("top1")


def test_the_detectable_difference_uses_the_measured_disagreement():
    sets = seeds_that_move_together()
    recs = [record(g, s, sets[g][s]) for g in ("better", "base") for s in range(3)]
    (table,) = build_tables(recs)
    q = np.mean([(sets["better"][s] != sets["base"][s]).mean() for s in range(3)])  # 1.5%: the fixed images
    assert table.detectable == pytest.approx((1.959963984540054 + 0.8416212335729143) * np.sqrt(q / (N * 3)))
    assert not table.saturated  # 1.5 points apart, detectable from about 0.4
