"""The run grid: generators x seeds for one protocol on one dataset and preset.

Each cell is independent and idempotent: its spec hashes to a key; a finished
record with that key is reused (a cache hit), anything else is computed and
written at once, so a killed run resumes where it stopped. A cell that crashes
is recorded as ``failed`` with its error and the grid goes on; errors the user
can fix (:class:`UserError`) stop the run with a message, keeping every record
already written.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

import synthbench
from synthbench.benchmark.context import CellContext
from synthbench.benchmark.datasets import Dataset
from synthbench.benchmark.presets import Preset
from synthbench.benchmark.progress import say
from synthbench.benchmark.provenance import device_name, provenance
from synthbench.benchmark.registry import GENERATORS, PROTOCOLS
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.store import SCHEMA_VERSION, ResultStore, cell_hash
from synthbench.errors import UserError
from synthbench.generators.base import FitContext
from synthbench.protocols.base import Unsupported


@dataclass
class PluginChoice:
    """A plugin name with its resolved options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but PyTorch sees no CUDA device. "
                        "Use --device cpu (or auto), or install a CUDA build of torch.")
    return torch.device(choice)


def cell_spec(dataset: Dataset, gen: PluginChoice, proto: PluginChoice, preset: Preset, seed: int,
              device: torch.device) -> dict[str, Any]:
    """Everything that determines a cell's numbers; its hash is the record key."""
    gcls = GENERATORS.get(gen.name)
    pcls = PROTOCOLS.get(proto.name)
    return {
        "schema_version": SCHEMA_VERSION,
        "synthbench_version": synthbench.__version__,
        "dataset": dataset.name,
        "dataset_digest": dataset.digest,
        "generator": gen.name,
        "generator_version": gcls.version,
        "generator_options": gen.options,
        "generator_extra": gcls.spec_extras(gen.options) if hasattr(gcls, "spec_extras") else {},
        "protocol": proto.name,
        "protocol_version": pcls.version,
        "protocol_options": proto.options,
        "preset": preset.as_dict(),
        "seed": int(seed),
        "device_type": device.type,
    }


@dataclass
class CellOutcome:
    spec: dict[str, Any]
    record: dict[str, Any] | None
    cached: bool


def plan(dataset: Dataset, gens: list[PluginChoice], proto: PluginChoice, preset: Preset,
         seeds: list[int], device: torch.device, store: ResultStore) -> list[CellOutcome]:
    """Every cell of the grid with its cached record, if any (nothing is computed)."""
    out = []
    for g in gens:
        for s in seeds:
            spec = cell_spec(dataset, g, proto, preset, s, device)
            rec = store.lookup(spec)
            out.append(CellOutcome(spec, rec, rec is not None))
    return out


def run_grid(dataset: Dataset, gens: list[PluginChoice], proto: PluginChoice, preset: Preset,
             seeds: list[int], device: torch.device, store: ResultStore) -> list[CellOutcome]:
    cells = plan(dataset, gens, proto, preset, seeds, device, store)
    samples = SampleCache(store.cache_dir)
    protocol = PROTOCOLS.get(proto.name)(**proto.options)
    for g in gens:
        todo = [c for c in cells if c.spec["generator"] == g.name and not c.cached]
        if not todo:
            continue
        generator = GENERATORS.get(g.name)(**g.options)
        fit_ctx = FitContext.from_dataset(dataset, preset, device, store.cache_dir)
        start = time.perf_counter()
        # A generator the protocol cannot use is recorded as such without being
        # trained first (minutes for stylegan3 under recon, for nothing), and a
        # protocol that fits its own (mia: on the members) skips the full fit
        # (half an hour for the fashion-mnist EDM on one core).
        if protocol.unsupported_reason(generator) is None and protocol.needs_fitted_generator():
            say(f"{g.name}: fitting on {dataset.name} ({len(dataset.train)} train images, preset {preset.name})")
            generator.fit(fit_ctx)
        # The fit is paid once, charged to the first cell computed.
        fit_cost = {"fit_s": round(time.perf_counter() - start, 3), **fit_ctx.cost}
        for cell in todo:
            ctx = CellContext(dataset=dataset, generator=generator, preset=preset, seed=cell.spec["seed"],
                              device=device, options=proto.options, samples=samples,
                              cache_dir=store.cache_dir)
            say(f"{g.name} x {proto.name} x {dataset.name}, seed {ctx.seed}")
            start = time.perf_counter()
            record: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "cell_hash": cell_hash(cell.spec),
                "spec": cell.spec,
            }
            try:
                result = protocol.run(ctx)
                record.update(status="ok", error=None, metrics=result.metrics, details=result.details)
            except UserError:
                raise
            except Unsupported as exc:
                record.update(status="unsupported", error=str(exc), metrics={}, details={})
                say(f"not supported: {exc}")
            except Exception as exc:  # recorded, never silently dropped
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc(limit=8), metrics={}, details={})
                say(f"cell failed: {record['error']}")
            timings = dict(ctx.timings)
            for key, seconds in fit_cost.items():  # added: a protocol's own fits (mia) time a phase "fit_s" too
                timings[key] = timings.get(key, 0.0) + seconds
            timings = {k: round(v, 3) for k, v in timings.items()}
            timings["cell_s"] = round(time.perf_counter() - start, 3)
            record["cost"] = {"wall_s": timings, "device": device_name(device)}
            record["provenance"] = provenance(device)
            store.write(record)
            cell.record, cell.cached = record, False
            fit_cost = {"fit_s": 0.0}
    return cells
