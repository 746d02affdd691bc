"""The built leaderboard in a real browser: Debian's chromium, headless, driven by
playwright's Python client (no browser download), the site opened from disk.

The records come from real smoke-preset cells (replace, scaleup, recon, mia,
fidelity for `real` and `edm`) plus a hand-made failed record whose generator
name, option value and error carry script payloads. Without chromium the test
is skipped, unless SYNTHBENCH_REQUIRE_BROWSER=1 (as in .ci/run), where it fails.
"""

from __future__ import annotations

import os
import shutil

import pytest

from synthbench.benchmark.cell import Record, cell_hash, seal
from synthbench.benchmark.store import ResultStore
from synthbench.leaderboard.site import build_site

from conftest import run_cells

PAYLOAD_NAME = '<script>window.__pwned = "name"</script>'
PAYLOAD_OPTION = '<img src=x onerror="window.__pwned = \'option\'">'
PAYLOAD_ERROR = 'RuntimeError: <img src=y onerror="window.__pwned = \'error\'"><script>window.__pwned = 3</script>'
CELLS = [("replace", {}), ("scaleup", {"multiples": "1,2"}), ("recon", {"t_re": "0,10"}), ("mia", {"shadows": "2"}),
         ("fidelity", {})]


def _browser_or_skip() -> str:
    path = shutil.which("chromium")
    reason = None
    if path is None:
        reason = "Debian's chromium is not installed (`apt-get install chromium`; .ci/run installs it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright's Python client is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("SYNTHBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SYNTHBENCH_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def site(smoke_digits, session_cache, tmp_path_factory):
    """Smoke records for two generators under five protocols, one hostile failed
    record, and the site built from them. The caches are the session's, so a smoke
    EDM fitted by another test is reused."""
    root = tmp_path_factory.mktemp("leaderboard")
    store = ResultStore(root / "results")
    store.root.mkdir()
    store.cache_dir.symlink_to(session_cache, target_is_directory=True)
    gens = {"real": {}, "edm": {"eval_batch": "64"}}
    replace_edm = None
    for name, opts in CELLS:
        cells = run_cells(smoke_digits, gens, {name: opts}, [0], store)
        replace_edm = replace_edm or cells[1].record
    # a memoriser and a generator that samples test images: flagged everywhere, never starred
    from synthbench.plugins import GENERATORS

    from adversarial_adapters import CopyCat, Peeker

    for cls in (CopyCat, Peeker):
        GENERATORS.register(cls.name, cls)
    for name, opts in (("replace", {}), ("mia", {"shadows": "2"})):
        run_cells(smoke_digits, {"copycat": {}, "peeker": {}}, {name: opts}, [0], store)
    spec = dict(replace_edm.spec.to_json(), generator=PAYLOAD_NAME, generator_options={"prompt": PAYLOAD_OPTION})
    store.write(Record.from_json(seal({
        "schema_version": 1, "cell_hash": cell_hash(spec), "spec": spec, "status": "failed", "error": PAYLOAD_ERROR,
        "traceback": f"Traceback (most recent call last):\n{PAYLOAD_ERROR}", "metrics": {}, "details": {},
        "cost": {"wall_s": {"cell_s": 0.1, "fit_s": 0.0}, "device": "cpu"},
        "provenance": {"created": "2024-01-01T00:00:00+00:00"}})))
    try:
        return build_site(store.root, root / "site")
    finally:
        for cls in (CopyCat, Peeker):
            GENERATORS.unregister(cls.name)


def _rows(page, table_id: str) -> list[str]:
    """The table's generators in page order, the two flagged adversarial ones left out."""
    rows = page.eval_on_selector_all(f"#{table_id} tbody tr", "rows => rows.map(r => r.dataset.generator)")
    return [g for g in rows if g not in ("copycat", "peeker")]


def test_site_in_headless_chromium(site, tmp_path):
    chromium = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    pages = [p for p in site.pages]
    assert {p.parent.name for p in pages} >= {"protocols", "generators"}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            images = 0
            for path in pages:  # every page: every image loads, no payload ran
                page.goto(path.resolve().as_uri())
                page.wait_for_load_state("load")
                broken = page.evaluate("Array.from(document.images)"
                                       ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
                assert broken == [], f"{path.name}: images that did not load: {broken}"
                images += page.evaluate("document.images.length")
                assert page.evaluate("typeof window.__pwned") == "undefined", path.name

            index = site.out / "index.html"
            page.goto(index.resolve().as_uri())
            page.wait_for_load_state("load")
            tables = page.locator("table.board:not(.headline-board)")
            assert tables.count() == len(CELLS)
            # the headline: generators x protocols, edm ranked, the reference shown and not ranked
            head = page.locator("table.headline-board")
            assert head.count() == 1
            ranked = head.locator("tbody tr", has=page.locator("td.rank strong"))
            assert ranked.count() == 1 and ranked.first.get_attribute("data-generator") == "edm"
            assert head.locator("tr.oracle td.rank").inner_text().strip() == "–"
            assert page.locator("tr.oracle .mark").count() == 0  # no star on the reference anywhere
            for name, flag in (("copycat", "memorises"), ("peeker", "contaminated")):
                rows = page.locator(f"tr[data-generator='{name}']")
                assert rows.count() == 3, name  # the headline, replace and mia
                for i in range(rows.count()):
                    assert flag in rows.nth(i).locator(".badge.flag").first.inner_text(), (name, i)
                    assert rows.nth(i).locator(".mark").count() == 0, (name, i)  # never starred
                    assert rows.nth(i).locator("td.rank strong").count() == 0  # never ranked
            headings = page.locator("h3").all_inner_texts()
            assert any(h.startswith("replace on digits") for h in headings), headings

            shot = tmp_path / "leaderboard.png"
            page.screenshot(path=str(shot), full_page=True)

            # The replace table: reference first, then edm, the failed hostile row last.
            anchor = page.locator("h3", has_text="replace on digits").get_attribute("id")
            table_id = f"table-{anchor}"
            before = _rows(page, table_id)
            assert before == ["real", "edm", PAYLOAD_NAME]
            failed = page.locator(f"#{table_id} tbody tr").last
            assert "failed" in failed.inner_text() and PAYLOAD_ERROR in failed.inner_text()
            assert PAYLOAD_NAME in failed.locator("th").inner_text()  # shown as text
            assert PAYLOAD_OPTION in failed.locator("th").inner_text()

            top1 = page.locator(f"#{table_id} thead th", has_text="top1").first.locator("button")
            top1.click()  # best first (descending): the order it was built in
            assert page.locator(f"#{table_id} thead th", has_text="top1").first.get_attribute("aria-sort") == "descending"
            top1.click()  # reversed: ascending; the failed row stays last
            after = _rows(page, table_id)
            assert after == ["edm", "real", PAYLOAD_NAME] and after != before
            values = page.eval_on_selector_all(f"#{table_id} tbody tr td:nth-child(2)",
                                               "tds => tds.map(td => td.dataset.value)")
            numbers = [float(v) for v in values if v]
            assert numbers == sorted(numbers) and values[-1] == ""
            page.locator(f"#{table_id} thead th", has_text="generator").locator("button").click()
            assert _rows(page, table_id) == sorted(["real", "edm", PAYLOAD_NAME])
        finally:
            browser.close()
    assert images >= 10, images
    assert problems == []
    assert shot.stat().st_size > 20_000
    target = os.environ.get("SYNTHBENCH_SCREENSHOT_DIR")
    if target:
        os.makedirs(target, exist_ok=True)
        shutil.copy(shot, os.path.join(target, "leaderboard.png"))


def test_protocol_pages_hold_the_figures_the_records_hold(site):
    """Curves for scaleup and recon, Grad-CAM and PCA for recon, closest pairs for
    mia, PCA for fidelity, per-class bars and confusion matrices for replace."""
    figures = {p.name for p in (site.out / "img").rglob("*.*")}
    kinds = {name.rsplit("-", 1)[-1].split(".")[0] for name in figures}
    assert {"curves", "class", "confusion", "pca", "gradcam", "pairs", "headline", "roc", "tradeoff"} <= kinds, kinds
    per_class_fid = [n for n in figures if n.endswith("-per-class-fidelity.svg")]
    assert len(per_class_fid) == 2, per_class_fid  # real and edm under fidelity, nowhere else
    fidelity = next(p for p in site.pages if p.parent.name == "protocols" and p.name.startswith("fidelity"))
    assert "per-class-fidelity.svg" in fidelity.read_text()
    scaleup = next(p for p in site.pages if p.parent.name == "protocols" and p.name.startswith("scaleup"))
    text = scaleup.read_text()
    assert "compare-curves.svg" in text and "top1_x2" in text
