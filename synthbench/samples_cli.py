"""``synthbench export-samples``: any adapter's sample pool written as files, so
a user can generate on a GPU machine and score elsewhere (``--generator
samples:PATH``), or publish a synthetic set. Only a class-conditional
adapter's pool is written: see :func:`_unconditional` for why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from synthbench.benchmark.presets import PRESETS
from synthbench.errors import UserError


def out_format(fmt: str | None, out: str, by_suffix: dict[str, str], default: str) -> str:
    """The format to write: ``--format``, else the one ``--out``'s suffix names
    in ``by_suffix`` (``x.npz`` written as a folder named ``x.npz``, or CSV text
    in ``x.parquet``, was what following the README gave), else ``default``; a
    suffix that names another format than the one given is an error rather
    than a file that no reader of that suffix can open. Shared by
    ``export-samples`` and ``export``."""
    suffix = by_suffix.get(Path(out).suffix.lower())
    if fmt is None:
        return suffix or default
    if suffix is not None and suffix != fmt:
        raise UserError(f"--out {out} names a .{suffix} file but --format is {fmt}; drop --format (it follows the "
                        f"suffix) or give --out a name that fits {fmt}.")
    return fmt


def export_format(fmt: str | None, out: str) -> str:
    """``export-samples``' format: --format, else .npz or .tar from --out, else a folder."""
    return out_format(fmt, out, {".npz": "npz", ".tar": "tar"}, "folder")


@click.command(name="export-samples")
@click.option("--generator", "-g", required=True, metavar="NAME", help="The adapter whose samples to write.")
@click.option("--dataset", "-d", default="digits", show_default=True, metavar="NAME",
              help="The dataset it is fitted on (its train split sets the class balance).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="fast", show_default=True)
@click.option("--multiple", type=click.IntRange(1, 100), default=1, show_default=True, metavar="M",
              help="How many images: M x the real train split, in its class balance (scaleup xM needs M).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, metavar="S",
              help="The run seed whose pool is written; scoring the files at seed S reproduces it exactly.")
@click.option("--format", "fmt", type=click.Choice(["folder", "npz", "tar"]), default=None,
              help="folder: OUT/CLASS/NNNNNN.png; npz: images, labels, class_names; tar: NNNNNN.png + .cls "
                   "(the class index). Default: from --out's suffix (.npz, .tar), else folder.")
@click.option("--out", required=True, metavar="PATH", help="Where to write (must not exist).")
@click.option("--option", "-o", multiple=True, metavar="KEY=VALUE", help="Generator option. Repeatable.")
@click.option("--results", default="runs", show_default=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Caches (fitted weights, sample pools) go under DIR/cache, shared with evaluate.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1, 1024), default=None, metavar="N",
              help="CPU threads (part of the fit's key, as in evaluate).")
@click.option("--data-root", default=None, metavar="DIR", help="Folder holding the dataset's files.")
@click.option("--adapter-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Most seconds one adapter call may take (0: no limit).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
def export_samples(generator: str, dataset: str, preset: str, multiple: int, seed: int, fmt: str | None, out: str,
                   option: tuple[str, ...], results: str, device: str, threads: int | None, data_root: str | None,
                   adapter_timeout: float | None, quiet: bool) -> None:
    """Write GENERATOR's first M x (train size) samples of run seed S as files.

    They are the images `evaluate` trains on at that seed (the same fit and pool
    caches), laid out so that `evaluate -g samples:OUT --seed S` draws them in
    the same order and gives the same numbers. Class-conditional adapters only:
    an unconditional one (e.g. `-o conditional=false`) is refused, because its
    pseudo-labelled pool is not class-balanced; score it with `evaluate -g`.
    """
    import torch

    fmt = export_format(fmt, out)
    from synthbench.benchmark import progress
    from synthbench.benchmark.context import CellContext, FitContext
    from synthbench.benchmark.guard import DEFAULT_TIMEOUT_S, Guarded, timeout_option
    from synthbench.benchmark.runner import make_grid
    from synthbench.benchmark.sample_cache import SampleCache
    from synthbench.benchmark.sample_files import layout_for_seed, write_samples
    from synthbench.benchmark.store import ResultStore
    from synthbench.plugins import GENERATORS

    if quiet:
        progress.set_enabled(False)
    if threads:
        torch.set_num_threads(threads)
    given: dict[str, Any] = {}
    for pair in option:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--option {pair!r} is not KEY=VALUE, e.g. --option train_steps=100.")
        given[key.split(".", 1)[-1]] = value
    grid = make_grid({generator: given}, [], dataset, preset, (seed,), device, data_root, with_real=False)
    choice, ds = grid.generators[0], grid.dataset
    if choice.cls.oracle:
        raise UserError(f"{choice.name} is the real train split itself; there are no samples to export. Copy the "
                        f"dataset's files instead, or export a generator's samples.")
    if choice.cls.unconditional_by_options(choice.options):
        raise _unconditional(choice.label, generator, dataset, preset, seed, option,  # before a fit, not after
                             _same_run(threads, results, data_root))
    store = ResultStore(results)
    timeout = timeout_option(DEFAULT_TIMEOUT_S if adapter_timeout is None else adapter_timeout)
    guarded = Guarded(choice.instance(), timeout, trusted=GENERATORS.origin(choice.name) == "built-in")
    guarded.fitted(FitContext.from_dataset(ds, grid.preset, grid.device, store.cache_dir))
    if not getattr(guarded, "conditional", True):  # an adapter may decide in fit (an unconditional checkpoint)
        raise _unconditional(choice.label, generator, dataset, preset, seed, option, _same_run(threads, results,
                                                                                                data_root))
    ctx = CellContext(dataset=ds, generator=guarded, preset=grid.preset, seed=seed, device=grid.device, options={},
                      samples=SampleCache(store.cache_dir), cache_dir=store.cache_dir)
    pool = ctx.synthetic(multiple * len(ds.train))
    images, labels = layout_for_seed(pool.images.numpy(), pool.labels.numpy(), seed, ds.num_classes)
    path = write_samples(out, fmt, images, labels, list(ds.class_names))
    counts = ", ".join(f"{name}: {int((labels == c).sum())}" for c, name in enumerate(ds.class_names))
    click.echo(f"wrote {len(images)} samples of {choice.name} ({multiple}x the {len(ds.train)} train images of "
               f"{ds.name}, preset {grid.preset.name}, seed {seed}) to {path} ({fmt}; {counts})")
    click.echo(f"score them: synthbench evaluate -g samples:{path} -d {dataset} --preset {preset} --seed {seed}"
               f"{_same_run(threads, results, data_root)}")


def _same_run(threads: int | None, results: str, data_root: str | None) -> str:
    """The flags a printed evaluate command must repeat to score the files as
    this export computed them: the thread count (trained weights differ between
    counts, so without it the numbers are not the adapter's), the store whose
    caches it filled and the data folder."""
    import shlex

    flags = f" --threads {threads}" if threads else ""
    if results != "runs":
        flags += f" --results {shlex.quote(results)}"
    if data_root:
        flags += f" --data-root {shlex.quote(data_root)}"
    return flags


def _unconditional(label: str, generator: str, dataset: str, preset: str, seed: int,
                   option: tuple[str, ...], same_run: str = "") -> UserError:
    """Why an unconditional adapter's pool is not exported: its images are
    pseudo-labelled by the reference classifier, so a pool holds each class in
    whatever share the classifier gives it, not the real split's. Scored as
    ``samples:``, which serves each class's requests from that class's images
    only, the pool would run short of some class at once (and the numbers would
    not be the adapter's: ``evaluate`` pseudo-labels an unconditional adapter's
    own pool instead). So it is refused before anything is written."""
    opts = "".join(f" -o {o}" for o in option)
    return UserError(f"{label} is unconditional: its samples are pseudo-labelled by the reference classifier, so "
                     f"its pool is not class-balanced and `evaluate -g samples:OUT` would run short of some "
                     f"classes (nor would it give the adapter's numbers). export-samples writes only "
                     f"class-conditional adapters' pools; score this one directly: synthbench evaluate -g "
                     f"{generator}{opts} -d {dataset} --preset {preset} --seed {seed}{same_run}.")
