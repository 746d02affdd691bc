"""Getting the numbers out: one row per metric of every record, as CSV, JSON
lines or Parquet (``synthbench export``), or as a pandas DataFrame
(``synthbench.api.load_results``).

A row holds the metric (name, value, stderr, n, direction) and everything that
names its cell: dataset and its digest, generator with its version and options,
protocol with its version and options, preset and precision, seed, the CPU
thread count and device it ran on, synthbench version, status and cell hash.
Options are canonical JSON text, so every column is a scalar. A cell without
metrics (``failed``, ``unsupported``) is one row with an empty metric and its
error, so a table built from the export shows the holes a leaderboard shows.
Records are read through the store's one validation (``Record.from_json``):
an invalid file is left out with a warning, or stops the export with
``--strict``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from synthbench.benchmark.cache import canonical_json
from synthbench.benchmark.cell import Record
from synthbench.errors import UserError
from synthbench.leaderboard.audit import threads

COLUMNS = ("dataset", "dataset_digest", "generator", "generator_version", "generator_options", "protocol",
           "protocol_version", "protocol_options", "preset", "precision", "compile", "seed", "metric", "value",
           "stderr", "n", "higher_is_better", "status", "error", "threads", "device", "synthbench_version",
           "cell_hash", "created")
FORMATS = ("csv", "jsonl", "parquet")


def rows(records: Iterable[Record]) -> Iterator[dict[str, Any]]:
    """The export's rows, record by record, metric by metric (sorted by name)."""
    for rec in records:
        s = rec.spec
        device = str(rec.cost.get("device", ""))
        base = {"dataset": s.dataset, "dataset_digest": s.dataset_digest, "generator": s.generator,
                "generator_version": s.generator_version,
                "generator_options": canonical_json({**s.generator_options, **s.generator_extra}),
                "protocol": s.protocol, "protocol_version": s.protocol_version,
                "protocol_options": canonical_json(s.protocol_options), "preset": s.preset.get("name"),
                "precision": s.preset.get("precision", "fp32"), "compile": bool(s.preset.get("compile")),
                "seed": s.seed, "status": rec.status.value,
                "error": rec.error, "threads": threads(rec),
                "device": device, "synthbench_version": s.synthbench_version, "cell_hash": rec.cell_hash,
                "created": rec.provenance.get("created")}
        if not rec.metrics:
            yield {**base, "metric": None, "value": None, "stderr": None, "n": None, "higher_is_better": None}
        for name, m in sorted(rec.metrics.items()):
            yield {**base, "metric": name, "value": m.get("value"), "stderr": m.get("stderr"), "n": m.get("n"),
                   "higher_is_better": m.get("higher_is_better")}


def write(records: Iterable[Record], out: str | Path, fmt: str) -> int:
    """Write the export to ``out`` in ``fmt``; the number of rows written."""
    out = Path(out)
    table = [{c: row[c] for c in COLUMNS} for row in rows(records)]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            with out.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(table)
        elif fmt == "jsonl":
            with out.open("w", encoding="utf-8") as fh:
                for row in table:
                    fh.write(json.dumps(row) + "\n")
        elif fmt == "parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise UserError("--format parquet needs pyarrow, which is not installed. Install synthbench's "
                                "export extra (pip install -e \".[export]\"), or use --format csv.") from None
            pq.write_table(pa.Table.from_pylist(table), out)
        else:
            raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    except OSError as exc:
        raise UserError(f"Cannot write the export to {out} ({exc.strerror or exc}). Give --out a path you can "
                        f"write to.") from None
    return len(table)


def load_results(results: str | Path, strict: bool = False) -> Any:
    """Every valid record of the store at ``results`` as a pandas DataFrame, one
    row per metric (the export's columns), e.g.
    ``df[df.metric == "top1"].groupby(["generator", "protocol"]).value.mean()``."""
    try:
        import pandas as pd
    except ImportError:
        raise UserError("load_results needs pandas, which is not installed. Install synthbench's export extra: "
                        "pip install -e \".[export]\".") from None
    from synthbench.leaderboard.aggregate import read_store

    read = read_store(results, strict=strict)
    return pd.DataFrame([{c: row[c] for c in COLUMNS} for row in rows(read.records)], columns=list(COLUMNS))
