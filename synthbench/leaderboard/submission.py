"""Submissions: a generator's records packed so the board's maintainers can check
them by re-running some of them (``synthbench submit`` / ``synthbench verify``).

A bundle is a ``.tar.gz`` of ``bundle/`` holding

- ``records/...``: the generator's records, in the store's layout;
- ``metadata.json``: the generator, its options, where its code came from (the
  adapter's package name, version and git revision; for ``samples`` the
  samples' digest), and the environment the records were computed in
  (synthbench, torch, device, threads);
- ``samples/...``: for the ``samples`` generator, the images themselves (a
  maintainer cannot re-run a cell without them). A bundle holds one source:
  ``submit --samples PATH`` packs only the records whose key names PATH's
  content digest (``generator_extra.samples_digest``), and says how many
  records of other sources in the store it left out;
- ``manifest.json``: the SHA-256 of every other file.

``verify`` first checks the bundle alone: every file listed in the manifest with
its digest, nothing unlisted, no path that leaves the bundle, every record valid
(schema, its own ``cell_hash`` and ``record_digest``) and, for samples, every
record naming the digest of the samples the bundle holds (no other record could
be re-run, or may be stamped). A bundle that fails is *rejected* before
anything runs. Then it recomputes K randomly chosen cells (the
choice seeded by ``--seed`` and printed, so it can be repeated) on the
maintainer's machine, at the records' thread count, and compares every metric
within ``regress``'s tolerances (``configs/regress.yaml``). With ``--results
DIR`` a bundle that verifies is added to the store DIR with a stamp under
``DIR/verified/``; the leaderboard marks the rows it covers as verified.

The manifest catches an edited file; only the re-run catches records computed
with something else than the bundle says (a manifest can be rewritten), which
is why cells are chosen at random and the choice is the maintainer's.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from synthbench.errors import UserError

FORMAT = 1
ROOT = "bundle"
STAMPS = "verified"
"""The folder of a result store holding verification stamps."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- submit


def _origin(name: str) -> dict[str, Any]:
    """Where the adapter's code comes from: its distribution, version and git revision."""
    from importlib import metadata

    from synthbench.benchmark.provenance import git_revision
    from synthbench.plugins import GENERATORS

    origin = GENERATORS.origin(name)
    if origin == "built-in":
        import synthbench

        return {"package": "synthbench", "package_version": synthbench.__version__, "git_revision": git_revision(),
                "origin": origin}
    match = re.search(r"entry point \(([^)]+)\)", origin)
    dist = match.group(1) if match else None
    version = None
    if dist:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
    import importlib

    package = importlib.import_module(GENERATORS.get(name).__module__.split(".")[0])
    folder = Path(package.__file__).parent if getattr(package, "__file__", None) else None
    return {"package": dist, "package_version": version, "git_revision": git_revision(folder) if folder else None,
            "origin": origin}


def submit(results: str | Path, generator: str, out: str | Path, samples: str | Path | None = None) -> dict[str, Any]:
    """Pack ``generator``'s records in the store ``results`` (and, for
    ``samples``, the images at ``samples``) into the bundle ``out``."""
    from synthbench.benchmark.sample_files import source_digest, source_kind
    from synthbench.benchmark.store import ResultStore
    from synthbench.leaderboard.aggregate import read_store

    store = ResultStore(results)
    read = read_store(results, strict=True)
    mine = [r for r in read.records if r.spec.generator == generator]
    if not mine:
        names = sorted({r.spec.generator for r in read.records})
        raise UserError(f"The store {store.root} holds no records of generator {generator!r} (it holds "
                        f"{', '.join(names)}). Give --generator one of those.")
    out_path = Path(out)
    if out_path.exists():
        raise UserError(f"{out_path} exists. Give --out a new path.")
    sources = _sources(mine)
    left_out: list[dict[str, Any]] = []
    got = None
    if sources:
        if samples is None:
            raise UserError(f"The records of {generator} score pre-generated samples ({_sources_text(sources)}); give "
                            f"--samples PATH (the folder, .npz or .tar they were read from) so the maintainers can "
                            f"re-run them. A bundle holds one source's records: submit each source on its own.")
        got = source_digest(samples)
        if got not in sources:
            raise UserError(f"--samples {samples} is not what any record of {generator} scored (its digest is "
                            f"{got[:12]}; the records name {_sources_text(sources)}). Give the source they were "
                            f"read from, as it was when they were scored: changed files have another digest.")
        left_out = [{"label": s["label"], "samples_digest": d, "records": s["records"]}
                    for d, s in sorted(sources.items()) if d != got]
        mine = [r for r in mine if r.spec.generator_extra.get("samples_digest") == got]
    elif samples is not None:
        raise UserError(f"--samples {samples}: the records of {generator} score no pre-generated samples (their key "
                        f"names no samples digest), so there are no images to pack. Leave --samples out.")
    files: dict[str, bytes] = {}
    for rec in mine:
        rel = store.path_for(rec.spec).relative_to(store.root).as_posix()  # the bundle keeps the store's layout
        files[rel] = read.files[rec.cell_hash].read_bytes()  # from where it was read: a renamed file is not at rel
    meta: dict[str, Any] = {
        "format": FORMAT, "generator": generator,
        "options": sorted({json.dumps(r.spec.generator_options, sort_keys=True) for r in mine}),
        "versions": sorted({r.spec.generator_version for r in mine}),
        "code": _origin(generator),
        "environment": sorted({json.dumps({"synthbench": r.provenance.get("synthbench_version"),
                                           "torch": r.provenance.get("torch_version"),
                                           "device": r.cost.get("device")}, sort_keys=True) for r in mine}),
        "cells": len(mine),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if got is not None:
        meta["samples_digest"] = got
        meta["samples_kind"] = source_kind(Path(samples).expanduser().resolve())
        files.update(_samples_files(Path(samples).expanduser().resolve()))
    files["metadata.json"] = json.dumps(meta, indent=1, sort_keys=True).encode()
    manifest = {"format": FORMAT, "files": {name: _sha256(data) for name, data in sorted(files.items())}}
    files["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{ROOT}/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out_path)
    return {"path": out_path, "records": len(mine), "files": len(files), "left_out": left_out}


def _sources(records: list[Any]) -> dict[str, dict[str, Any]]:
    """samples digest -> the label(s) and record count of the records that name
    it; a record whose key names no samples digest (an adapter's) is in none."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        digest = r.spec.generator_extra.get("samples_digest")
        if digest:
            entry = out.setdefault(str(digest), {"labels": set(), "records": 0})
            entry["labels"].add(str(r.spec.generator_options.get("label") or "?"))
            entry["records"] += 1
    return {d: {"label": ", ".join(sorted(e["labels"])), "records": e["records"]} for d, e in out.items()}


def _sources_text(sources: dict[str, dict[str, Any]]) -> str:
    return "; ".join(f"{s['label']}: {s['records']} record{'s' * (s['records'] != 1)}, digest {d[:12]}"
                     for d, s in sorted(sources.items(), key=lambda kv: kv[1]["label"]))


def _samples_files(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {f"samples/{path.name}": path.read_bytes()}
    return {f"samples/{path.name}/{f.relative_to(path).as_posix()}": f.read_bytes()
            for f in sorted(path.rglob("*")) if f.is_file()}


# --------------------------------------------------------------------------- read and check


class Rejected(Exception):
    """The bundle fails a check of its own content; nothing was run."""


@dataclass
class Bundle:
    metadata: dict[str, Any]
    records: list[Any]
    samples: Path | None
    """The extracted samples source (``samples`` generator), else None."""
    sha256: str
    folder: Path


def open_bundle(path: str | Path, into: Path) -> Bundle:
    """Read and check ``path``, writing its files under ``into``; :class:`Rejected`
    names the first problem."""
    from synthbench.benchmark.cell import Record

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such bundle. Give the .tar.gz `synthbench submit` wrote.")
    raw = path.read_bytes()
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise Rejected(f"{member.name} is not a regular file (links and devices are refused)")
                if name.is_absolute() or ".." in name.parts or not name.parts or name.parts[0] != ROOT:
                    raise Rejected(f"{member.name} lies outside {ROOT}/")
                fh = tar.extractfile(member)
                files[PurePosixPath(*name.parts[1:]).as_posix()] = fh.read() if fh is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Rejected(f"not a readable .tar.gz ({type(exc).__name__}: {exc})") from None
    if "manifest.json" not in files:
        raise Rejected("it has no manifest.json")
    try:
        manifest = json.loads(files.pop("manifest.json"))
        listed = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Rejected(f"its manifest.json is not a manifest ({exc})") from None
    for name in sorted(set(files) | set(listed)):
        if name not in listed:
            raise Rejected(f"{name} is not in the manifest")
        if name not in files:
            raise Rejected(f"{name} is in the manifest but not in the bundle")
        if _sha256(files[name]) != listed[name]:
            raise Rejected(f"{name} does not match its manifest digest (the file was changed after it was packed)")
    try:
        metadata = json.loads(files["metadata.json"])
    except (KeyError, ValueError):
        raise Rejected("it has no readable metadata.json") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("generator"), str) \
            or not isinstance(metadata.get("samples_digest") or "", str):
        raise Rejected("its metadata.json is not a mapping that names the generator (and, for samples, their "
                       "digest) as text; pack it again with synthbench submit")
    records = []
    for name in sorted(n for n in files if n.startswith("records/")):
        try:
            records.append(Record.from_json(json.loads(files[name])))
        except ValueError as exc:
            raise Rejected(f"{name} is not a valid record ({exc})") from None
    if not records:
        raise Rejected("it holds no records")
    wrong = sorted({r.spec.generator for r in records} - {metadata.get("generator")})
    if wrong:
        raise Rejected(f"it holds records of {', '.join(wrong)}, not only of {metadata.get('generator')}")
    for name, data in files.items():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    samples = None
    scored = {str(r.spec.generator_extra.get("samples_digest") or "") for r in records}
    if metadata.get("samples_digest") or scored != {""} or metadata["generator"] == "samples":
        tops = sorted({PurePosixPath(n).parts[1] for n in files if n.startswith("samples/")})
        if len(tops) != 1:
            raise Rejected("its records score pre-generated samples but it holds no samples/ source")
        samples = into / "samples" / tops[0]
        _check_samples(records, metadata, samples)
    return Bundle(metadata, records, samples, _sha256(raw), into)


def _check_samples(records: list[Any], metadata: dict[str, Any], samples: Path) -> None:
    """Every record of a samples bundle scored the images the bundle holds: a
    record of another source (whose images the maintainers do not have) can be
    neither recomputed nor vouched for, and ``--results`` would stamp it."""
    from synthbench.benchmark.sample_files import source_digest

    try:
        held = source_digest(samples)
    except UserError as exc:
        raise Rejected(f"its samples/ source cannot be read ({exc})") from None
    if metadata.get("samples_digest") != held:
        raise Rejected(f"its samples/ source has digest {held[:12]}, not the {str(metadata.get('samples_digest'))[:12]} "
                       f"its metadata.json names")
    other = [r for r in records if r.spec.generator_extra.get("samples_digest") != held]
    if other:
        names = sorted({str(r.spec.generator_extra.get("samples_digest") or "none")[:12] for r in other})
        raise Rejected(f"{len(other)} of its {len(records)} records scored other samples than the ones it holds "
                       f"(digest {', '.join(names)}; its samples/ have {held[:12]}), so they can be neither "
                       f"recomputed nor verified; pack it again with this synthbench's submit, which packs only the "
                       f"records of the --samples it is given")


# --------------------------------------------------------------------------- verify


@dataclass
class CellCheck:
    key: str
    """``generator/protocol/dataset/seed S``"""
    cell_hash: str
    lines: list[Any] = field(default_factory=list)
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem and all(line.verdict in ("same", "within tolerance") for line in self.lines)


def recompute(rec: Any, bundle: Bundle, work: Path, data_root: str | None, device: str) -> Any:
    """``rec``'s cell computed here, in a fresh store under ``work``; returns the
    new record, or raises ValueError saying why the cell cannot be recomputed."""
    import dataclasses

    import torch

    from synthbench.benchmark.presets import get_preset
    from synthbench.benchmark.runner import make_grid, run_grid
    from synthbench.benchmark.store import ResultStore

    spec = rec.spec
    preset = get_preset(str(spec.preset.get("name")), spec.preset.get("precision"), spec.preset.get("compile"))
    if preset.as_dict() != spec.preset:
        raise ValueError(f"preset {preset.name} is not what it was when the record was written")
    options = dict(spec.generator_options)
    if bundle.samples is not None:
        options["path"] = str(bundle.samples)
    from synthbench.leaderboard.audit import threads as record_threads

    threads = record_threads(rec)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        grid = make_grid({spec.generator: options}, {spec.protocol: dict(spec.protocol_options)}, spec.dataset,
                         preset.name, (spec.seed,), spec.device_type if device == "auto" else device, data_root,
                         with_real=False, precision=spec.preset.get("precision"),
                         compile=spec.preset.get("compile"))
        if grid.dataset.digest != spec.dataset_digest:
            raise ValueError(f"dataset {spec.dataset} here has digest {grid.dataset.digest[:12]}, the record's "
                             f"{spec.dataset_digest[:12]} (other files)")
        outcomes = run_grid(grid, ResultStore(work))
    finally:
        torch.set_num_threads(before)
    (outcome,) = outcomes
    if outcome.spec.key != spec.key:
        differ = [f for f in dataclasses.fields(spec) if getattr(spec, f.name) != getattr(outcome.spec, f.name)]
        if [f.name for f in differ] == ["generator_extra"]:  # same code, other inputs (samples, a checkpoint)
            raise ValueError(f"the generator's inputs here are not the record's (generator_extra: "
                             f"{spec.generator_extra!r} here {outcome.spec.generator_extra!r}): the bundle does "
                             f"not hold what the record was computed from")
        raise ValueError("this synthbench keys the cell differently (" + ", ".join(
            f"{f.name}: {getattr(spec, f.name)!r} here {getattr(outcome.spec, f.name)!r}" for f in differ[:3])
            + "); verify with the version the records name")
    if outcome.record is None:  # its record could not be written (the work folder's disk): nothing to compare
        raise ValueError(f"it ended without a record in {work} (its errors are printed above)")
    return outcome.record


def verify(bundle_path: str | Path, cells: int, seed: int, tolerances: Any, data_root: str | None = None,
           device: str = "auto") -> tuple[Bundle, list[CellCheck], Path]:
    """Open, check and re-run ``cells`` random ok cells of the bundle (chosen by
    ``seed``); the checks, and the folder the bundle was read into."""
    from synthbench.leaderboard.regress import compare

    work = Path(tempfile.mkdtemp(prefix="synthbench-verify-"))
    try:
        bundle = open_bundle(bundle_path, work / "bundle")
        candidates = sorted((r for r in bundle.records if r.status.value == "ok"), key=lambda r: r.cell_hash)
        chosen = random.Random(seed).sample(candidates, min(cells, len(candidates)))
        checks = []
        for i, rec in enumerate(chosen):
            s = rec.spec
            check = CellCheck(f"{s.generator}/{s.protocol}/{s.dataset}/seed {s.seed}", rec.cell_hash)
            try:
                new = recompute(rec, bundle, work / f"run{i}", data_root, device)
            except ValueError as exc:
                check.problem = f"not recomputable: {exc}"
                checks.append(check)
                continue
            key = check.key
            as_cells = [{key: {"status": r.status.value, "error": r.error,
                               "metrics": {k: m.get("value") for k, m in sorted(r.metrics.items())}}}
                        for r in (rec, new)]
            report = compare(tolerances, {"cells": as_cells[0]}, {"cells": as_cells[1]})
            check.lines = report.lines
            checks.append(check)
    except BaseException:  # a bad bundle or a dataset that will not load: the caller never sees the folder
        shutil.rmtree(work, ignore_errors=True)
        raise
    return bundle, checks, work


def stamp(results: str | Path, bundle: Bundle, checks: list[CellCheck]) -> Path:
    """Add a verified bundle's records to the store ``results`` and write its stamp."""
    import synthbench
    from synthbench.benchmark.atomic import atomic_write_json
    from synthbench.benchmark.cell import body_digest
    from synthbench.benchmark.store import ResultStore

    store = ResultStore(results)
    for rec in bundle.records:
        store.write(rec)
    path = Path(store.root) / STAMPS / f"{bundle.metadata.get('generator')}-{bundle.sha256[:16]}.json"
    atomic_write_json(path, {
        "format": FORMAT, "generator": bundle.metadata.get("generator"), "bundle_sha256": bundle.sha256,
        "synthbench_version": synthbench.__version__,
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cells_checked": [c.cell_hash for c in checks], "records": sorted(r.cell_hash for r in bundle.records),
        "record_digests": {r.cell_hash: body_digest(r.body()) for r in bundle.records},
        "code": bundle.metadata.get("code"),
    })
    return path


def read_stamps(results: str | Path) -> dict[str, dict[str, Any]]:
    """cell_hash -> the stamp that verified it, from ``results/verified/``:
    its synthbench version and date, how many of its bundle's cells were re-run
    (``checked`` of ``cells``), and the digest of the record it vouches for
    (``record_digest``; absent in stamps written before it was kept), so that a
    record computed again into the same cell later is not shown as verified."""
    out: dict[str, dict[str, Any]] = {}
    folder = Path(results) / STAMPS
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            digests = data.get("record_digests") or {}
            for h in data.get("records", []):
                out[str(h)] = {"synthbench_version": str(data.get("synthbench_version")),
                               "verified_at": str(data.get("verified_at", ""))[:10],
                               "checked": len(data.get("cells_checked") or []), "cells": len(data["records"]),
                               **({"record_digest": str(digests[h])} if h in digests else {})}
        except (OSError, ValueError, AttributeError, TypeError):
            continue  # a stamp that does not read verifies nothing
    return out
