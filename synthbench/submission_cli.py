"""``synthbench submit`` and ``synthbench verify``: records handed to the board's
maintainers in a form they can check by re-running it
(``leaderboard/submission.py`` says what a bundle holds and what is checked)."""

from __future__ import annotations

import os
import shutil
import sys

import click


@click.command()
@click.option("--results", required=True, metavar="DIR", type=click.Path(file_okay=False),
              help="The result store holding the generator's records.")
@click.option("--generator", "-g", required=True, metavar="NAME", help="The generator whose records to pack.")
@click.option("--out", required=True, metavar="BUNDLE.tar.gz", help="Where to write the bundle (must not exist).")
@click.option("--samples", default=None, metavar="PATH",
              help="For the samples generator: the folder, .npz or .tar the records scored (packed with them; only "
                   "the records of these samples are packed).")
def submit(results: str, generator: str, out: str, samples: str | None) -> None:
    """Pack a generator's records, its metadata and a manifest into a bundle for the leaderboard."""
    from synthbench.leaderboard.submission import submit as pack

    made = pack(results, generator, out, samples)
    click.echo(f"wrote {made['path']}: {made['records']} records of {generator} and their manifest. Send it to the "
               f"maintainers; they check it with `synthbench verify {made['path']} --cells 3`.")
    if made["left_out"]:
        skipped = made["left_out"]
        click.echo(f"left out {sum(s['records'] for s in skipped)} records of {generator} that scored other samples "
                   f"than --samples {samples} (" + "; ".join(
                       f"{s['label']}: {s['records']}, digest {s['samples_digest'][:12]}" for s in skipped)
                   + "): a bundle holds only the records of the images it packs. Submit each of those sources in "
                     "a bundle of its own, with its own --samples.", err=True)


@click.command()
@click.argument("bundle", metavar="BUNDLE.tar.gz")
@click.option("--cells", type=click.IntRange(0), default=3, show_default=True, metavar="K",
              help="How many randomly chosen ok cells to recompute.")
@click.option("--seed", type=click.IntRange(0), default=None, metavar="S",
              help="Seed of the random choice (default: a fresh one, printed so the check can be repeated).")
@click.option("--suite", default="configs/regress.yaml", show_default=True, metavar="FILE",
              help="The regression suite whose tolerances a recomputed metric must stay within.")
@click.option("--results", default=None, metavar="DIR", type=click.Path(file_okay=False),
              help="On success, add the records to this store and stamp them verified (the leaderboard shows it).")
@click.option("--data-root", default=None, metavar="DIR", help="Folder holding the dataset's files.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: the device type the records name.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
def verify(bundle: str, cells: int, seed: int | None, suite: str, results: str | None, data_root: str | None,
           device: str, quiet: bool) -> None:
    """Check a submitted bundle and recompute K of its cells here.

    Exit 0 when every recomputed metric is within the tolerances, 1 when the
    bundle is rejected or a cell does not match (the cells are named).
    """
    from tabulate import tabulate

    from synthbench.benchmark import progress
    from synthbench.leaderboard.regress import load_suite
    from synthbench.errors import UserError
    from synthbench.leaderboard.submission import Rejected, stamp, verify as run_verify

    if quiet:
        progress.set_enabled(False)
    if results and not cells:
        raise UserError(f"--cells 0 recomputes nothing, so it cannot add the bundle to {results} as verified (the "
                        f"leaderboard would mark rows nobody re-ran '✓ verified'). Give --cells 1 or more with "
                        f"--results, or leave --results out to check the bundle's integrity only.")
    tolerances = load_suite(suite)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    try:
        opened, checks, work = run_verify(bundle, cells, seed, tolerances, data_root, device)
    except Rejected as exc:
        click.echo(f"REJECTED {bundle}: {exc}. Nothing was run; ask the submitter for a bundle as "
                   f"`synthbench submit` wrote it.", err=True)
        sys.exit(1)
    try:
        meta = opened.metadata
        click.echo(f"bundle {bundle} (sha256 {opened.sha256[:16]}): {len(opened.records)} records of "
                   f"{meta.get('generator')}; manifest and record digests ok")
        click.echo(f"recomputing {len(checks)} cells chosen with --seed {seed}")
        rows = []
        for c in checks:
            if c.problem:
                rows.append((c.key, "-", "-", "-", "-", c.problem))
            for line in c.lines:
                rows.append((c.key, line.metric, line.baseline, line.current, line.tolerance, line.verdict))
        if rows:
            click.echo(tabulate(rows, headers=["cell", "metric", "bundle", "recomputed", "tolerance", "verdict"]))
        bad = [c for c in checks if not c.ok]
        if bad:
            click.echo(f"MISMATCH in {len(bad)} of {len(checks)} cells: " + "; ".join(
                f"{c.key} ({c.cell_hash[:12]})" for c in bad), err=True)
            sys.exit(1)
        if results and not checks:
            click.echo(f"not added to {results}: the bundle holds no ok cell to recompute, so nothing in it can be "
                       f"verified", err=True)
            sys.exit(1)
        click.echo(f"verified: {len(checks)} cells recomputed within the tolerances of {suite}")
        if results:
            path = stamp(results, opened, checks)
            click.echo(f"added {len(opened.records)} records to {results}; stamp {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not checks and not cells:
        click.echo("note: --cells 0 checked the bundle's integrity only", err=True)
