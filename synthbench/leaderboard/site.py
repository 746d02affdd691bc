"""Render the static leaderboard: records -> tables -> jinja2 pages and figures.

The site opens from disk (``file://``) with no server and no network: the only
script and style sheet ship in this package (``static/``) and are copied next to
the pages; figures are files beside them. Templates autoescape everything, and
the pages carry a Content-Security-Policy that allows no inline script, so a
generator name, option value or error text is shown as text, never run.

Layout of ``--out DIR``::

    index.html                  one table per dataset x protocol
    findings.html               the papers' findings tested on the records, which
                                cheap metric predicts utility, pairs separated, cost
    protocols/<slug>.html       every metric, comparison figures, each row's figures
    generators/<slug>.html      every table the generator is in, with its figures
    img/<table>/<row>-<kind>.*  figures (SVG for charts, PNG for maps and images)
    static/                     sort.js, synthbench.css
    .synthbench-site            marks the folder as ours, so a rebuild may clear it
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import synthbench
from synthbench.benchmark.progress import say
from synthbench.errors import UserError
from synthbench.leaderboard import plots
from synthbench.leaderboard.aggregate import (LeftOut, PluginInfo, Row, Table, build_headlines, build_tables, by_dataset,
                                              fmt,
                                              read_store, slug, store_digest)

PACKAGE_DIR = Path(__file__).parent
MARKER = ".synthbench-site"
GENERATED = ("index.html", "protocols", "generators", "img", "static", "downloads", "about.html", "findings.html")


@dataclass
class Figure:
    """One picture on a page: its path relative to the site root and a caption."""

    src: str
    caption: str
    kind: str


@dataclass
class SiteBuild:
    """What a build produced (the command prints it; tests read it)."""

    out: Path
    pages: list[Path] = field(default_factory=list)
    figures: int = 0
    tables: int = 0
    records: int = 0
    left_out: list[LeftOut] = field(default_factory=list)
    """Files of the store that are not valid records: listed, not rendered."""
    digest: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    """Current tables whose rows were computed in different ways (``audit.provenance_warnings``)."""
    built_tables: list[Table] = field(default_factory=list, repr=False)
    """The tables the site shows (for the README's results section)."""


@functools.lru_cache(maxsize=1)
def _environment():
    """The template environment, compiled once per process (its templates are cached in it)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
                             autoescape=True,  # every value is text unless a template says otherwise (none does)
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    from synthbench.leaderboard.audit import separation

    env.globals.update(fmt=fmt, gen_slug=slug, proto_slug=slug, separation=separation)
    return env


def _protocol_info(names: list[str]) -> list[dict[str, Any]]:
    """The installed protocols (and any the records name), each with its
    description, source and every metric's ranking rule, for the about page."""
    from synthbench.benchmark.metrics import rule_text
    from synthbench.plugins import PROTOCOLS

    out = []
    for name in sorted(set(PROTOCOLS.names()) | set(names)):
        try:
            cls = PROTOCOLS.get(name)
        except UserError:
            out.append({"name": name, "version": "?", "description": "(not installed here)", "source": "",
                        "metrics": []})
            continue
        out.append({"name": name, "version": cls.version, "description": getattr(cls, "description", ""),
                    "source": getattr(cls, "source", ""),
                    "metrics": [(m, rule_text(rule)) for m, rule in cls.metrics.items()]})
    return out


def generator_card(name: str, entries: list[tuple[Table, list[Row], list[Row]]]) -> dict[str, Any]:
    """What a generator is (from its adapter: description, paper, version, where
    it comes from, what it needs, its options) and what it cost (from its
    records: the fit, and the compute of all its cells, per dataset and preset)."""
    from synthbench.plugins import GENERATORS

    card: dict[str, Any] = {"known": False, "costs": []}
    try:
        cls = GENERATORS.get(name)
    except UserError:  # records of an adapter that is not installed here
        cls = None
    if cls is not None:
        card.update(known=True, description=getattr(cls, "description", ""), paper=getattr(cls, "paper", ""),
                    paper_url=getattr(cls, "paper_url", ""), version=getattr(cls, "version", None),
                    origin=GENERATORS.origin(name), needs=getattr(cls, "needs", ""),
                    options=[(o.name, o.default, o.help) for o in getattr(cls, "options", {}).values()])
    costs: dict[tuple[str, str], dict[str, float]] = {}
    for table, rows, _ in entries:
        if table.stale:
            continue
        for row in rows:  # its variants (e.g. ablation arms) are its cells too, as on the findings page's cost
            if row.stale:
                continue
            c = costs.setdefault((table.dataset, table.preset), {"fit_s": 0.0, "wall_s": 0.0, "cells": 0})
            for rec in row.records:
                wall = rec.cost.get("wall_s") or {}
                c["fit_s"] = max(c["fit_s"], float(wall.get("fit_s") or 0.0))
                c["cells"] += 1
            c["wall_s"] += row.wall_s
    card["costs"] = [(d, p, c) for (d, p), c in sorted(costs.items())]
    return card


def _downloads(records: list, folder: Path) -> None:
    """The numbers behind the site, for anyone who wants them out: every metric as
    CSV (``synthbench export``'s rows) and every record, whole, as JSON lines
    (each with its ``record_digest``, so a reader can check it)."""
    from synthbench.leaderboard.export import write

    folder.mkdir(parents=True, exist_ok=True)
    write(records, folder / "synthbench-results.csv", "csv")
    with (folder / "records.jsonl").open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.to_json(), sort_keys=True) + "\n")


def _prepare_out(out: Path) -> None:
    """Create ``out``, or clear what a previous build left there; refuse to write
    into a non-empty folder that is not a synthbench site (it may be anything)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file. Give --out a folder (it is created if missing).")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"--out {out} is a non-empty folder that is not a synthbench site. Give an empty "
                        f"or new folder (e.g. --out site), so nothing of yours is overwritten.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        (out / MARKER).write_text("built by `synthbench leaderboard`; the folder is cleared on rebuild\n")
    except OSError as exc:
        raise UserError(f"Cannot write the site to {out} ({exc.strerror or exc}). Give --out a folder you "
                        f"can write to.") from None


def _build_date() -> datetime:
    """Now, or ``SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- figures


def _details(row: Row) -> list[dict[str, Any]]:
    return [r.details for r in row.ok_records]


def _seeds_text(row: Row, how: str) -> str:
    """``mean over seeds 0, 1, 2`` / ``summed over ...`` / ``seed 0``: what a figure shows."""
    seeds = [r.spec.seed for r in row.ok_records]
    if how != "first" and len(seeds) > 1:
        return f"{how} over seeds {', '.join(map(str, seeds))}"
    return f"seed {seeds[0]}" if seeds else ""


def _top1_only(curve: Any) -> Any:
    """``augment``'s ``replace_curve`` without its size columns, which would draw as series."""
    return {k: curve[k] for k in ("fractions", "top1") if k in curve} if isinstance(curve, dict) else None


RowFigure = tuple[str, str, str, str, Callable[[list[dict[str, Any]], Path, list[str]], Path | None]]
ROW_FIGURES: list[RowFigure] = [
    # kind, caption, extension, how seeds combine (mean, summed, first), draw(details of the ok seeds, path,
    # metric order)
    ("curves", "curves (mean over seeds, 95% band)", "svg", "mean",
     lambda ds, p, order: plots.curves_figure({"": plots.mean_of([d.get("curve") for d in ds])}, p, order=order,
                                              spread={"": [d.get("curve") for d in ds]})),
    ("replace-curve", "accuracy against the fraction of real images replaced (mean over seeds, 95% band)", "svg",
     "mean", lambda ds, p, order: plots.curves_figure(
         {"": plots.mean_of([_top1_only(d.get("replace_curve")) for d in ds])}, p, order=order,
         spread={"": [_top1_only(d.get("replace_curve")) for d in ds]})),
    ("per-class", "per-class accuracy", "svg", "mean",
     lambda ds, p, order: plots.per_class_figure(plots.mean_of([d.get("per_class_accuracy") for d in ds]), p)),
    ("per-class-fidelity", "per-class fidelity in the real-trained classifier's feature space, floor in grey",
     "svg", "mean", lambda ds, p, order: plots.per_class_fidelity_figure(
         plots.mean_of([d.get("classifier") for d in ds]), p)),
    ("confusion", "confusion matrix (counts; colour: share of the true class)", "png", "summed",
     lambda ds, p, order: plots.confusion_figure(plots.sum_of([d.get("confusion_matrix") for d in ds]), p)),
    ("corruptions", "accuracy under corruption, by severity", "svg", "mean",
     lambda ds, p, order: plots.corruption_figure(plots.mean_of([d.get("per_corruption") for d in ds]),
                                           ds[0].get("severities"), p)),
    ("pca", "PCA of classifier features", "png", "first", lambda ds, p, order: plots.pca_figure(ds[0].get("pca"), p)),
    ("gradcam", "Grad-CAM on fixed test images (one per class)", "png", "first",
     lambda ds, p, order: plots.gradcam_figure(ds[0].get("gradcam"), p)),
    ("roc", "membership-inference ROC, log-log, chance dashed", "svg", "first",
     lambda ds, p, order: plots.roc_figure(ds[0].get("roc_curves"), p)),
    ("pairs", "closest synthetic / member pairs (copy check)", "png", "first",
     lambda ds, p, order: plots.pairs_figure(ds[0].get("closest_pairs"), p)),
    ("test-pairs", "closest synthetic / test pairs (contamination check)", "png", "first",
     lambda ds, p, order: plots.pairs_figure(ds[0].get("closest_test_pairs"), p, other="test")),
    ("samples", "samples", "png", "first",
     lambda ds, p, order: plots.samples_figure(ds[0].get("samples"), p, ds[0].get("sample_labels"))),
]
"""Figures drawn for a row when its records hold the data; keyed by ``details``
names, not by protocol, so any protocol that records e.g. a ``curve`` gets one."""


def _draw(draw: Callable[[], Path | None], what: str) -> Path | None:
    """A figure that cannot be drawn from odd ``details`` is left out, with a
    warning; it must not take the whole site down (``details`` is free-form JSON,
    so anything from a ``TypeError`` to a float overflow in matplotlib may come)."""
    try:
        return draw()
    except Exception as exc:
        say(f"warning: figure {what} skipped ({type(exc).__name__}: {exc})")
        return None


def _row_figures(table: Table, row: Row, out: Path) -> list[Figure]:
    details = _details(row)
    if not details:
        return []
    figures = []
    for kind, caption, ext, how, draw in ROW_FIGURES:
        rel = f"img/{table.anchor}/{row.key}-{kind}.{ext}"
        path = _draw(lambda: draw(details, out / rel, table.all_metrics), f"{kind} of {row.label} in {table.anchor}")
        if path is not None:
            figures.append(Figure(rel, f"{caption} ({_seeds_text(row, how)})", kind))
    return figures


def _table_figures(table: Table, out: Path) -> list[Figure]:
    """Comparisons across a table's rows: the headline with its interval, and the
    curves of every row on shared axes (with the real line)."""
    figures = []
    if table.headline:
        entries = [(r.label, r.stats[table.headline].mean, r.stats[table.headline].half, r.oracle)
                   for r in table.rows if table.headline in r.stats and not r.stale]
        rel = f"img/{table.anchor}/compare-headline.svg"
        if entries and _draw(lambda: plots.interval_bars_figure(
                entries, out / rel, table.headline, table.rule_text(table.headline)), rel):
            figures.append(Figure(rel, f"{table.headline} by generator, mean ± 95% interval", "headline"))
    x_name, y_name = "synthetic_top1", "synthetic_online_auc"  # mia: what privacy cost in usefulness
    if table.protocol == "mia" and x_name in table.all_metrics and y_name in table.all_metrics:
        points = [(r.label, r.stats[x_name].mean, r.stats[y_name].mean, r.oracle) for r in table.rows
                  if not r.stale and x_name in r.stats and y_name in r.stats]
        rel = f"img/{table.anchor}/privacy-tradeoff.svg"
        if _draw(lambda: plots.tradeoff_figure(points, out / rel, "utility: top-1 of a classifier trained on its "
                                               "samples", "privacy risk: LiRA AUC (0.5 = chance)"), rel):
            figures.append(Figure(rel, "privacy against utility: lower is more private, further right more useful",
                                  "tradeoff"))
    lines = {r.label: plots.mean_of([d.get("curve") for d in _details(r)]) for r in table.rows if r.ok_records}
    lines = {k: v for k, v in lines.items() if plots.split_curve(v) is not None}
    if len(lines) >= 2:
        rel = f"img/{table.anchor}/compare-curves.svg"
        spread = {r.label: [d.get("curve") for d in _details(r)] for r in table.rows if r.ok_records}
        if _draw(lambda: plots.curves_figure(lines, out / rel, order=table.all_metrics, spread=spread), rel):
            figures.append(Figure(rel, "curves of every generator (mean over seeds, 95% band), reference dashed",
                                  "curves"))
    return figures


def _scalar_details(row: Row) -> list[tuple[str, str]]:
    """The first ok record's scalar ``details`` (sizes, settings) as text pairs."""
    details = _details(row)
    if not details:
        return []
    return [(k, str(v)) for k, v in sorted(details[0].items())
            if v is None or isinstance(v, (str, int, float, bool))]


# --------------------------------------------------------------------------- pages


def findings_context(tables: list[Table]) -> dict[str, Any]:
    """What the findings page shows: the papers' findings tested on the tables,
    the predictive-validity tables, the pairs each table separates, the cost,
    and the provenance (with its warnings)."""
    from synthbench.leaderboard.audit import cost_tables, provenance_text, provenance_warnings, separation
    from synthbench.leaderboard.findings import MAIN_DATASETS, build_findings
    from synthbench.leaderboard.validity import predictive_validity

    current = [t for t in tables if not t.stale]
    seps = [(t, sep) for t in current if (sep := separation(t)) is not None]
    return {"findings": build_findings(tables), "main_datasets": MAIN_DATASETS,
            "validity": predictive_validity(tables), "separations": seps, "costs": cost_tables(tables),
            "warnings": provenance_warnings(tables), "provenance": provenance_text(tables)}


def build_site(results: str | Path, out: str | Path, strict: bool = False) -> SiteBuild:
    """Read the store at ``results`` and write the site to ``out``. Invalid records
    are left out and listed on the index page, or with ``strict`` stop the build
    (:func:`~synthbench.leaderboard.aggregate.read_store`)."""
    start = time.perf_counter()
    read = read_store(results, strict=strict)
    records = read.records
    out = Path(out)
    _prepare_out(out)
    tables = build_tables(records, PluginInfo(), read.stamps)
    context = findings_context(tables)
    build = SiteBuild(out=out, tables=len(tables), records=len(records), left_out=read.left_out,
                      digest=store_digest(records), warnings=list(context["warnings"]), built_tables=tables)
    env = _environment()
    footer = {"version": synthbench.__version__, "digest": build.digest, "records": len(records),
              "left_out": len(read.left_out), "date": _build_date().strftime("%Y-%m-%d %H:%M UTC"),
              "results": str(results)}

    row_figures: dict[tuple[str, str], list[Figure]] = {}
    table_figures: dict[str, list[Figure]] = {}
    for table in tables:
        table_figures[table.anchor] = _table_figures(table, out)
        for row in table.rows:
            row_figures[(table.anchor, row.key)] = _row_figures(table, row, out)
    build.figures = sum(map(len, row_figures.values())) + sum(map(len, table_figures.values()))

    static = out / "static"
    shutil.copytree(PACKAGE_DIR / "static", static)
    _downloads(records, out / "downloads")

    def page(template: str, rel: str, **context: Any) -> None:
        root = "../" * rel.count("/")
        html = env.get_template(template).render(root=root, footer=footer, **context)
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
        build.pages.append(path)

    protocols = sorted({t.protocol for t in tables})
    generators = sorted({r.generator for t in tables for r in t.rows})
    page("index.html", "index.html", datasets=by_dataset(tables), stale=[t for t in tables if t.stale],
         headlines=build_headlines(tables),
         left_out=read.left_out, protocols=protocols, generators=generators, title="synthbench leaderboard")
    page("findings.html", "findings.html", title="synthbench findings", protocols=protocols, generators=generators,
         **context)
    page("about.html", "about.html", protocol_info=_protocol_info(protocols), protocols=protocols,
         generators=generators, title="about synthbench")
    for name in protocols:
        mine = [t for t in tables if t.protocol == name]
        page("protocol.html", f"protocols/{slug(name)}.html", name=name, tables=mine,
             table_figures=table_figures, row_figures=row_figures, scalar_details=_scalar_details,
             protocols=protocols, generators=generators, title=f"protocol {name}")
    for name in generators:
        mine = [(t, [r for r in t.rows if r.generator == name], [r for r in t.rows if r.oracle and r.generator != name])
                for t in tables if any(r.generator == name for r in t.rows)]
        samples = next((f for t, rows, _ in mine for r in rows for f in row_figures[(t.anchor, r.key)]
                        if f.kind == "samples"), None)
        page("generator.html", f"generators/{slug(name)}.html", name=name, entries=mine,
             card=generator_card(name, mine), samples=samples,
             row_figures=row_figures, table_figures=table_figures, protocols=protocols, generators=generators,
             title=f"generator {name}")
    build.seconds = time.perf_counter() - start
    return build
