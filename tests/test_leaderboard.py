"""The leaderboard: tables from records (intervals, best and ties, failed and
unsupported cells, unknown protocols), escaping of hostile names, and the
command's one-paragraph errors. The browser test is in test_leaderboard_browser.py."""

from __future__ import annotations

import copy
import json
import math
import re
from html.parser import HTMLParser

import pytest

from synthbench.benchmark.cell import Record, cell_hash, seal
from synthbench.benchmark.store import ResultStore
from test_cli import run_cli
from synthbench.leaderboard.aggregate import Z95, build_tables, fmt, mean_interval, read_store, store_digest
from synthbench.leaderboard.site import build_site

PAYLOAD_NAME = '<script>window.__pwned = "name"</script>'
PAYLOAD_OPTION = '<img src=x onerror="window.__pwned = \'option\'">'
PAYLOAD_ERROR = 'RuntimeError: <script>window.__pwned = "error"</script><b onerror=alert(1)>'


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append((tag, attrs))


def make_record(generator: str, protocol: str, seed: int, metrics: dict[str, tuple[float, float | None, bool]],
                status: str = "ok", *, protocol_version: int | None = None, generator_version: int = 1,
                generator_options: dict | None = None, error: str | None = None, details: dict | None = None,
                wall: float = 1.0, protocol_options: dict | None = None) -> Record:
    """A record shaped as the run grid writes it (metrics: name -> (value, stderr, higher_is_better)), at
    the installed version of the protocol unless ``protocol_version`` says otherwise (a table of an older
    version is superseded, and a superseded table ranks nothing)."""
    if protocol_version is None:
        from synthbench.plugins import PROTOCOLS

        protocol_version = PROTOCOLS.get(protocol).version if protocol in PROTOCOLS.names() else 1
    spec = {"schema_version": 1, "synthbench_version": "0.1.0", "dataset": "digits", "dataset_digest": "d" * 64,
            "generator": generator, "generator_version": generator_version,
            "generator_options": generator_options or {}, "generator_extra": {}, "protocol": protocol,
            "protocol_version": protocol_version, "protocol_options": protocol_options or {},
            "preset": {"name": "smoke"},
            "seed": seed, "device_type": "cpu"}
    return Record.from_json(seal({
        "schema_version": 1, "cell_hash": cell_hash(spec), "spec": spec, "status": status, "error": error,
        "traceback": "Traceback (most recent call last):\n  " + (error or "") if status == "failed" else None,
        "metrics": {k: {"value": v, "stderr": se, "n": 100, "higher_is_better": hib}
                    for k, (v, se, hib) in metrics.items()},
        "details": details or {},
        "cost": {"wall_s": {"cell_s": wall, "fit_s": 0.0}, "device": "cpu (test)"},
        "provenance": {"created": f"2024-01-01T00:00:0{seed}+00:00"},
    }))


def write(store_dir, *records) -> ResultStore:
    store = ResultStore(store_dir)
    for r in records:
        store.write(r)
    return store


# --------------------------------------------------------------------------- statistics


def test_interval_is_student_t_over_seeds_and_stderr_for_one_seed():
    vals = [0.90, 0.92, 0.97]
    mean, half = mean_interval(vals)
    sd = math.sqrt(sum((v - sum(vals) / 3) ** 2 for v in vals) / 2)
    assert mean == pytest.approx(0.93)
    assert half == pytest.approx(4.302652729911275 * sd / math.sqrt(3))  # t_{0.975, 2}
    assert mean_interval([0.8], stderr=0.01) == (0.8, pytest.approx(0.01 * Z95))
    assert mean_interval([0.8]) == (0.8, None)
    assert mean_interval([float("nan"), None]) == (None, None)


def test_best_tie_reference_failed_and_unsupported_cells():
    recs = []
    for seed, (a, b, c) in enumerate([(0.95, 0.80, 0.94), (0.96, 0.82, 0.97), (0.97, 0.81, 0.95)]):
        recs.append(make_record("real", "replace", seed, {"top1": (0.99, 0.005, True)}))
        recs.append(make_record("alpha", "replace", seed, {"top1": (a, 0.01, True)}))
        recs.append(make_record("beta", "replace", seed, {"top1": (b, 0.01, True)}))
        recs.append(make_record("gamma", "replace", seed, {"top1": (c, 0.01, True)}))
    recs.append(make_record("broken", "replace", 0, {}, "failed", error="RuntimeError: boom"))
    recs.append(make_record("halfway", "replace", 0, {"top1": (0.5, 0.02, True)}))
    recs.append(make_record("halfway", "replace", 1, {}, "failed", error="OSError: disk"))
    (table,) = build_tables(recs)
    rows = {r.generator: r for r in table.rows}
    assert table.columns[0] == "top1" == table.headline
    assert rows["real"].oracle and table.rows[0].generator == "real"  # the reference row leads
    assert rows["real"].stats["top1"].mark == ""  # the reference is read against, never ranked
    assert rows["alpha"].stats["top1"].mark == "best" and rows["beta"].stats["top1"].mark == ""
    assert rows["gamma"].stats["top1"].mark == "tie"  # [0.915, 0.991] overlaps alpha's [0.935, 0.985]
    assert rows["broken"].status == "failed" and rows["broken"].problems[0]["error"] == "RuntimeError: boom"
    assert rows["halfway"].status == "partial" and rows["halfway"].stats["top1"].seeds == 1
    assert table.rows[-1].generator == "broken"  # rows without a value sort last, never vanish
    assert rows["alpha"].stats["top1"].half == pytest.approx(mean_interval([0.95, 0.96, 0.97])[1])


def test_ties_are_overlapping_intervals_and_lower_is_better_is_respected():
    recs = [make_record("a", "fidelity", 0, {"fid": (10.0, 0.5, False)}),
            make_record("b", "fidelity", 0, {"fid": (10.5, 0.5, False)}),
            make_record("c", "fidelity", 0, {"fid": (30.0, 0.5, False)})]
    (table,) = build_tables(recs)
    marks = {r.generator: r.stats["fid"].mark for r in table.rows}
    assert marks == {"a": "best", "b": "tie", "c": ""}
    assert [r.generator for r in table.rows] == ["a", "b", "c"]  # lower is better: best first


def test_detect_stars_the_accuracy_closest_to_one_half():
    """A detector at 0.5 cannot tell real from synthetic: 0.509 beats 0.486 only
    if it is nearer 0.5, and 0.40 (worse than chance, still separable) is not best."""
    recs = [make_record("a", "detect", 0, {"pixel_acc": (0.486, 0.001, False)}),
            make_record("b", "detect", 0, {"pixel_acc": (0.509, 0.001, False)}),
            make_record("c", "detect", 0, {"pixel_acc": (0.40, 0.001, False)}),
            make_record("real", "detect", 0, {"pixel_acc": (0.5, 0.001, False)})]
    (table,) = build_tables(recs)
    marks = {r.generator: r.stats["pixel_acc"].mark for r in table.rows}
    assert marks == {"a": "", "b": "best", "c": "", "real": ""}
    assert [r.generator for r in table.rows] == ["real", "b", "a", "c"]  # by distance to 0.5
    assert table.arrow("pixel_acc") == " →0.5" and "closest to 0.5" in table.rule_text("pixel_acc")


def test_constant_columns_diagnostics_variants_and_memorisers_are_not_starred():
    recs = []
    for gen, fid, opts in (("a", 10.0, {}), ("b", 20.0, {}), ("a", 5.0, {"steps": 3})):
        recs.append(make_record(gen, "fidelity", 0, {"fid": (fid, 0.1, False), "floor_fid": (1.0, 0.1, False)},
                                generator_options=opts))
    recs.append(make_record("real", "fidelity", 0, {"fid": (0.0, 0.0, False), "floor_fid": (1.0, 0.1, False)}))
    for gen, top1 in (("a", 0.9), ("b", 0.85), ("c", 0.95)):  # lt_top1 is the same for all: context
        recs.append(make_record(gen, "longtail", 0, {"lt_top1": (0.7, 0.01, True), "balanced_top1": (top1, 0.001,
                                                                                                      True)}))
    # c copies its training images: the mia copy check flags it everywhere
    recs.append(make_record("c", "mia", 0, {"copy_fraction_pixel": (0.93, None, False),
                                            "synthetic_online_auc": (0.5, None, False)}))
    recs.append(make_record("b", "mia", 0, {"copy_fraction_pixel": (0.01, None, False),
                                            "synthetic_online_auc": (0.6, None, False)}))
    tables = {t.protocol: t for t in build_tables(recs)}
    fid = {(r.generator, r.options_label): r for r in tables["fidelity"].rows}
    assert fid[("real", "")].stats["fid"].mark == ""  # FID 0 against itself: the reference is not ranked
    assert fid[("a", "steps=3")].variant and fid[("a", "steps=3")].stats["fid"].mark == ""  # a variant, not a rival
    assert fid[("a", "")].stats["fid"].mark == "best"
    assert all(r.stats["floor_fid"].mark == "" for r in fid.values())  # a diagnostic
    assert tables["fidelity"].arrow("floor_fid") == ""
    lt = {r.generator: r for r in tables["longtail"].rows}
    assert all(r.stats["lt_top1"].mark == "" for r in lt.values())  # one value in every row
    assert lt["c"].flags and "memorises" in lt["c"].flags[0] and lt["c"].stats["balanced_top1"].mark == ""
    assert lt["a"].stats["balanced_top1"].mark == "best"  # c scored higher, but c is a memoriser
    mia = {r.generator: r for r in tables["mia"].rows}
    assert mia["c"].flags and mia["c"].stats["synthetic_online_auc"].mark == ""  # never best on privacy
    assert not mia["b"].flags


def test_unknown_protocol_renders_every_metric_and_old_versions_are_superseded():
    recs = [make_record("edm", "made-up-protocol", 0, {"zeta": (1.0, None, True), "alpha": (2.0, None, False)}),
            make_record("edm", "replace", 0, {"top1": (0.9, 0.01, True)}, protocol_version=1),
            make_record("edm", "replace", 0, {"top1": (0.8, 0.01, True)}, protocol_version=999)]
    tables = build_tables(recs)
    unknown = next(t for t in tables if t.protocol == "made-up-protocol")
    assert sorted(unknown.columns) == ["alpha", "zeta"] and not unknown.stale and unknown.description == ""
    replace = [t for t in tables if t.protocol == "replace"]
    assert len(replace) == 2 and all(t.stale for t in replace)  # installed replace is neither v1 nor v999
    assert "installed replace" in replace[0].stale


def test_strict_read_refuses_corrupt_files_with_the_path(tmp_path):
    store = write(tmp_path, make_record("real", "replace", 0, {"top1": (0.9, 0.01, True)}))
    bad = tmp_path / "records" / "digits" / "replace" / "real" / "seed9-broken.json"
    bad.write_text("{ not json")
    from synthbench.errors import UserError

    with pytest.raises(UserError, match="seed9-broken.json"):
        read_store(store.root, strict=True)
    bad.write_text(json.dumps({"spec": {"dataset": "digits"}}))
    with pytest.raises(UserError, match="seed9-broken.json is not a valid synthbench record"):
        read_store(store.root, strict=True)
    edited = make_record("real", "replace", 9, {"top1": (0.9, 0.01, True)}).to_json()
    edited["spec"]["seed"] = 8  # the spec no longer matches its cell_hash
    bad.write_text(json.dumps(edited))
    with pytest.raises(UserError, match="cell_hash does not match"):
        read_store(store.root, strict=True)
    read = read_store(store.root)  # by default: left out and listed
    assert [r.spec.seed for r in read.records] == [0]
    assert [(item.path, "cell_hash does not match" in item.reason) for item in read.left_out] == [
        ("records/digits/replace/real/seed9-broken.json", True)]
    bad.unlink()
    assert [r.spec.seed for r in read_store(store.root, strict=True).records] == [0]


def test_store_digest_names_the_records_not_their_files(tmp_path):
    a = make_record("real", "replace", 0, {"top1": (0.9, 0.01, True)})
    b = make_record("edm", "replace", 0, {"top1": (0.8, 0.01, True)})
    assert store_digest([a, b]) == store_digest([b, a])
    changed = copy.deepcopy(b.to_json())
    changed["metrics"]["top1"]["value"] = 0.81
    changed = Record.from_json(seal(changed))
    assert store_digest([a, changed]) != store_digest([a, b])


# --------------------------------------------------------------------------- the site


def test_hostile_names_options_and_errors_render_as_inert_text(tmp_path):
    """A generator name, an option value and an error text carrying <script> and
    onerror= payloads appear escaped in every page, never as markup."""
    recs = [make_record("real", "replace", 0, {"top1": (0.95, 0.01, True)}),
            make_record(PAYLOAD_NAME, "replace", 0, {}, "failed", error=PAYLOAD_ERROR,
                        generator_options={"prompt": PAYLOAD_OPTION}),
            make_record(PAYLOAD_NAME, "augment", 0, {"top1": (0.5, 0.01, True)},
                        generator_options={"prompt": PAYLOAD_OPTION})]
    write(tmp_path / "store", *recs)
    build = build_site(tmp_path / "store", tmp_path / "site")
    html = {p.name: p.read_text() for p in build.pages}
    assert len(html) == 1 + 1 + 1 + 2 + 2  # index, about, findings, two protocol pages, two generator pages
    for name, text in html.items():
        tags = Tags()
        tags.feed(text)
        assert not [t for t in tags.seen if any(a.startswith("on") for a, _ in t[1])], name  # no handlers
        scripts = [dict(attrs) for tag, attrs in tags.seen if tag == "script"]
        assert [s["src"].split("/")[-1] for s in scripts] == ["sort.js"], name  # only the packaged script
        assert not [t for t, _ in tags.seen if t in ("img", "b") and "__pwned" in str(_)], name
        assert "<script>window" not in text and "<img src=x" not in text, name
    index = html["index.html"]
    assert "&lt;script&gt;window.__pwned = &#34;name&#34;&lt;/script&gt;" in index
    assert "&lt;img src=x onerror=&#34;window.__pwned = &#39;option&#39;&#34;&gt;" in index
    assert "RuntimeError: &lt;script&gt;window.__pwned = &#34;error&#34;&lt;/script&gt;&lt;b onerror=alert(1)&gt;" in index
    assert ">failed<" in index  # the failed cell is shown, not dropped
    assert "script-src 'self'" in index  # and no inline script could run even if one slipped through
    assert all(p.parent.parent == build.out or p.parent == build.out for p in build.pages)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in build.pages)  # file names stay safe


def test_footer_names_version_digest_and_date(tmp_path, monkeypatch):
    write(tmp_path / "store", make_record("real", "replace", 0, {"top1": (0.95, 0.01, True)}))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build = build_site(tmp_path / "store", tmp_path / "site")
    index = (build.out / "index.html").read_text()
    import synthbench

    assert f"synthbench {synthbench.__version__}" in index
    assert build.digest[:16] in index and "2023-11-14 22:13 UTC" in index
    assert (build.out / "static" / "sort.js").is_file() and (build.out / "static" / "synthbench.css").is_file()
    assert "http://" not in index and "https://" not in index  # nothing fetched from the network


def test_leaderboard_command_and_its_errors(tmp_path, capsys):
    code, _, err = run_cli(["leaderboard", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s")],
                           capsys)
    assert code == 2 and "no such folder" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["leaderboard", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "s")],
                           capsys)
    assert code == 2 and "holds no records" in err and "synthbench evaluate" in err
    write(tmp_path / "store", make_record("real", "replace", 0, {"top1": (0.95, 0.01, True)}))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    code, _, err = run_cli(["leaderboard", "--results", str(tmp_path / "store"), "--out", str(foreign)], capsys)
    assert code == 2 and "not a synthbench site" in err and (foreign / "thesis.tex").exists()
    code, out, err = run_cli(["leaderboard", "-q", "--results", str(tmp_path / "store"), "--out",
                              str(tmp_path / "site")], capsys)
    assert code == 0, err
    assert "1 records -> 1 tables" in out and (tmp_path / "site" / "index.html").is_file()
    code, _, _ = run_cli(["leaderboard", "-q", "--results", str(tmp_path / "store"), "--out",
                          str(tmp_path / "site")], capsys)
    assert code == 0  # a rebuild over an earlier site is fine


def test_fmt_prints_a_numerically_negative_zero_as_zero():
    """FID of a set against itself comes out of the matrix square root as about
    -1e-13; the table must read 0.0000, while a real negative keeps its sign."""
    from synthbench.cli import _fmt

    assert fmt(-1e-13) == "0.0000"
    assert fmt(-1e-13, 0.0) == "0.0000 ± 0.0000"
    assert fmt(-0.25) == "-0.2500"
    assert _fmt(-1e-13, 0.0) == "0.0000 ± 0.0000"
    assert _fmt(-0.25, None) == "-0.2500"


def test_headline_ranks_generators_with_the_range_their_intervals_allow():
    from synthbench.leaderboard.aggregate import build_headlines
    from synthbench.plugins import PROTOCOLS

    current = {name: PROTOCOLS.get(name).version for name in ("replace", "detect")}  # not superseded
    recs = []
    for seed in range(3):
        for gen, top1, acc in (("real", 0.99, 0.5), ("a", 0.95, 0.52), ("b", 0.949, 0.7), ("c", 0.80, 0.51)):
            recs.append(make_record(gen, "replace", seed, {"top1": (top1 + 0.001 * seed, 0.01, True)},
                                    protocol_version=current["replace"]))
            recs.append(make_record(gen, "detect", seed, {"pixel_acc": (acc + 0.001 * seed, 0.01, False)},
                                    protocol_version=current["detect"]))
    (h,) = build_headlines(build_tables(recs))
    assert [c[0] for c in h.columns] == ["detect", "replace"] and h.columns[1][1] == "top1 / real"
    rows = {r.generator: r for r in h.rows}
    assert h.rows[0].generator == "real" and rows["real"].mean_rank is None  # shown first, never ranked
    rep = {g: rows[g].cells["replace"] for g in "abc"}
    assert rep["a"].value == pytest.approx(0.951 / 0.991)  # accuracy as a ratio to the reference
    assert (rep["a"].rank, rep["b"].rank, rep["c"].rank) == (1, 2, 3)
    assert rep["a"].rank_range == (1, 2) and rep["b"].rank_range == (1, 2)  # a and b tie: either order
    assert rep["c"].rank_range == (3, 3)  # clearly behind both
    det = {g: rows[g].cells["detect"] for g in "abc"}
    assert (det["c"].rank, det["a"].rank, det["b"].rank) == (1, 2, 3)  # closest to 0.5 first
    assert rows["a"].mean_rank == pytest.approx(1.5) and rows["b"].mean_rank == pytest.approx(2.5)
    assert [r.generator for r in h.rows] == ["real", "a", "c", "b"]  # c: ranks 3 and 1, mean 2.0


def test_a_table_says_its_smallest_detectable_difference_and_when_it_is_saturated():
    import math as m

    from synthbench.plugins import PROTOCOLS

    v = PROTOCOLS.get("replace").version

    def table(b_top1: float):
        recs = []
        for seed in range(3):
            for gen, top1 in (("real", 0.99), ("a", 0.98), ("b", b_top1)):
                rec = make_record(gen, "replace", seed, {"top1": (top1, 0.007, True)}, protocol_version=v)
                recs.append(rec)
        (t,) = build_tables(recs)
        return t

    close, apart = table(0.975), table(0.90)
    p = (0.98 + 0.975) / 2
    assert close.detectable == pytest.approx(2.8016 * m.sqrt(2 * p * (1 - p) / (100 * 3)), rel=1e-3)
    assert close.saturated and not apart.saturated  # 0.005 apart cannot be told apart on 100 images


# --------------------------------------------------------------------------- rows, partial metrics, the tables that speak


def test_a_metric_only_some_seeds_report_is_shown_with_its_count_and_never_ranked(tmp_path):
    """``scaleup`` leaves ``crossing_multiple`` out on a seed whose curve never
    reaches real: a mean over the seeds that did would star a generator that
    crossed on one seed of three (at x2) above one that crossed on all three (at x3)."""
    from synthbench.plugins import PROTOCOLS

    version = PROTOCOLS.get("scaleup").version
    recs = []
    for seed in range(3):
        for gen, top1, crossing in (("real", 0.99, None), ("once", 0.90, 2.0 if seed == 0 else None),
                                    ("always", 0.91, 3.0 + 0.01 * seed), ("twice", 0.92, 2.5 if seed else None),
                                    ("thrice", 0.93, 4.0 + 0.01 * seed)):
            metrics = {"top1_x1": (top1 + 0.001 * seed, 0.01, True)}
            if crossing is not None:
                metrics["crossing_multiple"] = (crossing, None, False)
            recs.append(make_record(gen, "scaleup", seed, metrics, protocol_version=version))
    (table,) = build_tables(recs)
    stats = {r.generator: r.stats["crossing_multiple"] for r in table.rows if "crossing_multiple" in r.stats}
    assert stats["once"].partial and (stats["once"].seeds, stats["once"].of) == (1, 3)
    assert stats["once"].coverage == " (1 of 3 seeds)" and stats["twice"].coverage == " (2 of 3 seeds)"
    assert not stats["always"].partial and stats["always"].coverage == ""
    marks = {g: s.mark for g, s in stats.items()}
    assert marks == {"once": "", "twice": "", "always": "best", "thrice": ""}  # x3 on every seed beats x4
    write(tmp_path / "store", *recs)
    build = build_site(tmp_path / "store", tmp_path / "site")
    page = next(p.read_text() for p in build.pages if p.name.startswith("scaleup"))
    assert "(1 of 3 seeds)" in page and "reported by 1 of the row&#39;s 3 ok seeds" in page


def test_two_rows_of_one_generator_name_stay_two_rows_in_the_headline_and_the_findings():
    """Two ``samples:PATH`` submissions are two rows of the name ``samples``:
    the headline and the findings must not merge them, nor pair one's
    ``augment`` with the other's ``replace``."""
    from synthbench.leaderboard.aggregate import build_headlines
    from synthbench.leaderboard.findings import augment_over_replace
    from synthbench.plugins import GENERATORS, PROTOCOLS

    version = {p: PROTOCOLS.get(p).version for p in ("replace", "augment")}
    current = GENERATORS.get("samples").version  # not superseded
    scores = {"A": (0.95, 0.97), "B": (0.70, 0.93)}  # (replace, augment)
    recs = []
    for seed in range(3):
        recs.append(make_record("real", "replace", seed, {"top1": (0.99, 0.01, True)},
                                protocol_version=version["replace"]))
        recs.append(make_record("real", "augment", seed, {"top1": (0.99, 0.01, True)},
                                protocol_version=version["augment"]))
        for label, (rep, aug) in scores.items():
            opts = {"label": label, "path": f"/data/{label}.npz"}
            recs.append(make_record("samples", "replace", seed, {"top1": (rep + 0.001 * seed, 0.01, True)},
                                    generator_options=opts, protocol_version=version["replace"],
                                    generator_version=current))
            recs.append(make_record("samples", "augment", seed, {"top1": (aug + 0.001 * seed, 0.01, True)},
                                    generator_options=opts, protocol_version=version["augment"],
                                    generator_version=current))
    tables = build_tables(recs)
    (h,) = build_headlines(tables)
    rows = [r for r in h.rows if not r.oracle]
    assert len(rows) == 2
    by_label = {("A" if "A" in r.label else "B"): r for r in rows}
    assert by_label["A"].cells["replace"].value == pytest.approx(0.951 / 0.99)
    assert by_label["B"].cells["replace"].value == pytest.approx(0.701 / 0.99)
    evidence = {e.subject: e for e in augment_over_replace(tables).evidence if "vs real only" not in e.subject}
    assert len(evidence) == 2
    for label, e in evidence.items():
        rep, aug = scores["A" if "label=A" in label else "B"]
        assert e.difference.diff == pytest.approx(aug - rep)  # its own replace row, not the other's


def test_the_headline_and_findings_take_the_default_options_table_over_a_larger_sweep():
    from synthbench.leaderboard.aggregate import build_headlines
    from synthbench.leaderboard.findings import _current
    from synthbench.plugins import PROTOCOLS

    cls = PROTOCOLS.get("augment")
    defaults = {k: o.default for k, o in cls.options.items()}
    sweep = {**defaults, "ratio": 2.0}
    recs = []
    for seed in range(3):
        for gen in ("real", "a"):
            recs.append(make_record(gen, "augment", seed, {"top1": (0.9, 0.01, True)}, protocol_version=cls.version,
                                    protocol_options=defaults))
        for gen in ("real", "a", "b", "c"):
            recs.append(make_record(gen, "augment", seed, {"top1": (0.5, 0.01, True)}, protocol_version=cls.version,
                                    protocol_options=sweep))
    tables = build_tables(recs)
    default, = [t for t in tables if t.default_options]
    assert len(default.rows) < max(len(t.rows) for t in tables)
    (h,) = build_headlines(tables)
    assert h.anchors["augment"] == default.anchor
    assert _current(tables, "augment") == [default]


def test_a_closest_to_target_column_sorts_by_its_distance_and_says_why_the_intervals_decided():
    recs = [make_record(g, "detect", s, {"pixel_acc": (acc + 0.001 * s, 0.001, False)})
            for s in range(2) for g, acc in (("a", 0.45), ("b", 0.9), ("c", 0.52))]
    (table,) = build_tables(recs)
    stats = {r.generator: r.stats["pixel_acc"] for r in table.rows}
    assert table.best_end("pixel_acc") == "low"
    assert table.sort_value("pixel_acc", stats["a"]) == pytest.approx(0.0495)  # mean distance of 0.45 and 0.451
    assert table.sort_value("pixel_acc", stats["b"]) == pytest.approx(0.4005)
    text = table.test_text("pixel_acc")
    assert "95% intervals" in text and "no per-image outcomes" not in text
    fid = [make_record(g, "fidelity", 0, {"fid": (v, 0.1, False)}) for g, v in (("a", 1.0), ("b", 9.0))]
    (table,) = build_tables(fid)
    assert table.best_end("fid") == "low" and table.sort_value("fid", table.rows[1].stats["fid"]) == 9.0
    assert "lie apart" in table.test_text("fid") and "no per-image outcomes" not in table.test_text("fid")


def test_a_stamp_vouches_for_the_record_it_verified_and_says_how_many_cells_were_re_run():
    from synthbench.benchmark.cell import body_digest

    rec = make_record("thirdparty", "replace", 0, {"top1": (0.9, 0.01, True)})
    stamp = {"synthbench_version": "0.1.0", "verified_at": "2026-01-02", "checked": 2, "cells": 5}
    (table,) = build_tables([rec], stamps={rec.cell_hash: {**stamp, "record_digest": body_digest(rec.body())}})
    (row,) = table.rows
    assert row.verification == "verified" and "2 of its submission's 5 cells re-run" in row.verification_text
    recomputed = {**stamp, "record_digest": "sha256:" + "0" * 64}  # the cell was computed again since
    (table,) = build_tables([rec], stamps={rec.cell_hash: recomputed})
    assert table.rows[0].verification == "unverified"
    (table,) = build_tables([rec], stamps={rec.cell_hash: {"synthbench_version": "0.1.0", "verified_at": "x"}})
    assert table.rows[0].verification == "verified"  # a stamp written before digests were kept
    assert "cells of its submission re-run" in table.rows[0].verification_text


def test_a_detector_right_on_one_seed_and_wrong_on_another_is_not_read_as_at_chance():
    """Closest-to-0.5 ranks by each seed's distance to 0.5, averaged: seeds at
    0.2 and 0.8 (mean 0.5) tell real from synthetic on every seed, so a
    detector at 0.55 on every seed ranks above them (as the validity page reads it)."""
    recs = [make_record(g, "detect", s, {"pixel_acc": (acc, 0.001, False)})
            for s in range(2) for g, acc in (("swings", (0.2, 0.8)[s]), ("steady", 0.55), ("far", 0.7))]
    (table,) = build_tables(recs)
    stats = {r.generator: r.stats["pixel_acc"] for r in table.rows}
    assert stats["swings"].mean == pytest.approx(0.5) and stats["swings"].gap == pytest.approx(0.3)
    assert stats["steady"].mark == "best" and stats["swings"].mark != "best"
    assert [r.generator for r in table.rows] == ["steady", "far", "swings"]
