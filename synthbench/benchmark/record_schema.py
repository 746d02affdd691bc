"""The record schema: what a stored record's file must hold, checked on every read.

One policy for every reader (the store's cache lookup, the leaderboard,
``regress``, the migration): :func:`parse_record` turns a file's bytes into JSON
and :func:`check_record` checks its types and ranges, both raising ``ValueError``
with a message that names the field and what is wrong with it, e.g.
``field `spec.seed`: -1 is not a non-negative integer``. The caller adds the
file's path. The digest of the record's body is checked after this, in
:meth:`synthbench.benchmark.cell.Record.from_json`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from synthbench.benchmark.metrics import PER_IMAGE, unpack_outcomes

SCHEMA_VERSION = 1
DIGEST_FIELD = "record_digest"
"""The top-level field holding ``sha256:<hex>`` of the rest of the record."""

MAX_DEPTH = 32
"""Deepest nesting a record may have (written records reach 7); a deeper one is
refused before anything walks it recursively."""

SEED_LIMIT = 2**63
STATUSES = ("ok", "failed", "unsupported")
RECORD_FIELDS = ("schema_version", "cell_hash", "spec", "status", "error", "metrics", "details", "cost",
                 "provenance")
"""Required top-level fields; ``traceback`` and the digest are the only others."""
OPTIONAL_FIELDS = ("traceback", DIGEST_FIELD)
SPEC_FIELDS = ("schema_version", "synthbench_version", "dataset", "dataset_digest", "generator",
               "generator_version", "generator_options", "generator_extra", "protocol", "protocol_version",
               "protocol_options", "preset", "seed", "device_type")
SPEC_OPTIONAL = ("protocol_extra",)
"""Written only when not empty (a protocol's ``spec_extras``), so every spec without
one keeps the JSON, and the key, it always had."""
METRIC_FIELDS = ("value", "stderr", "n", "higher_is_better")


def parse_record(raw: bytes) -> Any:
    """The JSON in a record file's bytes; ``ValueError`` when it is not UTF-8 JSON."""
    if not raw.strip():
        raise ValueError("the file is empty (a write was cut short, or the file was truncated)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("its JSON is nested too deeply to read") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise ValueError(f"not valid JSON ({exc}); the file may be truncated") from None


def show(value: Any) -> str:
    """A value as a message quotes it: JSON scalars as JSON, containers by kind."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"an integer of {len(str(abs(value)))} digits"
    return json.dumps(value)


def _fail(where: str, message: str) -> ValueError:
    return ValueError(f"field `{where}`: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(where, f"{show(data)} is not a mapping")
    return data


def _name(data: Mapping[str, Any], key: str, where: str) -> None:
    if not isinstance(data[key], str) or not data[key]:
        raise _fail(f"{where}{key}", f"{show(data[key])} is not a non-empty string")


def _integer(data: Mapping[str, Any], key: str, where: str) -> None:
    if not _is_int(data[key]):
        raise _fail(f"{where}{key}", f"{show(data[key])} is not an integer")


def _optional_text(data: Mapping[str, Any], key: str) -> None:
    if data.get(key) is not None and not isinstance(data[key], str):
        raise _fail(key, f"{show(data[key])} is neither null nor a string")


def _fields(data: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    missing = [k for k in required if k not in data]
    if missing:
        raise _fail(f"{where}{missing[0]}", "missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        kind = "a record's spec" if where == "spec." else f"a record's `{where[:-1]}`" if where else "a record"
        raise _fail(f"{where}{unknown[0]}", f"not a field of {kind}")


def _schema_version(value: Any, where: str) -> None:
    if not _is_int(value) or value != SCHEMA_VERSION:
        raise _fail(where, f"{show(value)} is not a known schema version (this synthbench reads {SCHEMA_VERSION})")


def check_depth(data: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit``, walking without recursion."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= limit:
                raise ValueError(f"its JSON is nested deeper than {limit} levels")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def check_spec(data: Any) -> None:
    """A record's ``spec``: every field present, of its type and range."""
    spec = _mapping(data, "spec")
    _fields(spec, SPEC_FIELDS, SPEC_OPTIONAL, "spec.")
    _schema_version(spec["schema_version"], "spec.schema_version")
    for key in ("synthbench_version", "dataset", "dataset_digest", "generator", "protocol", "device_type"):
        _name(spec, key, "spec.")
    for key in ("generator_version", "protocol_version"):
        _integer(spec, key, "spec.")
    for key in ("generator_options", "generator_extra", "protocol_options", "preset", *SPEC_OPTIONAL):
        if key in spec:
            _mapping(spec[key], f"spec.{key}")
    seed = spec["seed"]
    if not _is_int(seed) or seed < 0:
        raise _fail("spec.seed", f"{show(seed)} is not a non-negative integer")
    if seed >= SEED_LIMIT:
        raise _fail("spec.seed", f"{show(seed)} is not below 2**63")


def check_metric(name: str, entry: Any) -> None:
    where = f"metrics.{name}"
    entry = _mapping(entry, where)
    _fields(entry, METRIC_FIELDS, (PER_IMAGE,), f"{where}.")
    if not _is_finite(entry["value"]):
        raise _fail(f"{where}.value", f"{show(entry['value'])} is not a finite number")
    stderr = entry["stderr"]
    if stderr is not None and not (_is_finite(stderr) and stderr >= 0):
        raise _fail(f"{where}.stderr", f"{show(stderr)} is neither null nor a finite number >= 0")
    n = entry["n"]
    if n is not None and not (_is_int(n) and n >= 0):
        raise _fail(f"{where}.n", f"{show(n)} is neither null nor a non-negative integer")
    if entry["higher_is_better"] is not None and not isinstance(entry["higher_is_better"], bool):
        raise _fail(f"{where}.higher_is_better", f"{show(entry['higher_is_better'])} is not true, false or null "
                                                 f"(a diagnostic with no direction)")
    if PER_IMAGE in entry:
        _per_image(entry, f"{where}.{PER_IMAGE}")


def _per_image(entry: Mapping[str, Any], where: str) -> None:
    """Per-image outcomes must be ``n`` bits whose mean is the metric's value: the
    paired test reads them, so they must not say something else than the number."""
    text, n = entry[PER_IMAGE], entry["n"]
    if not isinstance(text, str):
        raise _fail(where, f"{show(text)} is not a string (base64 of the packed per-image outcomes)")
    if not _is_int(n) or n <= 0:
        raise _fail(where, "present, but the metric's n is not a positive count of test images")
    try:
        bits = unpack_outcomes(text, n)
    except ValueError as exc:
        raise _fail(where, str(exc)) from None
    if abs(float(bits.sum()) / n - float(entry["value"])) > 1e-9:
        raise _fail(where, f"its mean {int(bits.sum())}/{n} is not the metric's value {show(entry['value'])}")


def check_record(data: Any) -> None:
    """A record's JSON (its digest aside): ``ValueError`` naming the first bad field."""
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else show(data)
        raise ValueError(f"the file holds {kind}, not a record (a JSON object)")
    check_depth(data)
    _fields(data, RECORD_FIELDS, OPTIONAL_FIELDS, "")
    _schema_version(data["schema_version"], "schema_version")
    cell_hash = data["cell_hash"]
    if not (isinstance(cell_hash, str) and len(cell_hash) == 64 and all(c in "0123456789abcdef" for c in cell_hash)):
        raise _fail("cell_hash", f"{show(cell_hash)} is not a SHA-256 hex digest")
    check_spec(data["spec"])
    if data["status"] not in STATUSES:
        raise _fail("status", f"{show(data['status'])} is not ok, failed or unsupported")
    _optional_text(data, "error")
    _optional_text(data, "traceback")
    for name, entry in _mapping(data["metrics"], "metrics").items():
        if not name:
            raise _fail("metrics", "a metric has an empty name")
        check_metric(name, entry)
    _mapping(data["details"], "details")
    _mapping(data["provenance"], "provenance")
    cost = _mapping(data["cost"], "cost")
    if "wall_s" in cost:
        for phase, seconds in _mapping(cost["wall_s"], "cost.wall_s").items():
            if not (_is_finite(seconds) and seconds >= 0):
                raise _fail(f"cost.wall_s.{phase}", f"{show(seconds)} is not a finite number of seconds >= 0")
    if cost.get("device") is not None and not isinstance(cost["device"], str):
        raise _fail("cost.device", f"{show(cost['device'])} is neither null nor a string")
    images = cost.get("pool_images")
    if images is not None and not (isinstance(images, int) and not isinstance(images, bool) and images > 0):
        raise _fail("cost.pool_images", f"{show(images)} is not a number of images > 0")
