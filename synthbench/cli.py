"""The ``synthbench`` command: evaluate | list | validate | leaderboard | regress.

Errors the user can fix print one paragraph and exit with status 2; a run that
is interrupted keeps every record it finished.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import click

from synthbench import __version__
from synthbench.benchmark.guard import DEFAULT_TIMEOUT_S, timeout_option
from synthbench.benchmark.presets import PRECISION_CHOICES, PRESETS
from synthbench.errors import UserError

DEFAULTS = {
    "generator": "edm", "protocol": "replace", "dataset": "digits", "preset": "fast", "seeds": 3,
    "results": "runs", "device": "auto", "data_root": None, "option": (), "threads": None, "seed": None,
    "adapter_timeout": DEFAULT_TIMEOUT_S, "precision": None, "compile": None,
}


def _load_config(path: str | None) -> dict[str, Any]:
    """YAML config: the same keys as the flags (``option`` may be a mapping)."""
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file.") from None
    except IsADirectoryError:
        raise UserError(f"--config {path} is a folder; give the YAML file in it.") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"--config {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as "
                        f"UTF-8 YAML.") from None
    except OSError as exc:
        raise UserError(f"--config {path} cannot be read ({exc.strerror or exc}); fix its permissions or give "
                        f"another file.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--config {path} is not valid YAML ({exc}). Fix the file.") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path} must hold a mapping of option names to values.")
    data = {k.replace("-", "_"): v for k, v in data.items()}
    if "options" in data:
        data["option"] = data.pop("options")
    if isinstance(data.get("option"), dict):  # a YAML list value (multiples: [1, 2]) is the flag's 1,2, as in a suite
        data["option"] = tuple(f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                               for k, v in data["option"].items())
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise UserError(f"--config {path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}.")
    return data


def _merged(ctx: click.Context, params: dict[str, Any]) -> dict[str, Any]:
    """defaults < YAML < flags given on the command line."""
    merged = dict(DEFAULTS)
    merged.update(_load_config(params.get("config")))
    for key in DEFAULTS:
        source = ctx.get_parameter_source(key)
        if source is not None and source.name == "COMMANDLINE":
            merged[key] = params[key]
    return merged


def _validated(p: dict[str, Any]) -> dict[str, Any]:
    """Values from a YAML file skip click's checks: check them here."""
    from synthbench.benchmark.record_schema import SEED_LIMIT
    from synthbench.benchmark.suite import parse_seeds, parse_switch

    if p["seed"] is not None:
        seed = _whole_number("seed", p["seed"], "seed: 2")
        if not 0 <= seed < SEED_LIMIT:  # a record's spec holds a non-negative 64-bit seed
            raise UserError(f"seed={seed}: give a non-negative whole number below 2**63, e.g. seed: 2.")
        p["seeds"] = (seed,)
    else:
        if isinstance(p["seeds"], float) or isinstance(p["seeds"], bool):
            _whole_number("seeds", p["seeds"], "seeds: 3")
        p["seeds"] = parse_seeds(p["seeds"])
    if p["device"] not in ("auto", "cpu", "cuda"):
        raise UserError(f"device={p['device']!r}: choose auto, cpu or cuda.")
    if p["threads"] is not None:
        p["threads"] = _whole_number("threads", p["threads"], "threads: 1")
        if not 1 <= p["threads"] <= 1024:
            raise UserError(f"threads={p['threads']}: give a whole number from 1 to 1024 (as --threads).")
    if p["data_root"] is not None and not isinstance(p["data_root"], str):
        raise UserError(f"data_root={p['data_root']!r} in the config is not a folder path; give e.g. "
                        f"data_root: ~/data.")
    if not isinstance(p["option"], (list, tuple)):
        raise UserError("options in a config file must be a mapping (key: value) or a list of KEY=VALUE.")
    p["option"] = tuple(str(o) for o in p["option"])
    for key in ("generator", "protocol"):  # a YAML list of names, as seeds may be one: edm,real as the flag takes it
        if isinstance(p[key], (list, tuple)) and p[key] and all(isinstance(n, str) for n in p[key]):
            p[key] = ",".join(p[key])
    for key in ("generator", "protocol", "dataset", "preset", "results"):
        if not isinstance(p[key], (str, int)) or isinstance(p[key], bool):
            raise UserError(f"{key}={p[key]!r} in the config is not a name; give e.g. {key}: {DEFAULTS[key]}.")
        p[key] = str(p[key])
    p["adapter_timeout"] = timeout_option(p["adapter_timeout"])
    if p["precision"] is not None and p["precision"] not in PRECISION_CHOICES:
        raise UserError(f"precision={p['precision']!r}: choose {', '.join(PRECISION_CHOICES)} (or leave it out "
                        f"for the preset's).")
    p["compile"] = parse_switch(p["compile"])
    if not (p["compile"] is None or isinstance(p["compile"], bool)):
        raise UserError(f"compile={p['compile']!r}: give true or false (or leave it out for the preset's).")
    return p


def _whole_number(key: str, value: Any, example: str) -> int:
    """A count from a flag or a YAML value: an int or a string of digits, never a
    bool (YAML ``true`` is 1 to ``int``) or a float (``2.7`` would become 2)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise UserError(f"{key}={value!r} is not a whole number; give e.g. {example}.")


def _fmt(mean: float, se: float | None) -> str:
    from synthbench.leaderboard.aggregate import unsigned_zero

    text = unsigned_zero(f"{mean:.4f}")
    if se is None or not math.isfinite(se):
        return text
    return f"{text} ± {se:.4f}"


def aggregate(records: list, name: str) -> tuple[float, float | None, int]:
    """Mean over seeds and its 95% half-width, the leaderboard's interval
    (Student's t over seeds; with one seed, 1.96 x the record's own stderr, e.g.
    binomial over the test set)."""
    from synthbench.leaderboard.aggregate import mean_interval

    have = [r for r in records if name in r.metrics]
    vals = [r.metrics[name]["value"] for r in have]
    if not vals:
        return float("nan"), None, 0
    mean, half = mean_interval(vals, have[0].metrics[name].get("stderr") if len(vals) == 1 else None)
    return (float("nan") if mean is None else mean), half, len(vals)


def summary_table(cells, metric_names: list[str]) -> str:
    from tabulate import tabulate

    from synthbench.benchmark.cell import COST_PHASES, Status, stored_label
    from synthbench.plugins import GENERATORS

    # one row per generator and options: a suite's ablation arms of one generator are rows of their own
    by_gen: dict[str, list] = {}
    for c in cells:
        by_gen.setdefault(stored_label(GENERATORS, c.spec.generator, c.spec.generator_options), []).append(c)
    rows = []
    for gen, group in by_gen.items():
        by_status = {st: [c.record for c in group if c.record and c.record.status is st] for st in Status}
        ok = by_status[Status.OK]
        failed = by_status[Status.FAILED] + [c for c in group if c.record is None]  # no record: failed too
        row = [gen]
        for m in metric_names:
            mean, se, k = aggregate(ok, m)
            cell = _fmt(mean, se) if ok else "not supported" if by_status[Status.UNSUPPORTED] else "failed"
            if ok and k == 0:  # e.g. the multiple reaching real when no seed reaches it
                cell = f"n/a (0 of {len(ok)} seeds)"
            elif 0 < k < len(ok):  # e.g. the multiple reaching real, where only some seeds reach it
                cell += f" ({k} of {len(ok)} seeds)"
            row.append(cell)
        wall = sum(sum(r.cost["wall_s"].get(k, 0) for k in COST_PHASES)
                   for records in by_status.values() for r in records)
        row += [f"{len(ok)}/{len(group)}" + (f" ({len(failed)} failed)" if failed else ""),
                f"{wall:.1f}", sum(c.cached for c in group)]
        rows.append(row)
    headers = ["generator"] + [f"{m} (mean ± 95% CI)" for m in metric_names] + ["seeds ok", "compute s", "cached"]
    # metric cells are written as text already: a column of bare values (one seed, no stderr) would otherwise be
    # re-read as numbers and printed "0" or "0.5" beside the other columns' four decimals
    return tabulate(rows, headers=headers, tablefmt="github",
                    disable_numparse=list(range(1, 1 + len(metric_names))))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="synthbench")
def cli() -> None:
    """synthbench: score any image generator by how useful its synthetic data is
    for training a classifier, under fixed, versioned protocols.

    \b
    Start with:
      synthbench evaluate                 # edm vs real, replace, digits, fast
      synthbench list                     # every dataset, generator, protocol
    """


@cli.command()
@click.option("--generator", "-g", default=DEFAULTS["generator"], metavar="NAME[,NAME]",
              help="Generator adapter(s) to score, comma-separated (`synthbench list generators`).")
@click.option("--protocol", "-p", default=DEFAULTS["protocol"], metavar="NAME[,NAME]",
              help="Protocol(s) to run, comma-separated (`synthbench list protocols`).")
@click.option("--dataset", "-d", default=DEFAULTS["dataset"], metavar="NAME",
              help="Real dataset (`synthbench list datasets`); imagefolder:PATH for your own.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=DEFAULTS["preset"],
              help="Scale: smoke (seconds, tests), fast (minutes on a CPU), paper (Yamaguchi & Fukuda 2023's "
                   "recipe, GPU), paper-r50 (Real-Fake's ResNet-50 recipe, GPU).")
@click.option("--seeds", default=str(DEFAULTS["seeds"]), metavar="N|A-B|A,B",
              help="Seeds to run: a count N (0..N-1), a range 0-2 or a list 0,3; the table gives the mean and "
                   "its 95% interval over them (one seed: 1.96 x the record's own standard error).")
@click.option("--seed", type=click.IntRange(0), default=None, metavar="K",
              help="Run seed K alone (e.g. one job of a hand-made array); overrides --seeds.")
@click.option("--option", "-o", multiple=True, metavar="KEY=VALUE",
              help="Generator or protocol option (prefix with the plugin name if both have it: edm.churn=1). Repeatable.")
@click.option("--results", default=DEFAULTS["results"], metavar="DIR", type=click.Path(file_okay=False),
              help="Result store: records under DIR/records, caches under DIR/cache (the repository's "
                   "published store is results/).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=DEFAULTS["device"],
              help="Where to train and sample; auto = cuda when available.")
@click.option("--data-root", default=DEFAULTS["data_root"], metavar="DIR",
              help="Folder holding the dataset's files (offline use).")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, metavar="N",
              help="CPU threads for torch (default: torch's choice). On a CPU, trained weights differ "
                   "between thread counts; the published results/ used 1.")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default=None,
              help="The run's arithmetic: the classifiers' (training and evaluation), and that of edm, ddpm "
                   "and realfake when sampling and when training their network in-suite, unless --option "
                   "NAME.precision=... or NAME.train_precision=... sets theirs; default: the preset's (fp32 at "
                   "smoke and fast, bf16 at paper). On a CPU with AMX, bf16 trained classifiers about 2x as fast, "
                   "an EDM 1.7x and sampled edm 1.8x (2.7x with --option edm.compile=true); auto: bf16 on a CPU "
                   "with AMX or a GPU with bf16, fp32 elsewhere. A different precision is a different cell.")
@click.option("--compile/--no-compile", default=None,
              help="torch.compile the classifiers' training step (evaluation stays eager; needs a C++ "
                   "compiler on a CPU, triton on CUDA). Off by default: on a 2-core CPU compiled training was "
                   "slower than eager (3,000 fast bf16 steps: 449 s against 368 s, compiling included); it is "
                   "there for GPUs, where it is not measured yet. The diffusion networks have their own switch, "
                   "--option edm.compile=true, which does pay on a CPU. A compiled cell is a different cell.")
@click.option("--adapter-timeout", type=click.FloatRange(min=0), default=DEFAULTS["adapter_timeout"],
              metavar="SECONDS", help="Longest one call into the generator (fit, or one block of samples) may "
                                      "take; past it the cell is failed with 'timed out'. 0: no limit.")
@click.option("--config", metavar="FILE.yaml", help="YAML with any of these options; flags override it.")
@click.option("--dry-run", is_flag=True, help="Show the cells and which are cached; compute nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
@click.pass_context
def evaluate(ctx: click.Context, **params: Any) -> None:
    """Score generators under protocols, beside the `real` reference.

    Writes one record per (generator, protocol, seed) cell; an identical re-run is
    a cache hit. For a whole suite on several workers, see `synthbench run`.
    """
    from synthbench.benchmark import progress

    if params["quiet"]:
        progress.set_enabled(False)
    p = _validated(_merged(ctx, params))
    from synthbench.benchmark.options import split_cli_options
    from synthbench.benchmark.provenance import device_name
    from synthbench.plugins import GENERATORS, PROTOCOLS
    from synthbench.benchmark.runner import grid_setting, make_grid, plan, run_explained
    from synthbench.benchmark.store import ResultStore

    gen_names = _names(p["generator"], "generator")  # NAME or NAME:ARGUMENT (samples:PATH)
    gen_classes = [GENERATORS.get(name.partition(":")[0]) for name in gen_names]
    proto_classes = [PROTOCOLS.get(name) for name in _names(p["protocol"], "protocol")]
    targets = {c.name: c.options for c in gen_classes}
    for c in proto_classes:
        if c.name in targets:  # a generator and a protocol of one name cannot share one routing table
            raise UserError(f"{c.name} is both a generator and a protocol here; run them separately.")
        targets[c.name] = c.options
    routed = split_cli_options(tuple(p["option"]), targets)
    if p["threads"]:
        import torch

        torch.set_num_threads(p["threads"])
    grid = make_grid({name: routed[c.name] for name, c in zip(gen_names, gen_classes)},
                     {c.name: routed[c.name] for c in proto_classes},
                     p["dataset"], p["preset"], p["seeds"], p["device"], p["data_root"], precision=p["precision"],
                     compile=p["compile"])
    dataset, preset = grid.dataset, grid.preset
    store = ResultStore(p["results"])
    seeds = (f"{grid.seeds[0]}..{grid.seeds[-1]}" if len(grid.seeds) > 1
             and grid.seeds == tuple(range(grid.seeds[0], grid.seeds[-1] + 1)) else ",".join(map(str, grid.seeds)))

    def header(proto: Any) -> str:
        return (f"{proto.name} on {dataset.name} (digest {dataset.digest[:12]}, "
                f"{len(dataset.train)} train / {len(dataset.test)} test), preset {preset.name}, "
                f"seeds {seeds}, device {device_name(grid.device)}")

    if params["dry_run"]:
        from synthbench.benchmark.cell import stored_label

        for proto in grid.protocols:
            click.echo(header(proto))
            cells = plan(grid, proto, store)
            # each row as the table names it: two samples: sources, or edm with and without an option, are two rows
            labels = [stored_label(GENERATORS, c.spec.generator, c.spec.generator_options) for c in cells]
            width = max([12, *map(len, labels)])
            for c, label in zip(cells, labels):
                state = "cached" if c.cached else "to compute"
                click.echo(f"  {label:<{width}} seed {c.spec.seed}  {state}  {store.path_for(c.spec)}")
        return
    records_dir = store.root / "records"
    try:
        records_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocked = _file_in_the_way(records_dir)
        if blocked is not None:
            raise UserError(f"Cannot write results to {store.root}: {blocked} is a file, where the store needs a "
                            f"folder. Move that file away, or give --results another folder.") from None
        raise UserError(f"Cannot write results to {store.root} ({exc.strerror}). Give --results a "
                        f"folder you can write to.") from None
    try:
        ran = run_explained([(grid_setting(grid, store, p["adapter_timeout"]), grid)])
        cells = ran.cells
    except KeyboardInterrupt:
        raise UserError(f"Interrupted. Every finished cell is kept in {store.root}/records; "
                        f"run the same command again to resume.") from None
    for i, proto in enumerate(grid.protocols):
        click.echo(("\n" if i else "") + header(proto))
        click.echo(summary_table([c for c in cells if c.spec.protocol == proto.name],
                                 proto.instance().table_metrics()))
    click.echo(f"records: {Path(store.root) / 'records'}")
    for line in copy_notes(cells):
        click.echo(line)
    from torch import get_num_threads

    for line in thread_notes(cells, get_num_threads() if grid.device.type == "cpu" else None):
        click.echo(line, err=True)
    click.echo(next_steps(preset.name, str(store.root)))
    lines = failure_lines(ran, store)
    if lines:
        for line in lines:
            click.echo(line, err=True)
        sys.exit(1)


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists as something other
    than a folder (a file named ``records`` in the store, say), or None."""
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            return None if path.is_dir() else path
    return None


def failure_lines(ran: Any, store: Any) -> list[str]:
    """What the run's end says about cells that did not finish (exit status 1):
    those whose record holds the error, and those that ended without any record
    (a record path that cannot be written, a worker's task that died outside the
    cell), each named with its error, since nothing on the store says why."""
    failed, unrecorded = ran.failed(), ran.unrecorded()
    if not failed:
        return []
    lines = failed_record_lines([c.record for c in failed if c.record is not None])
    lines += [f"no record: {line}" for line in ran.unrecorded_lines(store)]
    recorded = len(failed) - len(unrecorded)
    held = f"{recorded} record{'s hold' if recorded != 1 else ' holds'} the error" if recorded else ""
    missing = f"{len(unrecorded)} ended without a record (why: above)" if unrecorded else ""
    lines.append(f"Some cells failed ({len(failed)} of {len(ran.cells)}): {'; '.join(filter(None, (held, missing)))}. "
                 f"Fix the cause and run again.")
    return lines


def failed_record_lines(records: list[Any], width: int = 400) -> list[str]:
    """One line per distinct error of ``failed`` records, naming its cells
    (generator x protocol x dataset and their seeds): the error is what a user
    needs to fix the cause, and without it the run's end said only that records
    hold one. An error's first line, cut at ``width`` characters (the record
    keeps it whole, with its traceback)."""
    from synthbench.benchmark.cell import stored_label
    from synthbench.plugins import GENERATORS, PROTOCOLS

    seeds: dict[tuple[str, str], list[int]] = {}
    for rec in records:
        s = rec.spec
        cell = (f"{stored_label(GENERATORS, s.generator, s.generator_options)} x "
                f"{stored_label(PROTOCOLS, s.protocol, s.protocol_options)} x {s.dataset}")
        text = (rec.error or "").strip()
        error = text.splitlines()[0] if text else "no error recorded"
        seeds.setdefault((cell, error if len(error) <= width else error[:width - 3] + "..."), []).append(s.seed)
    return [f"failed: {cell}, seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, sorted(ss)))}: {error}"
            for (cell, error), ss in seeds.items()]


def thread_notes(cells: list[Any], threads: int | None) -> list[str]:
    """A warning when cached records this run reused were computed at another
    CPU thread count than its own. A record's key does not hold the count (the
    published records' keys predate it; its cached fits, classifiers and pools
    hold it), so such a record is a cache hit, and a table can mix counts whose
    CPU numbers differ in the last bits."""
    from collections import Counter

    from synthbench.leaderboard.audit import threads as record_threads

    if not threads:
        return []
    other = Counter(n for c in cells if c.cached and c.record is not None
                    and (n := record_threads(c.record)) is not None and n != threads)
    if not other:
        return []
    counts = ", ".join(f"{k} at {n} thread{'s' if n != 1 else ''}" for n, k in sorted(other.items()))
    total = sum(other.values())
    return [f"note: {total} cached record{'s' if total != 1 else ''} of this run {'were' if total != 1 else 'was'} "
            f"computed at another CPU thread count ({counts}); this run computes at {threads}. A record's key does "
            f"not hold the thread count (its cached fits, classifiers and pools do), so {'they were' if total != 1 else 'it was'} "
            f"reused as {'they are' if total != 1 else 'it is'}, and CPU numbers differ in the last bits between "
            f"counts. Run with --threads {max(other, key=other.get)} to keep these tables at one count, or move "
            f"those records away to compute them again at {threads}."]


def copy_notes(cells: list[Any]) -> list[str]:
    """The flags the board will raise on this run's generators (memorises,
    contaminated: ``leaderboard/aggregate.py``), said at the terminal too, and
    for pre-generated samples run without ``copies``, how to check them."""
    from synthbench.benchmark.cell import stored_label
    from synthbench.leaderboard.aggregate import flag_key, memorisation_flags
    from synthbench.plugins import GENERATORS

    records = [c.record for c in cells if c.record is not None]
    flags = memorisation_flags(records)
    lines, said = [], set()
    for rec in records:
        key = flag_key(rec.spec)
        if key in flags and key not in said:
            said.add(key)
            label = stored_label(GENERATORS, rec.spec.generator, rec.spec.generator_options)
            lines += [f"flag: {label} on {rec.spec.dataset} {flag}" for flag in flags[key]]
    unchecked = sorted({stored_label(GENERATORS, c.spec.generator, c.spec.generator_options) for c in cells
                        if c.spec.generator == "samples"}
                       - {stored_label(GENERATORS, c.spec.generator, c.spec.generator_options) for c in cells
                          if c.spec.protocol == "copies"})
    if unchecked:
        lines.append(f"note: {', '.join(unchecked)} not checked for copies of real (test) images: add -p copies "
                     f"(seconds); a set holding test images scores on the test set what it copied.")
    return lines


def next_steps(preset: str, results: str) -> str:
    """What to read the numbers with, printed after every table."""
    lines = []
    if preset == "smoke":
        lines.append("note: `smoke` numbers only check that the machinery runs (tiny models, a few steps); they "
                     "say nothing about the generators. Compare them at --preset fast or paper.")
    lines.append(f"compare every record of the store side by side: synthbench leaderboard --results {results}")
    return "\n".join(lines)


def _names(value: str, kind: str) -> list[str]:
    """``edm,ddpm`` as a list, each name once, in the order given."""
    names = list(dict.fromkeys(n.strip() for n in str(value).split(",") if n.strip()))
    if not names:
        raise UserError(f"--{kind} {value!r} names no {kind}; give one or more, comma-separated "
                        f"(`synthbench list {kind}s`).")
    return names


@cli.command(name="list")
@click.argument("kind", required=False, type=click.Choice(["generators", "protocols", "datasets"]))
def list_plugins(kind: str | None) -> None:
    """Every plugin with its options, defaults and what it needs."""
    from synthbench.benchmark.presets import PRESETS
    from synthbench.plugins import DATASETS, GENERATORS, PROTOCOLS

    kinds = [kind] if kind else ["datasets", "generators", "protocols"]
    registries = {"datasets": DATASETS, "generators": GENERATORS, "protocols": PROTOCOLS}
    broken: list[str] = []
    for k in kinds:
        reg = registries[k]
        click.echo(f"{k}:")
        for name in reg.names():
            try:
                cls = reg.get(name)
            except UserError as exc:  # one broken plugin must not hide the others: listed, then explained
                click.echo(f"  {name} ({reg.origin(name)}): cannot be used, see below")
                broken.append(str(exc))
                continue
            doc_lines = (cls.__doc__ or "").strip().splitlines()
            desc = getattr(cls, "description", "") or (doc_lines[0] if doc_lines else "(no description)")
            click.echo(f"  {name} (v{getattr(cls, 'version', 1)}, {reg.origin(name)}): {desc}")
            needs = getattr(cls, "needs", None)
            if needs:
                click.echo(f"      needs: {needs}")
            if k == "protocols":
                from synthbench.benchmark.metrics import rule_text

                metrics = ", ".join(f"{m} ({rule_text(rule)})" for m, rule in cls.metrics.items())
                click.echo(f"      metrics: {metrics}")
            for opt in getattr(cls, "options", {}).values():
                default = ",".join(map(str, opt.default)) if isinstance(opt.default, tuple) else repr(opt.default)
                if opt.default is None and opt.per_preset is not None:
                    default = " / ".join(f"{p} {opt.effective(None, preset)}" for p, preset in PRESETS.items())
                if opt.from_preset is not None:
                    default = f"the run's {opt.from_preset}: " + " / ".join(
                        f"{p} {getattr(preset, opt.from_preset)}" for p, preset in PRESETS.items())
                click.echo(f"      --option {opt.name}=...  (default {default}) {opt.help}")
        click.echo("")
    if broken:
        raise UserError("\n\n".join(broken))


@cli.command()
@click.argument("name")
@click.option("--dataset", "-d", default="digits", show_default=True, metavar="NAME", help="Dataset to fit on.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="smoke", show_default=True,
              help="Scale of the fit and of the judge classifier.")
@click.option("--option", "-o", multiple=True, metavar="KEY=VALUE", help="Generator option. Repeatable.")
@click.option("--n", "n", type=click.IntRange(12, 100_000), default=64, show_default=True,
              help="Samples drawn for the checks and the speed figure.")
@click.option("--min-adherence", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Lowest acceptable share of samples the real-trained classifier labels as asked.")
@click.option("--results", default="runs", show_default=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Caches (fitted weights, the judge classifier) go under DIR/cache.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--data-root", default=None, metavar="DIR", help="Folder holding the dataset's files.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or status lines.")
def validate(name: str, dataset: str, preset: str, option: tuple[str, ...], n: int, min_adherence: float,
             results: str, device: str, data_root: str | None, quiet: bool) -> None:
    """Run the generator conformance checks on NAME (built-in or installed) and print a report.

    Exit status 0 when every check passes, 1 otherwise.
    """
    from tabulate import tabulate

    from synthbench.benchmark import progress
    from synthbench.plugins import GENERATORS
    from synthbench.benchmark.runner import make_grid
    from synthbench.benchmark.validate import validate_generator

    if math.isnan(min_adherence):  # click's range lets NaN through, and every sample would then fail it
        raise UserError("--min-adherence nan: give a number from 0 to 1 (the default is 0.5).")
    if quiet:
        progress.set_enabled(False)
    given = {}
    for pair in option:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--option {pair!r} is not KEY=VALUE, e.g. --option train_steps=100.")
        given[key.removeprefix(f"{name}.")] = value
    grid = make_grid({name: given}, [], dataset, preset, (0,), device, data_root, with_real=False)
    gen, ds, p = grid.generators[0], grid.dataset, grid.preset
    checks = validate_generator(gen.name, gen.cls, gen.options, ds, p, grid.device, Path(results) / "cache", n=n,
                                min_adherence=min_adherence)
    mark = {True: "pass", False: "FAIL", None: "-"}
    click.echo(f"synthbench validate {name} ({GENERATORS.origin(gen.name)}) on {ds.name}, preset {p.name}")
    click.echo(tabulate([(c.name, mark[c.passed], c.detail) for c in checks], headers=["check", "result", "detail"]))
    failed = [c.name for c in checks if c.passed is False]
    click.echo("all checks passed" if not failed else f"failed: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


from synthbench.leaderboard.commands import export, leaderboard, regress  # noqa: E402  (click only: cheap)

from synthbench.suite_cli import run, status  # noqa: E402  (click only: cheap)
from synthbench.samples_cli import export_samples  # noqa: E402  (click only: cheap)
from synthbench.submission_cli import submit, verify  # noqa: E402  (click only: cheap)

cli.add_command(leaderboard)
cli.add_command(regress)
cli.add_command(export)
cli.add_command(run)
cli.add_command(status)
cli.add_command(export_samples)
cli.add_command(submit)
cli.add_command(verify)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turns :class:`UserError` into one paragraph and exit 2."""
    try:
        cli.main(args=argv, prog_name="synthbench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(UserError.exit_code)
    except OSError as exc:  # disk full, read-only store, permissions: the system's words and what to do
        where = f" on {exc.filename}" if exc.filename else ""
        click.echo(f"error: the operating system refused a file operation{where}: {exc.strerror or exc}. Free "
                   f"disk space or fix the permissions, then run the same command again: every record "
                   f"already written is kept and the run resumes from there.", err=True)
        sys.exit(UserError.exit_code)
    except SystemExit:
        raise


@cli.group()
def records() -> None:
    """Maintain the record files of a result store."""


@records.command()
@click.option("--results", required=True, metavar="DIR", type=click.Path(file_okay=False, exists=True),
              help="Result store whose records to migrate (records under DIR/records).")
@click.option("--dry-run", is_flag=True, help="Report what would be migrated; write nothing.")
def migrate(results: str, dry_run: bool) -> None:
    """Bring a store's records to the current record format.

    Each record without a digest that passes the record schema and whose
    cell_hash matches its spec is rewritten atomically with its digest added and
    nothing else changed. A valid record whose spec holds an option that no longer
    belongs to a cell's key (e.g. eval_batch, which does not change the images) is
    moved to its current key; where a file is there already, it is kept (and the
    old record removed) only when it is a valid record of that cell at least as
    final (ok over unsupported over failed), and replaced otherwise; each such case
    is listed. Records that fail validation, or whose digest does not match, are
    listed and left untouched (exit 2).
    """
    from synthbench.benchmark.cell import current_spec
    from synthbench.benchmark.store import ResultStore

    report = ResultStore(results).migrate(dry_run=dry_run, rekey=current_spec)
    verb = "would migrate" if dry_run else "migrated"
    click.echo(f"{verb} {len(report.migrated)} records, re-keyed {len(report.rekeyed)}, "
               f"{len(report.current)} already current, {len(report.refused)} refused")
    would = "would be " if dry_run else ""
    for old, new, kept_status in report.kept:
        click.echo(f"{old} {would}removed: its cell is already at its current key, {new}, as a valid {kept_status} "
                   f"record, which is kept")
    for old, new, there in report.replaced:
        click.echo(f"{new} {would}replaced by the re-keyed {old}: it held {there}")
    for path, reason in report.refused:
        click.echo(f"refused {path}: {reason}", err=True)
    if report.refused:
        raise UserError(f"{len(report.refused)} record file(s) in {results} could not be migrated (listed above, "
                        f"each with why) and were left untouched. One that is not a valid record: restore it from "
                        f"version control, or delete it and run `synthbench evaluate --results {results}` to "
                        f"recompute that cell. One whose current key's path cannot be written: clear that path and "
                        f"run `synthbench records migrate --results {results}` again.")
