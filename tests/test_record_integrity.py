"""Record integrity (issue 13): a record changed after it was written is never a
cache hit and never rendered; the record schema is checked on every read with a
message naming the file and the field; the leaderboard renders every valid record
and lists the invalid ones (``--strict`` stops instead); the one-off migration
adds the digest to records written before records carried one.

Everything here is built by hand (no training), so the file runs in seconds."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from synthbench.benchmark.atomic import atomic_write_json
from synthbench.benchmark.cell import DIGEST_FIELD, CellSpec, Record, body_digest, cell_hash, seal
from synthbench.benchmark.store import ResultStore, read_record
from synthbench.errors import UserError
from synthbench.plugins import GENERATORS
from synthbench.leaderboard.aggregate import build_tables, read_store, store_digest
from synthbench.leaderboard import site
from synthbench.leaderboard.site import build_site
from test_cli import run_cli

SPEC = {"schema_version": 1, "synthbench_version": "0.1.0", "dataset": "digits", "dataset_digest": "d" * 64,
        "generator": "edm", "generator_version": 1, "generator_options": {}, "generator_extra": {},
        "protocol": "replace", "protocol_version": 1, "protocol_options": {},
        "preset": {"name": "smoke", "precision": "fp32"},
        "seed": 0, "device_type": "cpu"}


def body(generator: str = "edm", value: float = 0.8, seed: int = 0) -> dict[str, Any]:
    """A record's JSON as the run grid writes it, without its digest."""
    spec = dict(SPEC, generator=generator, seed=seed)
    return {"schema_version": 1, "cell_hash": cell_hash(spec), "spec": spec, "status": "ok", "error": None,
            "metrics": {"top1": {"value": value, "stderr": 0.01, "n": 100, "higher_is_better": True}},
            "details": {},
            "cost": {"wall_s": {"cell_s": 1.5, "fit_s": 0.0}, "device": "cpu (test)"},
            "provenance": {"created": "2024-01-01T00:00:00+00:00"}}


def record(generator: str = "edm", value: float = 0.8, seed: int = 0) -> Record:
    return Record.from_json(seal(body(generator, value, seed)))


def store_with_real(root: Path) -> ResultStore:
    """A store holding one valid record (``real``), so a board can always be built."""
    store = ResultStore(root)
    store.write(record("real", 0.95))
    return store


def edm_path(store: ResultStore) -> Path:
    return store.path_for(CellSpec.from_json(SPEC))


def rewrite(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- digest


def test_records_carry_a_digest_of_their_body():
    rec = record()
    data = rec.to_json()
    assert data[DIGEST_FIELD] == body_digest(data) and data[DIGEST_FIELD].startswith("sha256:")
    assert {k: v for k, v in data.items() if k != DIGEST_FIELD} == rec.body()
    assert data["cell_hash"] == cell_hash(SPEC)  # the key still covers the spec alone
    assert Record.from_json(data) == rec
    assert store_digest([rec]) == store_digest([Record.from_json(seal(rec.body()))])  # over the body only


def test_a_hand_edited_metric_is_never_a_cache_hit_nor_rendered(tmp_path, capsys):
    store = store_with_real(tmp_path)
    store.write(record("edm", 0.2526))
    spec = CellSpec.from_json(SPEC)
    assert store.lookup(spec).metrics["top1"]["value"] == 0.2526
    rewrite(edm_path(store), lambda d: d["metrics"]["top1"].update(value=0.7766))  # the edit of issue 13
    with pytest.raises(ValueError, match="its body was edited after it was written"):
        read_record(edm_path(store))
    assert store.lookup(spec) is None  # evaluate recomputes the cell
    read = read_store(store.root)
    assert [r.spec.generator for r in read.records] == ["real"]
    (item,) = read.left_out
    assert item.path == str(edm_path(store).relative_to(store.root)) and "edited after it was written" in item.reason
    assert all(r.generator != "edm" for t in build_tables(read.records) for r in t.rows)  # never shown as best


def test_an_edited_spec_without_its_hash_is_refused(tmp_path):
    store = store_with_real(tmp_path)
    store.write(record("edm"))
    rewrite(edm_path(store), lambda d: d["spec"].update(seed=5))
    with pytest.raises(ValueError, match="cell_hash does not match its spec"):
        read_record(edm_path(store))
    assert store.lookup(CellSpec.from_json(SPEC)) is None
    assert store.lookup(CellSpec.from_json(dict(SPEC, seed=5))) is None  # nor a hit for the spec it claims
    read = read_store(store.root)
    assert len(read.records) == 1 and "cell_hash does not match" in read.left_out[0].reason


def test_a_truncated_record_is_refused(tmp_path):
    store = store_with_real(tmp_path)
    store.write(record("edm"))
    path = edm_path(store)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert store.lookup(CellSpec.from_json(SPEC)) is None
    (item,) = read_store(store.root).left_out
    assert "not valid JSON" in item.reason and "truncated" in item.reason
    with pytest.raises(UserError, match=r"seed0-[0-9a-f]{16}\.json is not a valid synthbench record"):
        read_store(store.root, strict=True)


def test_a_record_without_a_digest_says_to_migrate(tmp_path):
    store = store_with_real(tmp_path)
    atomic_write_json(edm_path(store), body("edm"))
    assert store.lookup(CellSpec.from_json(SPEC)) is None
    (item,) = read_store(store.root).left_out
    assert "no `record_digest`" in item.reason and "synthbench records migrate" in item.reason


# --------------------------------------------------------------------------- migration


def test_migration_adds_the_digest_and_changes_nothing_else(tmp_path, capsys):
    # generators that are not installed: their specs are taken as they are (no re-keying)
    store = ResultStore(tmp_path)
    old = [body("real", 0.95), body("gan", 0.8), body("gan", 0.7, seed=1)]
    paths = [atomic_write_json(store.path_for(CellSpec.from_json(b["spec"])), b) for b in old]
    texts = [p.read_text() for p in paths]
    current = store.write(record("gan2"))
    broken = paths[2].with_name("seed1-broken.json")
    atomic_write_json(broken, dict(body("gan", seed=1), metrics={"top1": {"value": float("nan"), "stderr": None,
                                                                          "n": 1, "higher_is_better": True}}))

    code, out, err = run_cli(["records", "migrate", "--results", str(tmp_path), "--dry-run"], capsys)
    assert code == 2 and "would migrate 3 records, re-keyed 0, 1 already current, 1 refused" in out
    assert [p.read_text() for p in paths] == texts  # a dry run writes nothing

    code, out, err = run_cli(["records", "migrate", "--results", str(tmp_path)], capsys)
    assert code == 2 and "migrated 3 records, re-keyed 0, 1 already current, 1 refused" in out
    assert f"refused {broken}: field `metrics.top1.value`: NaN is not a finite number" in err
    assert "error: 1 record file(s)" in err and "Traceback" not in err
    for path, text, b in zip(paths, texts, old):
        new = path.read_text()
        assert json.loads(new) == seal(b)
        added = [line for line in new.splitlines() if line not in text.splitlines()]
        assert len(added) == 1 and added[0].strip().startswith(f'"{DIGEST_FIELD}": "sha256:')  # one line more
        assert read_record(path).body() == b
    assert DIGEST_FIELD not in json.loads(broken.read_text())  # refused: untouched

    broken.unlink()
    code, out, _ = run_cli(["records", "migrate", "--results", str(tmp_path)], capsys)
    assert code == 0 and "migrated 0 records, re-keyed 0, 4 already current, 0 refused" in out
    assert read_record(current) == record("gan2")


def test_migration_refuses_an_edited_record(tmp_path):
    store = ResultStore(tmp_path)
    store.write(record("edm"))
    rewrite(edm_path(store), lambda d: d["metrics"]["top1"].update(value=0.99))
    report = store.migrate()
    assert report.migrated == [] and report.refused[0][0] == edm_path(store)
    assert "edited after it was written" in report.refused[0][1]  # never re-sealed by the migration


def test_migration_moves_records_keyed_by_an_option_that_left_the_key(tmp_path, capsys):
    """``eval_batch`` left cell keys at its default (``Option.in_key``; set, it
    is keyed again: ``keyed_when_set``), and ``precision`` joined them later
    with a default that reproduces the old images: a record written before
    moves to its current key (the key a run computes today) with its numbers
    unchanged, digest or not."""
    store = ResultStore(tmp_path)
    keyed = {**SPEC, "generator_options": {**SPEC["generator_options"], "eval_batch": None, "churn": 0.0}}
    old_body = {**body("edm"), "spec": keyed, "cell_hash": cell_hash(keyed)}
    unsealed = atomic_write_json(store.path_for(CellSpec.from_json(keyed)), old_body)
    sealed_spec = {**keyed, "seed": 1}
    sealed = store.write(Record.from_json(seal({**old_body, "spec": sealed_spec, "cell_hash": cell_hash(sealed_spec)})))

    code, out, _ = run_cli(["records", "migrate", "--results", str(tmp_path)], capsys)
    assert code == 0 and "migrated 0 records, re-keyed 2, 0 already current, 0 refused" in out
    assert not unsealed.exists() and not sealed.exists()
    # today's key: eval_batch gone, options declared since the record added at their defaults
    declared = GENERATORS.get("edm").options
    today = {name: opt.default for name, opt in declared.items() if opt.in_key}
    assert "eval_batch" not in today and "precision" in today
    for seed in (0, 1):
        want = CellSpec.from_json({**SPEC, "seed": seed, "generator_options": {**today, "churn": 0.0}})
        moved = store.lookup(want)  # found at the key a run computes today, and valid
        assert moved is not None and moved.metrics == old_body["metrics"]
    code, out, _ = run_cli(["records", "migrate", "--results", str(tmp_path)], capsys)
    assert "re-keyed 0, 2 already current" in out


def test_a_set_network_batch_is_in_the_key_and_an_unset_one_is_not():
    """A set ``eval_batch`` can move an image in the last bits (3 of 4,000
    smoke EDM images at batch 16 against 64 on an AMX CPU), so it makes its own
    cell; unset, the key is the one every published record has."""
    from synthbench.benchmark.cell import current_spec
    from synthbench.benchmark.options import keyed_options

    declared = GENERATORS.get("edm").options
    options = {name: opt.default for name, opt in declared.items()}
    assert "eval_batch" not in keyed_options(declared, options)
    assert keyed_options(declared, {**options, "eval_batch": 16})["eval_batch"] == 16
    spec = CellSpec.from_json({**SPEC, "generator_options": {**SPEC["generator_options"], "eval_batch": 16}})
    assert current_spec(spec).generator_options["eval_batch"] == 16  # migrate keeps it: it made those numbers


# --------------------------------------------------------------------------- malformed records


@dataclass
class Kind:
    """One malformed (or odd but valid) record file."""

    name: str
    content: Callable[[], bytes]
    expect: str
    """``listed`` (left out, with ``reason`` in its message) or ``rendered``."""
    reason: str = ""


def _sealed(edit: Callable[[dict], Any], rehash: bool = True) -> Callable[[], bytes]:
    """A record edited by ``edit`` and then given a matching ``cell_hash`` and
    digest, so only the schema stands between it and the board."""
    def make() -> bytes:
        data = body("edm")
        edit(data)
        if rehash and isinstance(data, dict) and isinstance(data.get("spec"), dict):
            data["cell_hash"] = cell_hash(data["spec"])
        if isinstance(data, dict):
            data = seal(data)
        return json.dumps(data, indent=2).encode()
    return make


def _raw(text: str | bytes) -> Callable[[], bytes]:
    return lambda: text if isinstance(text, bytes) else text.encode()


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value
    return edit


def _drop(path: str) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        del data[last]
    return edit


def _text_edit(old: str, new: str) -> Callable[[], bytes]:
    """A sealed record whose JSON text is then edited (for tokens json.dumps cannot write)."""
    return lambda: _sealed(lambda d: None)().replace(old.encode(), new.encode())


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _unhashed_spec_edit() -> bytes:
    data = seal(body("edm"))
    data["spec"]["seed"] = 7
    return json.dumps(data).encode()


def _unsealed_metric_edit() -> bytes:
    data = seal(body("edm"))
    data["metrics"]["top1"]["value"] = 0.7766
    return json.dumps(data).encode()


M = "metrics.top1"
KINDS = [
    # the seed
    Kind("seed-list", _sealed(_set("spec.seed", [1])), "listed", "field `spec.seed`: a list is not a non-negative"),
    Kind("seed-true", _sealed(_set("spec.seed", True)), "listed", "field `spec.seed`: true is not"),
    Kind("seed-half", _sealed(_set("spec.seed", 0.5)), "listed", "field `spec.seed`: 0.5 is not"),
    Kind("seed-float-one", _sealed(_set("spec.seed", 1.0)), "listed", "field `spec.seed`: 1.0 is not"),
    Kind("seed-negative", _sealed(_set("spec.seed", -1)), "listed",
         "field `spec.seed`: -1 is not a non-negative integer"),
    Kind("seed-string", _sealed(_set("spec.seed", "0")), "listed", "field `spec.seed`"),
    Kind("seed-null", _sealed(_set("spec.seed", None)), "listed", "field `spec.seed`: null"),
    Kind("seed-2**64", _sealed(_set("spec.seed", 2**64)), "listed", "is not below 2**63"),
    Kind("seed-5000-digits", _raw('{"spec": {"seed": ' + "9" * 5000 + "}}"), "listed", "not valid JSON"),
    # metric entries
    Kind("value-nan", _sealed(_set(f"{M}.value", math.nan)), "listed",
         "field `metrics.top1.value`: NaN is not a finite number"),
    Kind("value-inf", _sealed(_set(f"{M}.value", math.inf)), "listed", "Infinity is not a finite number"),
    Kind("value-minus-inf", _sealed(_set(f"{M}.value", -math.inf)), "listed", "-Infinity is not a finite"),
    Kind("value-1e400", _text_edit('"value": 0.8', '"value": 1e400'), "listed", "field `metrics.top1.value`"),
    Kind("value-string", _sealed(_set(f"{M}.value", "0.9")), "listed", '"0.9" is not a finite number'),
    Kind("value-bool", _sealed(_set(f"{M}.value", True)), "listed", "true is not a finite number"),
    Kind("value-null", _sealed(_set(f"{M}.value", None)), "listed", "null is not a finite number"),
    Kind("value-list", _sealed(_set(f"{M}.value", [0.9])), "listed", "a list is not a finite number"),
    Kind("stderr-negative", _sealed(_set(f"{M}.stderr", -0.1)), "listed", "field `metrics.top1.stderr`"),
    Kind("stderr-string", _sealed(_set(f"{M}.stderr", "x")), "listed", "field `metrics.top1.stderr`"),
    Kind("stderr-nan", _sealed(_set(f"{M}.stderr", math.nan)), "listed", "field `metrics.top1.stderr`"),
    Kind("n-negative", _sealed(_set(f"{M}.n", -1)), "listed", "field `metrics.top1.n`"),
    Kind("n-float", _sealed(_set(f"{M}.n", 1.5)), "listed", "field `metrics.top1.n`"),
    Kind("n-bool", _sealed(_set(f"{M}.n", True)), "listed", "field `metrics.top1.n`"),
    Kind("higher-is-better-string", _sealed(_set(f"{M}.higher_is_better", "yes")), "listed",
         "field `metrics.top1.higher_is_better`"),
    Kind("higher-is-better-int", _sealed(_set(f"{M}.higher_is_better", 1)), "listed", "1 is not true, false or null"),
    Kind("metric-without-value", _sealed(_drop(f"{M}.value")), "listed", "field `metrics.top1.value`: missing"),
    Kind("metric-extra-field", _sealed(_set(f"{M}.note", "x")), "listed",
         "field `metrics.top1.note`: not a field of a record's `metrics.top1`"),
    Kind("metric-entry-list", _sealed(_set(M, [0.9])), "listed", "field `metrics.top1`: a list is not a mapping"),
    Kind("metric-entry-number", _sealed(_set(M, 0.9)), "listed", "field `metrics.top1`: 0.9 is not a mapping"),
    Kind("metric-empty-name", _sealed(_set("metrics.", {"value": 1.0, "stderr": None, "n": None,
                                                        "higher_is_better": True})), "listed", "empty name"),
    Kind("metrics-list", _sealed(_set("metrics", [])), "listed", "field `metrics`: a list is not a mapping"),
    Kind("metrics-null", _sealed(_set("metrics", None)), "listed", "field `metrics`: null is not a mapping"),
    # the spec
    Kind("preset-string", _sealed(_set("spec.preset", "smoke")), "listed",
         'field `spec.preset`: "smoke" is not a mapping'),
    Kind("preset-null", _sealed(_set("spec.preset", None)), "listed", "field `spec.preset`"),
    Kind("schema-version-2", _sealed(_set("schema_version", 2)), "listed",
         "field `schema_version`: 2 is not a known schema version"),
    Kind("schema-version-string", _sealed(_set("schema_version", "1")), "listed", "field `schema_version`"),
    Kind("spec-schema-version-2", _sealed(_set("spec.schema_version", 2)), "listed", "field `spec.schema_version`"),
    Kind("dataset-empty", _sealed(_set("spec.dataset", "")), "listed", "field `spec.dataset`"),
    Kind("generator-number", _sealed(_set("spec.generator", 5)), "listed",
         "field `spec.generator`: 5 is not a non-empty string"),
    Kind("protocol-null", _sealed(_set("spec.protocol", None)), "listed", "field `spec.protocol`"),
    Kind("generator-version-string", _sealed(_set("spec.generator_version", "1")), "listed",
         "field `spec.generator_version`"),
    Kind("protocol-version-float", _sealed(_set("spec.protocol_version", 1.0)), "listed",
         "field `spec.protocol_version`"),
    Kind("generator-options-list", _sealed(_set("spec.generator_options", [])), "listed",
         "field `spec.generator_options`"),
    Kind("protocol-options-string", _sealed(_set("spec.protocol_options", "a=b")), "listed",
         "field `spec.protocol_options`"),
    Kind("generator-extra-null", _sealed(_set("spec.generator_extra", None)), "listed", "field `spec.generator_extra`"),
    Kind("device-type-number", _sealed(_set("spec.device_type", 0)), "listed", "field `spec.device_type`"),
    Kind("dataset-digest-null", _sealed(_set("spec.dataset_digest", None)), "listed", "field `spec.dataset_digest`"),
    Kind("synthbench-version-float", _sealed(_set("spec.synthbench_version", 0.1)), "listed",
         "field `spec.synthbench_version`"),
    Kind("spec-without-seed", _sealed(_drop("spec.seed")), "listed", "field `spec.seed`: missing"),
    Kind("spec-extra-field", _sealed(_set("spec.colour", "red")), "listed",
         "field `spec.colour`: not a field of a record's spec"),
    Kind("spec-list", _sealed(_set("spec", [])), "listed", "field `spec`: a list is not a mapping"),
    # the other top-level fields
    Kind("details-list", _sealed(_set("details", [])), "listed", "field `details`: a list is not a mapping"),
    Kind("details-string", _sealed(_set("details", "x")), "listed", "field `details`"),
    Kind("cost-number", _sealed(_set("cost", 5)), "listed", "field `cost`: 5 is not a mapping"),
    Kind("wall-s-list", _sealed(_set("cost.wall_s", [1.0])), "listed", "field `cost.wall_s`"),
    Kind("wall-s-string", _sealed(_set("cost.wall_s.cell_s", "1")), "listed", "field `cost.wall_s.cell_s`"),
    Kind("wall-s-nan", _sealed(_set("cost.wall_s.cell_s", math.nan)), "listed", "field `cost.wall_s.cell_s`"),
    Kind("wall-s-negative", _sealed(_set("cost.wall_s.cell_s", -1.0)), "listed", "field `cost.wall_s.cell_s`"),
    Kind("cost-device-number", _sealed(_set("cost.device", 5)), "listed", "field `cost.device`"),
    Kind("pool-images-zero", _sealed(_set("cost.pool_images", 0)), "listed",
         "field `cost.pool_images`: 0 is not a number of images > 0"),
    Kind("pool-images-string", _sealed(_set("cost.pool_images", "3000")), "listed", "field `cost.pool_images`"),
    Kind("provenance-list", _sealed(_set("provenance", [])), "listed", "field `provenance`"),
    Kind("error-number", _sealed(_set("error", 5)), "listed", "field `error`: 5 is neither null nor a string"),
    Kind("traceback-list", _sealed(_set("traceback", [])), "listed", "field `traceback`"),
    Kind("status-done", _sealed(_set("status", "done")), "listed",
         'field `status`: "done" is not ok, failed or unsupported'),
    Kind("status-null", _sealed(_set("status", None)), "listed", "field `status`"),
    Kind("status-markup", _sealed(_set("status", "<script>window.__pwned=1</script>")), "listed", "field `status`"),
    Kind("without-metrics", _sealed(_drop("metrics")), "listed", "field `metrics`: missing"),
    Kind("extra-top-level-field", _sealed(_set("comment", "hi")), "listed",
         "field `comment`: not a field of a record"),
    Kind("cell-hash-not-hex", _sealed(_set("cell_hash", "x"), rehash=False), "listed", "field `cell_hash`"),
    Kind("details-nested-40-deep", _sealed(_set("details", _nested(40))), "listed", "nested deeper than 32"),
    # the hash and the digest
    Kind("spec-edited-without-hash", _unhashed_spec_edit, "listed", "cell_hash does not match its spec"),
    Kind("metric-edited-by-hand", _unsealed_metric_edit, "listed", "its body was edited after it was written"),
    Kind("without-digest", lambda: json.dumps(body("edm")).encode(), "listed", "run `synthbench records migrate"),
    Kind("digest-short", _text_edit('"record_digest": "sha256:', '"record_digest": "sha256:0'), "listed",
         "field `record_digest`"),
    Kind("digest-number", lambda: json.dumps(dict(body("edm"), record_digest=5)).encode(), "listed",
         "field `record_digest`"),
    # what is not a record object at all
    Kind("empty-file", _raw(b""), "listed", "the file is empty"),
    Kind("whitespace-only", _raw(b" \n\t\n"), "listed", "the file is empty"),
    Kind("truncated", lambda: _sealed(lambda d: None)()[:300], "listed", "not valid JSON"),
    Kind("binary-garbage", _raw(bytes(range(256)) * 4), "listed", "not UTF-8 text"),
    Kind("utf-16", lambda: json.dumps(seal(body("edm"))).encode("utf-16"), "listed", "not UTF-8 text"),
    Kind("utf-8-bom", lambda: b"\xef\xbb\xbf" + json.dumps(seal(body("edm"))).encode(), "listed", "not valid JSON"),
    Kind("trailing-garbage", lambda: _sealed(lambda d: None)() + b"}{", "listed", "not valid JSON"),
    Kind("top-level-list", _raw("[1, 2]"), "listed", "the file holds a list, not a record"),
    Kind("top-level-string", _raw('"record"'), "listed", 'the file holds "record", not a record'),
    Kind("top-level-number", _raw("5"), "listed", "the file holds 5, not a record"),
    Kind("top-level-null", _raw("null"), "listed", "the file holds null"),
    Kind("top-level-true", _raw("true"), "listed", "the file holds true"),
    Kind("top-level-nan", _raw("NaN"), "listed", "the file holds NaN"),
    Kind("100000-nested-lists", _raw("[" * 100_000 + "]" * 100_000), "listed", "nested too deeply"),
    Kind("100000-nested-objects", _raw('{"details": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001), "listed",
         "nested too deeply"),
    # odd but valid: rendered, no traceback
    Kind("value-1e308", _sealed(_set(M, {"value": 1e308, "stderr": 1e308, "n": 1, "higher_is_better": True})),
         "rendered"),
    Kind("value-minus-1e308", _sealed(_set(f"{M}.value", -1e308)), "rendered"),
    Kind("top1-minus-5", _sealed(_set(f"{M}.value", -5)), "rendered"),
    Kind("value-subnormal", _sealed(_set(f"{M}.value", 5e-324)), "rendered"),
    Kind("stderr-and-n-null", _sealed(_set(M, {"value": 0.5, "stderr": None, "n": None, "higher_is_better": False})),
         "rendered"),
    Kind("seed-2**63-1", _sealed(_set("spec.seed", 2**63 - 1)), "rendered"),
    Kind("preset-empty", _sealed(_set("spec.preset", {})), "rendered"),
    Kind("generator-markup", _sealed(_set("spec.generator", "<script>window.__pwned=1</script>")), "rendered"),
    Kind("generator-unicode", _sealed(_set("spec.generator", "édm-生成")), "rendered"),
    Kind("odd-details", _sealed(_set("details", {"curve": "x", "confusion_matrix": [[1e308, "a"]], "pca": 5,
                                                 "per_class_accuracy": {"a": [1e308]}, "samples": [[[1]]]})),
         "rendered"),
    Kind("failed-with-traceback", _sealed(lambda d: d.update(status="failed", error="RuntimeError: boom",
                                                             traceback="Traceback ...", metrics={})), "rendered"),
    Kind("no-wall-s", _sealed(_set("cost", {})), "rendered"),
]


def test_there_are_at_least_fifty_distinct_kinds():
    assert len({k.name for k in KINDS}) == len(KINDS) >= 50
    assert len({k.content() for k in KINDS}) == len(KINDS)


def _store_with(root: Path, kind: Kind) -> tuple[ResultStore, Path]:
    store = store_with_real(root / "results")
    path = edm_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(kind.content())
    return store, path


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_a_malformed_record_is_rendered_or_listed_never_a_traceback(kind, tmp_path, monkeypatch):
    store, path = _store_with(tmp_path, kind)
    if kind.expect == "listed":  # the board holds `real` alone: its figure is not what is tested here
        monkeypatch.setattr(site, "_table_figures", lambda table, out: [])
    read = read_store(store.root)
    if kind.expect == "listed":
        assert [r.spec.generator for r in read.records] == ["real"]
        (item,) = read.left_out
        assert item.path == str(path.relative_to(store.root)) and kind.reason in item.reason, item.reason
        assert store.lookup(CellSpec.from_json(SPEC)) is None  # never a cache hit: recomputed
        with pytest.raises(UserError, match="is not a valid synthbench record"):
            read_store(store.root, strict=True)
    else:
        assert len(read.records) == 2 and not read.left_out
    build = build_site(store.root, tmp_path / "site")  # rendering it raises nothing either
    index = (tmp_path / "site" / "index.html").read_text()
    assert build.records == len(read.records) and len(build.left_out) == len(read.left_out)
    assert ("Records left out" in index) == (kind.expect == "listed")
    assert "<script>window" not in "".join(p.read_text() for p in build.pages)  # escaped wherever it shows


@pytest.mark.parametrize("name", ["seed-list", "value-1e308", "100000-nested-lists", "binary-garbage",
                                  "metric-edited-by-hand", "status-markup"])
def test_the_leaderboard_command_lists_by_default_and_stops_with_strict(name, tmp_path, capsys):
    kind = next(k for k in KINDS if k.name == name)
    store, path = _store_with(tmp_path, kind)
    args = ["leaderboard", "--results", str(store.root), "--out", str(tmp_path / "site"), "-q"]
    code, out, err = run_cli(args, capsys)
    assert code == 0 and "Traceback" not in err
    index = (tmp_path / "site" / "index.html").read_text()
    if kind.expect == "rendered":
        assert "2 records ->" in out and "left out" not in err
        return
    assert f"warning: left out {path}: " in err and "1 invalid record file(s)" in err
    assert "1 records ->" in out and "Records left out" in index and path.name in index
    code, out, err = run_cli(args + ["--strict"], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: The record ") and err.count("\n") == 1  # one paragraph
    assert str(path) in err and "is not a valid synthbench record" in err


def test_a_store_of_only_invalid_records_is_one_paragraph(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.write(record("edm"))
    rewrite(edm_path(store), lambda d: d["spec"].update(seed=-1))
    code, _, err = run_cli(["leaderboard", "--results", str(tmp_path), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "holds no valid records" in err and "field `spec.seed`: -1" in err
    assert "Traceback" not in err


def test_a_folder_named_like_a_record_is_listed(tmp_path):
    store = store_with_real(tmp_path)
    (store.root / "records" / "digits" / "odd.json").mkdir()
    read = read_store(store.root)
    assert len(read.records) == 1 and read.left_out[0].path == "records/digits/odd.json"
    assert "unreadable" in read.left_out[0].reason


def test_records_read_back_unchanged_after_a_round_trip(tmp_path):
    """Numpy scalars and tuples in a record are written as plain JSON, so the digest
    written is the digest read (no false 'edited' on the next read)."""
    import numpy as np

    rec = record("edm")
    rec = Record(spec=rec.spec, status=rec.status, metrics=copy.deepcopy(rec.metrics),
                 details={"sizes": (np.int64(3), np.float32(0.5)), "matrix": np.eye(2)}, cost=rec.cost,
                 provenance=rec.provenance)
    path = ResultStore(tmp_path).write(rec)
    assert read_record(path).details == {"sizes": [3, 0.5], "matrix": [[1.0, 0.0], [0.0, 1.0]]}
    assert read_record(path).to_json() == json.loads(path.read_text())


def test_a_table_names_a_precision_that_is_not_its_presets():
    """fp32 and bf16 records of one preset land in two tables that do not look alike."""
    from synthbench.benchmark.presets import preset_label

    assert preset_label({"name": "fast", "precision": "fp32"}) == "fast"
    assert preset_label({"name": "fast"}) == "fast"
    assert preset_label({"name": "fast", "precision": "bf16"}) == "fast, bf16"
    assert preset_label({"name": "fast", "precision": "bf16", "compile": True}) == "fast, bf16, compiled"
    assert preset_label({"name": "fast", "compile": False}) == "fast"
    assert preset_label({"name": "paper", "precision": "bf16"}) == "paper"
    bf16 = {**SPEC, "preset": {**SPEC["preset"], "precision": "bf16"}}
    records = [record("real"), Record.from_json(seal({**body("real"), "spec": bf16, "cell_hash": cell_hash(bf16)}))]
    assert sorted(t.preset for t in build_tables(records)) == ["smoke", "smoke, bf16"]
