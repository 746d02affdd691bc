"""``synthbench leaderboard`` and ``synthbench regress`` (registered in ``cli.py``).

Only click is imported here; the machinery loads when a command runs, so
``synthbench --help`` stays fast. Bad input raises :class:`UserError` (one
paragraph, exit status 2); ``regress`` exits 1 when a score drifted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

DEFAULT_SUITE = "configs/regress.yaml"


@click.command()
@click.option("--results", default="results", metavar="DIR", show_default=True,
              help="Result store to read (records under DIR/records).")
@click.option("--out", default="site", metavar="DIR", show_default=True,
              help="Folder to write the site to; a folder from an earlier build is cleared first.")
@click.option("--strict", is_flag=True,
              help="Stop at the first invalid record (exit 2) instead of leaving it out and listing it.")
@click.option("--readme", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="Also rewrite FILE's generated results section (between its synthbench:results markers) "
                   "from the store.")
@click.option("--quiet", "-q", is_flag=True, help="No status lines.")
def leaderboard(results: str, out: str, strict: bool, readme: str | None, quiet: bool) -> None:
    """Render the static leaderboard site from a result store.

    One table per dataset x protocol (mean ± 95% interval over seeds, best and ties
    marked, cost beside the score), a page per protocol and per generator with
    the figures the records hold. Opens from disk: no server, no network.

    A file that is not a valid record (unreadable, failing the record schema, or
    edited after it was written) is left out of every table and listed, here and
    on the index page; --strict stops the build on it instead. A valid record
    copied beside itself is left out and listed as a copy to remove (its cell
    counts once; --strict builds). A table whose rows
    ran at different CPU thread counts, precisions or devices, or with fewer
    seeds in some rows, gets a mixed-provenance warning.
    """
    from synthbench.benchmark import progress

    if quiet:
        progress.set_enabled(False)
    from synthbench.leaderboard.site import build_site

    if readme:
        from synthbench.leaderboard.readme import check_readme

        check_readme(readme)  # a wrong path fails before the build, not after it
    build = build_site(results, out, strict=strict)
    for item in build.left_out:
        click.echo(f"warning: left out {Path(results) / item.path}: {item.reason}", err=True)
    invalid = [item for item in build.left_out if not item.copy]  # a copy of a valid record is not invalid
    if invalid:
        click.echo(f"warning: {len(invalid)} invalid record file(s) in {results} left out of the "
                   f"leaderboard (listed on its index page); --strict stops on them instead.", err=True)
    if len(invalid) < len(build.left_out):
        click.echo(f"warning: {len(build.left_out) - len(invalid)} copied record file(s) in {results} left out of "
                   f"the leaderboard: each holds a cell another file holds, which is used (listed on its index "
                   f"page); remove the copies.", err=True)
    for line in build.warnings:
        click.echo(f"warning: mixed provenance: {line}", err=True)
    if readme:
        from synthbench.leaderboard.readme import update_readme

        changed = update_readme(readme, build.built_tables)
        click.echo(f"{readme}: results section {'rewritten' if changed else 'already current'}")
    click.echo(f"{build.records} records -> {build.tables} tables, {len(build.pages)} pages, "
               f"{build.figures} figures in {build.seconds:.1f} s")
    click.echo(f"open {(build.out / 'index.html').resolve().as_uri()}")


@click.command()
@click.option("--suite", default=DEFAULT_SUITE, metavar="FILE.yaml", show_default=True,
              help="The fixed grid to recompute: dataset, preset, seeds, generators, protocols, tolerances.")
@click.option("--baseline", default=None, metavar="DIR",
              help="Folder of committed baselines; reads DIR/<suite name>.json. "
                   "[default: regress-baseline/ beside the suite]")
@click.option("--update-baseline", is_flag=True,
              help="Recompute and write the baseline instead of comparing (after a change that moves "
                   "scores on purpose, together with the plugin's version bump).")
@click.option("--results", default=None, metavar="DIR",
              help="Compute in this result store (reusing its records and caches) instead of a fresh "
                   "temporary one. For debugging: a stale cache can hide drift.")
@click.option("--show-all", is_flag=True, help="List every compared metric, not only those that moved.")
@click.option("--executor", type=click.Choice(["inline", "processes"]), default="inline", show_default=True,
              help="Compute the suite in this process or over worker processes (at the suite's threads "
                   "each): the numbers must not depend on it.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, metavar="N",
              help="Worker processes for --executor processes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
def regress(suite: str, baseline: str | None, update_baseline: bool, results: str | None, show_all: bool,
            executor: str, workers: int, quiet: bool) -> None:
    """Recompute a small fixed grid and compare every metric with a committed baseline.

    Prints what moved; exits 1 when any metric drifted past its tolerance, a cell's
    status changed, or a plugin's version differs from the baseline's (regenerate it
    with --update-baseline), and 0 otherwise.
    """
    from synthbench.benchmark import progress

    if quiet:
        progress.set_enabled(False)
        os.environ["SYNTHBENCH_PROGRESS"] = "0"  # worker processes read it
    from synthbench.leaderboard import regress as rg

    spec = rg.load_suite(suite)
    baseline_path = rg.baseline_path(spec, baseline)
    from synthbench.benchmark.executors import make_executor

    runner = make_executor(executor, workers=workers, threads=spec.threads)
    if update_baseline:
        current = rg.compute(spec, results, runner)
        rg.write_baseline(baseline_path, spec, current)
        click.echo(f"baseline written: {baseline_path} ({len(current['cells'])} cells)")
        return
    expected = rg.read_baseline(baseline_path)
    current = rg.compute(spec, results, runner)
    report = rg.compare(spec, expected, current)
    click.echo(rg.render(report, show_all=show_all))
    if report.drifted:
        click.echo(f"Drift against {baseline_path}. If the change is intended, bump the plugin's version and "
                   f"regenerate the baseline with `synthbench regress --suite {suite} --update-baseline`, "
                   f"then commit both.", err=True)
        sys.exit(1)


@click.command()
@click.option("--results", default="results", metavar="DIR", show_default=True,
              help="Result store to read (records under DIR/records).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default=None,
              help="csv and jsonl need nothing more; parquet needs pyarrow (pip install -e \".[export]\"). "
                   "Default: from --out's suffix (.csv, .jsonl, .parquet), else csv.")
@click.option("--out", default=None, metavar="FILE", help="Where to write [default: synthbench-results.FORMAT].")
@click.option("--strict", is_flag=True, help="Stop at the first invalid record (exit 2) instead of leaving it out.")
def export(results: str, fmt: str | None, out: str | None, strict: bool) -> None:
    """Every metric of every record, one row each, with its cell's dataset,
    generator and options, protocol and options, preset, seed, versions, thread
    count and device. From Python: synthbench.api.load_results(DIR) gives the
    same rows as a pandas DataFrame."""
    from synthbench.leaderboard.aggregate import read_store
    from synthbench.leaderboard.export import write
    from synthbench.samples_cli import out_format

    fmt = out_format(fmt, out, {f".{f}": f for f in ("csv", "jsonl", "parquet")}, "csv") if out else fmt or "csv"
    read = read_store(results, strict=strict)
    for item in read.left_out:
        click.echo(f"warning: left out {Path(results) / item.path}: {item.reason}", err=True)
    target = Path(out or f"synthbench-results.{fmt}")
    n = write(read.records, target, fmt)
    click.echo(f"{n} rows from {len(read.records)} records -> {target}")
