"""Found reading the published board against its records (the board review)."""

from __future__ import annotations

from test_leaderboard import make_record

from synthbench.leaderboard.aggregate import build_headlines, build_tables
from synthbench.plugins import GENERATORS, PROTOCOLS


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


def test_the_readme_puts_each_difference_right_after_the_two_values_it_is_the_difference_of():
    """The README's mia row read 'stylegan3: 0.5981 ± 0.0186 vs 0.5058 ± 0.0128; TPR at 0.1% FPR 0.0153
    ± 0.0160 vs 0.0009 ± 0.0010 (+0.0922 [+0.0608, +0.1236])': +0.0922 is the AUC difference, not the
    TPR's (0.0144); scaleup's 'vs real' read '...; crossing not reached / ... (-0.0150 [...])'."""
    import re

    from test_findings import rec

    from synthbench.benchmark.metrics import metric
    from synthbench.leaderboard.readme import results_markdown

    records = []
    for seed in range(3):
        records.append(rec("edm", "mia", seed, {
            "members_online_auc": metric(0.60 + 0.01 * seed, None, 100, False),
            "synthetic_online_auc": metric(0.50 + 0.002 * seed, None, 100, False),
            "members_online_tpr@0.001": metric(0.02, None, 100, False),
            "synthetic_online_tpr@0.001": metric(0.001, None, 100, False)}))
        records.append(rec("edm", "scaleup", seed, {
            "top1_x1": metric(0.80 + 0.001 * seed, None, 100, True),
            "top1_x10": metric(0.85 + 0.001 * seed, None, 100, True),
            "real_top1": metric(0.90 - 0.001 * seed, None, 100, True)}))
    text = results_markdown(build_tables(records))
    pair = r"[0-9.]+ ± [0-9.]+ vs [0-9.]+ ± [0-9.]+"
    assert re.search(rf"AUC {pair} \(\+0\.1080 \[", text), text
    assert re.search(rf"crossing [^;|]*; {pair} \(-0\.0480 \[", text), text


def test_an_inconclusive_cell_whose_interval_excludes_0_says_why():
    """The published fashion-mnist validity table: coverage x replace top1 over
    the generators alone reads '1.0000 [1.0000, 1.0000], n=4, p=0.083,
    inconclusive', while the notes said 'inconclusive: it contains 0' and the
    cell's tooltip 'the 95% interval contains 0': it is inconclusive because
    no ordering of 4 units is rarer than p = 0.083."""
    import numpy as np

    from synthbench.leaderboard.validity import INCONCLUSIVE, Measure, ValidityTable, correlate

    cell = correlate(Measure("fidelity", "coverage", "coverage", True), Measure("replace", "top1", "top1", True),
                     [(g, v, v) for g, v in zip("abcd", (0.1, 0.2, 0.3, 0.4))], np.random.default_rng(0))
    assert (cell.rho, cell.low, cell.high, cell.verdict) == (1.0, 1.0, 1.0, INCONCLUSIVE)
    assert "contains 0" not in cell.text and "p = 0.083" in cell.text, cell.text
    notes = " ".join(ValidityTable.notes.fget(type("T", (), {"replicates": 2000, "_dependence_note": [],
                                                              "measures": []})()))
    assert "inconclusive: it contains 0;" not in notes and "p >= 0.05" in notes


def test_a_closest_to_target_column_ties_rows_whose_distances_from_the_target_overlap():
    """detect's accuracy is best at 0.5. A detector at 0.45 ± 0.025 and one at
    0.56 ± 0.025 have intervals that lie apart, yet their distances from 0.5
    (0.025..0.075 and 0.035..0.085) do not: the second was shown clearly worse
    than the best (no mark) though nothing tells how far each is from chance."""
    recs = []
    for seed in range(3):
        for gen, acc in (("a", 0.44), ("b", 0.55), ("c", 0.90)):
            recs.append(make_record(gen, "detect", seed, {"pixel_acc": (acc + 0.01 * seed, 0.01, False)}))
    table, = build_tables(recs)
    assert {r.generator: r.stats["pixel_acc"].mark for r in table.rows} == {"a": "best", "b": "tie", "c": ""}
    headline, = build_headlines([table])
    assert {r.generator: r.cells["detect"].rank_range for r in headline.rows} == {
        "a": (1, 2), "b": (1, 2), "c": (3, 3)}


def test_a_generators_card_counts_the_cells_of_its_variants():
    """realfake's page said fashion-mnist 'all its cells (s)': 35171 over 30
    cells, though the store holds 111 realfake records there (its nine
    ablation arms, shown on the same page) and the findings page charges it
    16.4 CPU-hours (59,000 s at 1 thread): the card left the variants out."""
    from synthbench.leaderboard.site import generator_card

    defaults = {k: o.default for k, o in GENERATORS.get("realfake").options.items()}
    recs = [make_record("realfake", "replace", seed, {"top1": (0.8, 0.01, True)}, wall=10.0,
                        generator_options={**defaults, **arm}, generator_version=GENERATORS.get("realfake").version)
            for seed in range(3) for arm in ({}, {"mmd": False}, {"prior_init": False})]
    table, = build_tables(recs)
    assert sum(r.variant for r in table.rows) == 2
    card = generator_card("realfake", [(table, table.rows, [])])
    (_, _, cost), = card["costs"]
    assert cost["cells"] == 9 and cost["wall_s"] == 90.0


def test_sorting_a_column_keeps_a_generators_variants_under_its_row(tmp_path):
    """The index says a generator's variants 'open under its row'; on the
    published fashion-mnist replace table, sorting top1 and opening realfake's
    nine arms showed them spread between edm and ddpm by their own top1."""
    import shutil

    import pytest

    from test_leaderboard import write

    from synthbench.leaderboard.site import build_site

    chromium = shutil.which("chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    defaults = {k: o.default for k, o in GENERATORS.get("realfake").options.items()}
    version = GENERATORS.get("realfake").version
    recs = []
    for seed in range(3):
        recs.append(make_record("real", "replace", seed, {"top1": (0.95 + 0.001 * seed, 0.01, True)}))
        recs.append(make_record("edm", "replace", seed, {"top1": (0.80 + 0.001 * seed, 0.01, True)},
                                generator_version=GENERATORS.get("edm").version))
        for arm, top1 in (({}, 0.90), ({"mmd": False}, 0.70), ({"prior_init": False}, 0.85)):
            recs.append(make_record("realfake", "replace", seed, {"top1": (top1 + 0.001 * seed, 0.01, True)},
                                    generator_options={**defaults, **arm}, generator_version=version))
    write(tmp_path / "store", *recs)
    build = build_site(tmp_path / "store", tmp_path / "site")
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto((build.out / "index.html").resolve().as_uri())
            page.wait_for_load_state("load")
            table = page.locator("table.board:not(.headline-board)").first
            top1 = table.locator("thead th", has_text="top1").first.locator("button")
            top1.click()
            top1.click()  # ascending: the arm at 0.70 would come first
            table.locator("button.variants-toggle").click()
            order = table.evaluate("t => Array.from(t.tBodies[0].rows).filter(r => !r.hidden).map(r => "
                                   "r.dataset.generator + (r.hasAttribute('data-variant-of') ? ' arm' : ''))")
        finally:
            browser.close()
    assert order == ["edm", "realfake", "realfake arm", "realfake arm", "real"], order


def test_the_about_page_names_both_copy_checks_and_both_flags(tmp_path):
    """about.html said a copying generator 'is flagged by the mia copy check', though
    `copies` flags too (the published board's copies tables) and a generator whose samples
    sit on test images is flagged 'contaminated'."""
    from test_leaderboard import write

    from synthbench.leaderboard.site import build_site

    write(tmp_path / "store", make_record("real", "replace", 0, {"top1": (0.95, 0.01, True)}))
    about = (build_site(tmp_path / "store", tmp_path / "site").out / "about.html").read_text()
    assert "<code>copies</code>" in about and "contaminated" in about and "memorises" in about


def test_a_template_headline_reads_on_its_largest_instance_not_on_the_real_split():
    """recon's headline is top1_t{t}; the board read it on top1_t0, and t_re = 0
    is the real split itself (the reference classifier in every row). The
    published fashion-mnist headline ranked edm #3 in recon on 0.8648 against
    0.8653, a difference no generator made, and counted it in edm's mean rank."""
    recs = []
    for seed in range(3):
        for gen, t0, t100 in (("ddpm", 0.8653, 0.80), ("edm", 0.8648, 0.85)):
            recs.append(make_record(gen, "recon", seed, {"top1_t0": (t0 + 0.001 * seed, 0.004, True),
                                                         "top1_t100": (t100 + 0.001 * seed, 0.004, True)},
                                    generator_version=GENERATORS.get(gen).version))
    table, = build_tables(recs)
    assert table.headline == "top1_t100" and table.columns == ["top1_t0", "top1_t100"]
    headline, = build_headlines([table])
    assert headline.columns[0][1] == "top1_t100"
    assert {r.generator: r.cells["recon"].rank for r in headline.rows} == {"edm": 1, "ddpm": 2}


def test_the_readme_section_writes_a_hostile_label_as_text_not_html():
    """A samples: row's label is the file's base name, any characters; the README's
    generated section wrote 'generators real, samples (label=<img src=x onerror=alert(1)>, ...)'
    and the same in the findings table raw, where Markdown renders it as HTML."""
    from test_findings import rec

    from synthbench.benchmark.metrics import metric
    from synthbench.leaderboard.readme import results_markdown

    hostile = {"path": "/data/<img src=x onerror=alert(1)>.npz", "label": "<img src=x onerror=alert(1)>"}
    records = []
    for seed in range(3):
        records.append(rec("samples", "replace", seed, {"top1": metric(0.8, None, 100, True)}, options=hostile))
        records.append(rec("samples", "augment", seed, {"top1": metric(0.9, None, 100, True)}, options=hostile))
        records.append(rec("real", "replace", seed, {"top1": metric(0.85, None, 100, True)}))
    text = results_markdown(build_tables(records))
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)>" in text
    from synthbench.leaderboard.validity import markdown_text

    assert markdown_text("n=13, p<0.001") == "n=13, p<0.001"  # a '<' that opens no tag stays as written


def test_scaleups_real_reference_ranks_nothing():
    """scaleup's real_top1 is the real-trained reference every row shares; the
    published fashion-mnist table starred stylegan3 on it (0.8653 against edm's
    0.8648, a gap of the CPUs the cells ran on). Records still carry
    higher_is_better=True for it; the declared rule (a diagnostic) decides."""
    recs = []
    for seed in range(3):
        for gen, real in (("edm", 0.8648), ("stylegan3", 0.8653)):
            recs.append(make_record(gen, "scaleup", seed, {"top1_x1": (0.5 + 0.001 * seed, 0.01, True),
                                                           "real_top1": (real + 0.0001 * seed, 0.0, True)}))
    table, = build_tables(recs)
    assert {r.generator: r.stats["real_top1"].mark for r in table.rows} == {"edm": "", "stylegan3": ""}
