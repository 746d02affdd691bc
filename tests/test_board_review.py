"""Found reading the published board against its records (the board review)."""

from __future__ import annotations

from test_leaderboard import make_record

from synthbench.leaderboard.aggregate import build_headlines, build_tables
from synthbench.plugins import PROTOCOLS


def current(protocol: str) -> int:
    """The installed version, so a test table is not superseded."""
    return PROTOCOLS.get(protocol).version


def test_rows_with_the_same_mean_up_to_float_noise_share_best_and_rank():
    """digits recon top1_t30: realfake and edm both classify 1,063 of 3 x 359 test
    images right (353/354/356 and 355/353/355 a seed), yet the board starred
    realfake and marked edm a tie, because the seeds' accuracies summed in
    another order differ in the last bit. fashion-mnist recon fid_t0 (FID of the
    test images against themselves: -3e-12 and -1e-12) starred two rows of
    '0.0000 ± 0.0000' and tied the third, in a column the board calls constant."""
    recs = []
    for seed, (a, b, c) in enumerate([(353, 355, 340), (354, 353, 341), (356, 355, 342)]):
        for gen, right in (("alpha", a), ("beta", b), ("gamma", c)):
            recs.append(make_record(gen, "replace", seed, {"top1": (right / 359, 0.005, True)},
                                    protocol_version=current("replace")))
    for seed, fids in enumerate([(-2.9e-12, -9.6e-13, 1e-13), (-3.1e-12, -9.7e-13, -1e-13), (-2.9e-12, -9.7e-13, 0)]):
        for gen, fid in zip(("alpha", "beta", "gamma"), fids):
            recs.append(make_record(gen, "fidelity", seed, {"fid": (fid, None, False)},
                                    protocol_version=current("fidelity")))
    replace, = [t for t in build_tables(recs) if t.protocol == "replace"]
    marks = {r.generator: r.stats["top1"].mark for r in replace.rows}
    assert replace.rows[0].stats["top1"].mean != replace.rows[1].stats["top1"].mean  # the float noise is there
    assert marks == {"alpha": "best", "beta": "best", "gamma": ""}
    fidelity, = [t for t in build_tables(recs) if t.protocol == "fidelity"]
    assert {r.generator: r.stats["fid"].mark for r in fidelity.rows} == {"alpha": "", "beta": "", "gamma": ""}
    headline, = build_headlines(build_tables(recs))
    ranks = {r.generator: r.cells["replace"].rank for r in headline.rows}
    assert ranks == {"alpha": 1, "beta": 1, "gamma": 3}


def test_a_superseded_table_is_not_ranked(tmp_path):
    """The index page says superseded tables are 'kept for the record; not
    ranked', yet a replace table of protocol v1 starred its best row ('★ best')
    and its heading said how many pairs its test separates."""
    from test_leaderboard import write

    from synthbench.leaderboard.site import build_site

    recs = [make_record(gen, "replace", seed, {"top1": (top1 + 0.001 * seed, 0.005, True)}, protocol_version=1)
            for seed in range(3) for gen, top1 in (("real", 0.99), ("a", 0.95), ("b", 0.80))]
    table, = build_tables(recs)
    assert table.stale and not table.comparers
    assert all(r.stats["top1"].mark == "" for r in table.rows)
    write(tmp_path / "store", *recs)
    build = build_site(tmp_path / "store", tmp_path / "site")
    index = (build.out / "index.html").read_text()
    assert "Kept for the record; not ranked." in index
    assert "★ best</span>" not in index.split("Superseded results")[1]
    assert "The test separates" not in index
