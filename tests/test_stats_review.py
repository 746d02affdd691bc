"""Found checking the board's statistics against their textbook definitions (the stats review)."""

from __future__ import annotations

import numpy as np

from synthbench.benchmark.cell import Record, cell_hash, seal
from synthbench.benchmark.metrics import metric
from synthbench.leaderboard.aggregate import build_headlines, build_tables
from synthbench.plugins import PROTOCOLS


def top1_record(generator: str, seed: int, correct: np.ndarray, protocol: str = "replace",
                name: str = "top1", extra: dict | None = None) -> Record:
    """A current record whose ``name`` is the mean of ``correct``, kept per image, as the harness writes it."""
    spec = {"schema_version": 1, "synthbench_version": "0.1.0", "dataset": "digits", "dataset_digest": "d" * 64,
            "generator": generator, "generator_version": 1, "generator_options": {}, "generator_extra": {},
            "protocol": protocol, "protocol_version": PROTOCOLS.get(protocol).version, "protocol_options": {},
            "preset": {"name": "smoke"}, "seed": seed, "device_type": "cpu"}
    top1 = float(correct.mean())
    metrics = {name: metric(top1, (top1 * (1 - top1) / len(correct)) ** 0.5, len(correct), True, outcomes=correct)}
    metrics.update(extra or {})
    return Record.from_json(seal({
        "schema_version": 1, "cell_hash": cell_hash(spec), "spec": spec, "status": "ok", "error": None,
        "metrics": metrics, "details": {}, "cost": {"wall_s": {"cell_s": 1.0}, "device": "cpu (test)"},
        "provenance": {"created": f"2024-01-01T00:00:0{seed}+00:00"}}))


def one_image_apart(n: int = 359) -> list[Record]:
    """``alpha`` right on 349 of 359 test images at every seed, ``beta`` on 348:
    each seed's classifier errs on other images (11 discordant a seed), yet the
    counts repeat, so both t intervals over seeds are 0 wide."""
    rng = np.random.default_rng(0)
    recs = []
    for seed in range(3):
        a = np.ones(n, np.int8)
        a[rng.choice(n, 10, replace=False)] = 0
        b = a.copy()
        b[rng.choice(np.flatnonzero(a == 1), 6, replace=False)] = 0
        b[rng.choice(np.flatnonzero(a == 0), 5, replace=False)] = 1
        recs += [top1_record("alpha", seed, a), top1_record("beta", seed, b)]
    return recs


def test_rows_one_test_image_apart_whose_seeds_agree_are_not_separated_by_zero_width_intervals():
    """The t interval over seeds holds the spread between training runs, not the
    test images' noise: every seed scores the same images. Two rows whose seeds
    repeat their counts (349 and 348 right of 359, '0.9721 ± 0.0000' and
    '0.9694 ± 0.0000', as `synthbench evaluate -g real --preset smoke` prints
    for real's replace) have intervals that 'lie apart', and the board marked
    beta clearly worse by one test image, though the paired bootstrap over those
    images and seeds puts the difference at +0.0028, 95% [-0.011, +0.016]. On the
    published digits longtail table, control_top1 marked edm (0.9749 ± 0.0000)
    clearly worse than realfake (0.9861 ± 0.0069): paired +0.0111 [-0.0009, +0.0242]."""
    (table,) = build_tables(one_image_apart())
    stats = {r.generator: r.stats["top1"] for r in table.rows}
    assert stats["alpha"].half == 0.0 and stats["beta"].half == 0.0 and not stats["alpha"].overlaps(stats["beta"])
    assert stats["alpha"].mark == "best"
    assert stats["beta"].mark == "tie" and "paired difference +0.0028" in stats["beta"].versus_best
    assert table.test_text("top1") == "decided by a paired bootstrap over the shared test images and seeds"
    (headline,) = build_headlines([table])
    assert {r.generator: r.cells["replace"].rank_range for r in headline.rows} == {"alpha": (1, 2), "beta": (1, 2)}


def test_a_finding_whose_records_hold_one_seed_says_it_needs_two_not_that_there_are_no_records():
    """`synthbench evaluate --seeds 1` then `synthbench leaderboard`: a recon
    record at 0.95 (t_re 0) and 0.80 (t_re 100) on 359 test images, one seed.
    A comparison needs two common seeds (the paired test's MIN_SEEDS, and a
    Student t over seeds), so the finding is not measured, but its sentence
    said 'the store holds no records this finding can be tested on'."""
    from synthbench.leaderboard.findings import NOT_MEASURED, build_findings

    rng = np.random.default_rng(0)
    t0, t100 = ((rng.random(359) < p).astype(np.int8) for p in (0.95, 0.80))
    record = top1_record("edm", 0, t0, protocol="recon", name="top1_t0",
                         extra={"top1_t100": metric(float(t100.mean()), 0.01, 359, True, outcomes=t100)})
    recon, entropy = build_findings(build_tables([record]))[:2]
    assert recon.verdict == NOT_MEASURED and [e.seeds for e in recon.evidence] == [1]
    assert "holds no records" not in recon.sentence
    assert "needs two seeds" in recon.sentence and "at most 1" in recon.sentence, recon.sentence
    assert entropy.sentence == "Not measured: the store holds no records this finding can be tested on."
