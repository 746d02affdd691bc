"""Suite files: a whole benchmark grid in YAML (``synthbench run SUITE.yaml``,
``synthbench status``, and ``synthbench regress``, whose suites add tolerances).

A suite names datasets x generators (each with options) x protocols (each with
options) x seeds x preset::

    name: fashion-fast
    datasets: [fashion-mnist]      # or `dataset: digits`
    preset: fast
    seeds: [0, 1, 2]               # or a count (3), or a range ("0-2")
    threads: 1                     # optional: CPU threads per task
    generators: {real: {}, edm: {}, ddpm: {churn: 0.5}}
    protocols: {replace: {}, scaleup: {multiples: "1,2,5,10"}}

A generator (or a protocol) may map to a list of option mappings instead of
one: one row per mapping, so one suite holds an ablation, the same generator
under several option sets::

    generators:
      real: {}
      realfake:
        - {}                                    # every component on (the default row)
        - {mmd: false}
        - {visual_guidance: false, mmd: false}

Each row is its own fits, pools and cells (their keys hold the options), and
plans, progress lines and tables name a row by its non-default options
(``realfake (mmd=false)``). An empty list, an item that is not a mapping, and
two equal mappings under one name (the same row twice) are errors; so are two
mappings that resolve to the same options (``{}`` and ``{mmd: true}``, mmd being
on by default), found when the grid checks them against the installed plugin.

``configs/`` holds the shipped suites (``configs/fashion-realfake-ablation.yaml``
uses the list form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthbench.errors import UserError

PluginOptions = dict[str, Any] | list[dict[str, Any]]
"""A name's options in a suite: one mapping, or a list of mappings (ablation arms)."""

KEYS = {"name", "description", "dataset", "datasets", "preset", "precision", "compile", "seeds", "device", "threads",
        "data_root", "generators", "protocols", "tolerance"}


@dataclass(frozen=True)
class Suite:
    """A parsed, checked suite file (plugin names and options are checked when
    its grids are made, against the installed plugins)."""

    path: Path
    name: str
    datasets: tuple[str, ...]
    preset: str
    seeds: tuple[int, ...]
    device: str
    threads: int | None
    precision: str | None
    data_root: str | None
    generators: dict[str, PluginOptions]
    """Options by name: one mapping (one row), or a list of mappings (one row
    each), in the file's order; ``runner.make_grid`` takes it as it is."""
    protocols: dict[str, PluginOptions]
    raw: dict[str, Any]
    """The file's mapping, for readers that add keys (``regress``: tolerances)."""
    compile: bool | None = None
    """``compile: true``: the preset's ``compile`` (the classifiers' training
    step under torch.compile)."""


def parse_switch(value: Any) -> Any:
    """A YAML on/off value: a bool, or "true"/"false" in any case (a quoted one);
    anything else comes back as it is, for the caller to refuse."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def parse_seeds(value: Any, where: str = "--seeds") -> tuple[int, ...]:
    """Seeds as given: a count N (seeds 0..N-1), a range ``A-B`` (inclusive), a
    comma-separated list ``0,3,7``, or a YAML list; each below 2**63, the
    largest a record's spec holds (a larger one failed every cell, and left a
    record in the store that stopped ``submit``)."""
    from synthbench.benchmark.record_schema import SEED_LIMIT

    seeds = _seed_list(value, where)
    if seeds and max(seeds) >= SEED_LIMIT:
        raise UserError(f"{where} {value!r}: every seed must be below 2**63; give e.g. 0-2.")
    return seeds


def _seed_list(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        if not 1 <= value <= 100:
            raise UserError(f"{where} {value}: give a count from 1 to 100, a range like 0-2, or a list like 0,3.")
        return tuple(range(value))
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                          and s >= 0 for s in value):
        return tuple(dict.fromkeys(int(s) for s in value))
    text = str(value).strip() if isinstance(value, str) else ""
    if re.fullmatch(r"\d+", text):
        return parse_seeds(int(text), where)
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
    if m and int(m.group(1)) <= int(m.group(2)) and int(m.group(2)) - int(m.group(1)) < 1000:
        return tuple(range(int(m.group(1)), int(m.group(2)) + 1))
    if re.fullmatch(r"\d+(\s*,\s*\d+)+", text):
        return tuple(dict.fromkeys(int(s) for s in text.split(",")))
    raise UserError(f"{where} {value!r}: give a count (3 = seeds 0, 1, 2), a range (0-2) or a list (0,3,7) of "
                    f"non-negative integers.")


def _bad(path: Path, what: str) -> UserError:
    return UserError(f"The suite {path} is invalid: {what}. Fix the file (configs/fashion-fast.yaml shows the "
                     f"format).")


def _plugin_map(path: Path, key: str, raw: Any) -> dict[str, PluginOptions]:
    """``key``'s names with their options: a mapping, or a list of mappings (one
    row each; an ablation's arms). Each row must be distinct: two equal mappings
    would be the same cells twice."""
    if isinstance(raw, list):
        raw = {name: {} for name in raw}
    if not isinstance(raw, dict) or not raw:
        raise _bad(path, f"{key} must be a non-empty mapping of names to option mappings")
    out: dict[str, PluginOptions] = {}
    for name, opts in raw.items():
        if isinstance(opts, list):
            if not opts:
                raise _bad(path, f"{key}.{name} is an empty list; give one option mapping per row ({{}} for the "
                                 f"defaults), or leave {name} out")
            arms = []
            for i, arm in enumerate(opts):
                arm = {} if arm is None else arm
                if not isinstance(arm, dict):
                    raise _bad(path, f"{key}.{name}[{i}] must be a mapping of options (or {{}})")
                arm = {str(k): v for k, v in arm.items()}
                if arm in arms:
                    raise _bad(path, f"{key}.{name}[{i}] repeats {key}.{name}[{arms.index(arm)}] ({arm or '{}'}); "
                                     f"each row of a name must have its own options")
                arms.append(arm)
            out[str(name)] = arms
            continue
        opts = {} if opts is None else opts
        if not isinstance(opts, dict):
            raise _bad(path, f"{key}.{name} must be a mapping of options, a list of them (one row each), or empty")
        out[str(name)] = {str(k): v for k, v in opts.items()}
    return out


def load_suite(path: str | Path, flag: str = "suite") -> Suite:
    """Read and check a suite file; every problem is a :class:`UserError` that
    names the file (``flag`` says how it was given, for the message)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{flag} {path}: no such file. Give the suite's path (configs/ holds the shipped "
                        f"suites).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag} {path} cannot be read ({exc}). Give a readable YAML file.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{flag} {path} is not valid YAML ({' '.join(str(exc).split())}). Fix the file.") from None
    if not isinstance(data, dict):
        raise _bad(path, "it must hold a mapping (datasets, preset, seeds, generators, protocols)")
    unknown = sorted(set(map(str, data)) - KEYS)
    if unknown:
        raise _bad(path, f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    if "dataset" in data and "datasets" in data:
        raise _bad(path, "give either dataset or datasets, not both")
    datasets = data.get("datasets", data.get("dataset", "digits"))
    datasets = [datasets] if isinstance(datasets, str) else datasets
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise _bad(path, "datasets must be a dataset name or a list of them")
    seeds = data.get("seeds", [0])
    try:
        seeds = parse_seeds(seeds, "seeds:")
    except UserError:
        raise _bad(path, "seeds must be a count, a range (0-2) or a list of non-negative integers") from None
    device = str(data.get("device", "auto"))
    if device not in ("cpu", "cuda", "auto"):
        raise _bad(path, f"device {device!r} must be cpu, cuda or auto")
    threads = data.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 1024):
        raise _bad(path, "threads must be a whole number from 1 to 1024 (as --threads)")
    from synthbench.benchmark.presets import PRECISION_CHOICES, PRESETS

    precision = data.get("precision")
    if precision is not None and precision not in PRECISION_CHOICES:
        raise _bad(path, f"precision {precision!r} must be fp32, bf16 or auto (or left out for the preset's)")
    compile = parse_switch(data.get("compile"))
    if not (compile is None or isinstance(compile, bool)):
        raise _bad(path, f"compile {compile!r} must be true or false (or left out for the preset's)")
    preset = str(data.get("preset", "fast"))
    if preset not in PRESETS:
        raise _bad(path, f"preset {preset!r} must be one of {', '.join(PRESETS)}")
    data_root = data.get("data_root")
    return Suite(path=path, name=str(data.get("name") or path.stem), datasets=tuple(dict.fromkeys(datasets)),
                 preset=preset, seeds=seeds, device=device, threads=threads, precision=precision, compile=compile,
                 data_root=str(data_root) if data_root is not None else None,
                 generators=_plugin_map(path, "generators", data.get("generators")),
                 protocols=_plugin_map(path, "protocols", data.get("protocols")), raw=data)
