"""A store that cannot take what a run writes: every cell that ends without a
record is counted failed and named with why (exit status 1); a full, read-only,
forbidden or failing disk, and a file where the store needs a folder, stop the
run with one paragraph naming the path (exit status 2); no finished record is
lost either way."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from synthbench.benchmark.cell import CellSpec, Record, cell_hash, current_spec, seal
from synthbench.benchmark.store import ResultStore, read_record
from test_cli import run_cli
from test_record_integrity import SPEC, body

REAL = ["evaluate", "-g", "real", "-p", "replace", "--preset", "smoke", "--threads", "1", "-q"]


def real_run(tmp_path: Path, seeds: int, capsys) -> tuple[int, str, str]:
    return run_cli(REAL + ["--seeds", str(seeds), "--results", str(tmp_path)], capsys)


def record_texts(root: Path) -> dict[Path, str]:
    return {path: path.read_text() for path in ResultStore(root).paths() if path.is_file()}


# --------------------------------------------------------------------------- finding 1: cells without a record


def test_a_cell_whose_record_cannot_be_written_fails_the_run(tmp_path, capsys):
    code, _, err = real_run(tmp_path, 2, capsys)
    assert code == 0, err
    kept = record_texts(tmp_path)
    seed0 = next(path for path in kept if path.name.startswith("seed0-"))
    seed0.unlink()
    seed0.mkdir()  # the record's path is a folder: its write fails, and no record says so

    code, out, err = real_run(tmp_path, 2, capsys)
    assert code == 1, err
    assert "0/2" not in out and "1/2 (1 failed)" in out  # the table counts it failed
    assert f"no record: real x replace x digits, seed 0 ({seed0}): IsADirectoryError" in err
    assert "Some cells failed (1 of 2): 1 ended without a record (why: above)." in err
    assert "Traceback" not in err
    del kept[seed0]
    assert record_texts(tmp_path) == kept  # seed 1's record: untouched


def test_the_python_api_raises_rather_than_return_a_grid_short_of_a_cell(tmp_path):
    from synthbench.api import evaluate
    from synthbench.errors import UserError

    args = dict(generators=[], protocols="replace", dataset="digits", preset="smoke", seeds=(0, 1),
                results=tmp_path, threads=1)
    assert len(evaluate(**args)) == 2
    seed0 = next(path for path in record_texts(tmp_path) if path.name.startswith("seed0-"))
    seed0.unlink()
    seed0.mkdir()
    with pytest.raises(UserError, match=r"1 of 2 cells ended without a record: real x replace x digits, seed 0 "
                                        r".*IsADirectoryError.*Every record that was written is kept"):
        evaluate(**args)


@pytest.mark.parametrize("code_name, advice", [
    ("EACCES", "Fix the permissions of that path"),
    ("EPERM", "Fix the permissions or ownership of that path"),
    ("EIO", "input/output error"),
])
def test_a_forbidden_or_failing_store_stops_with_exit_2(code_name, advice, tmp_path, capsys, monkeypatch):
    number = getattr(errno, code_name)
    written = []
    original = ResultStore.write

    def write_once(self, record):  # the first record lands, then the store refuses
        if written:
            raise OSError(number, os.strerror(number), str(self.path_for(record.spec)))
        written.append(original(self, record))
        return written[-1]

    monkeypatch.setattr(ResultStore, "write", write_once)
    code, _, err = real_run(tmp_path, 2, capsys)
    assert code == 2 and "Traceback" not in err, err
    folder = tmp_path / "records" / "digits" / "replace" / "real"
    assert f"error: A file operation failed on the result store's file {folder}/seed1-" in err
    assert os.strerror(number) in err
    assert advice in err and "every record already written is kept" in err
    assert [p for p in ResultStore(tmp_path).paths()] == written  # the finished record is kept


def test_a_file_where_the_task_markers_go_is_a_storage_error_not_a_failed_fit(tmp_path, capsys):
    code, _, err = real_run(tmp_path, 1, capsys)
    assert code == 0, err
    kept = record_texts(tmp_path)
    tasks = tmp_path / "cache" / "tasks"
    shutil.rmtree(tasks)
    tasks.write_text("not a folder\n")  # the fit's weights stay cached and valid

    code, out, err = real_run(tmp_path, 2, capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "fit failed" not in out + err and "FileExistsError" not in err
    assert f"{tasks} is a file, where the store needs a folder. Move that file away" in err
    assert f"Cannot write the task marker (the store's note that shared work is done) {tasks}/" in err
    assert record_texts(tmp_path) == kept  # no record written over, none lost, no failed record added


def test_a_suite_run_counts_a_cell_without_a_record_failed(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndataset: digits\npreset: smoke\nseeds: [0, 1]\ndevice: cpu\nthreads: 1\n"
                     "generators: {real: {}}\nprotocols: {replace: {}}\n")
    store = tmp_path / "store"
    code, _, err = run_cli(["run", str(suite), "--results", str(store), "-q"], capsys)
    assert code == 0, err
    kept = record_texts(store)
    seed1 = next(path for path in kept if path.name.startswith("seed1-"))
    seed1.unlink()
    seed1.mkdir()

    code, out, err = run_cli(["run", str(suite), "--results", str(store), "-q"], capsys)
    assert code == 1 and "1/2 (1 failed)" in out, err
    assert f"no record: real x replace x digits, seed 1 ({seed1}): IsADirectoryError" in err
    assert "Some cells failed (1 of 2): 1 ended without a record (why: above)." in err
    del kept[seed1]
    assert record_texts(store) == kept


# --------------------------------------------------------------------------- finding 3: integrity warnings


def test_an_edited_record_is_named_once_on_stderr_even_with_q(tmp_path, capsys):
    code, _, err = real_run(tmp_path, 1, capsys)
    assert code == 0, err
    (path,) = ResultStore(tmp_path).paths()
    data = json.loads(path.read_text())
    data["cost"]["wall_s"]["cell_s"] += 1.0  # still valid JSON, no longer what was written
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    code, out, err = real_run(tmp_path, 1, capsys)  # -q: no progress, but this is not progress
    assert code == 0, err
    assert err.count(str(path)) == 1, err  # looked up while planning, before computing and after: said once
    assert (f"warning: record {path} is not a valid record (its body was edited after it was written" in err
            and "it counts as not computed: a run computes the cell again and overwrites it." in err)
    row = next(line for line in out.splitlines() if line.startswith("| real"))
    assert row.split("|")[-2].strip() == "0"  # recomputed, not a cache hit
    assert read_record(path).cost["wall_s"]["cell_s"] != data["cost"]["wall_s"]["cell_s"]


# --------------------------------------------------------------------------- finding 2: migrate keeps the better record


SEEDS = [0, 2]
"""Seed 0's record sorts after the path of its current key, seed 2's before:
the migration meets the file at the new key before the old record, or after."""


def _old_and_today(store: ResultStore, status: str = "ok", seed: int = 0) -> tuple[Path, CellSpec, dict]:
    """A record (``status``) keyed with ``eval_batch``, an option that has since
    left edm's key, written where a store of that time kept it; the spec a run
    keys that cell by today; the record's JSON."""
    keyed = {**SPEC, "seed": seed, "generator_options": {"eval_batch": 64, "churn": 0.0}}
    data = {**body("edm"), "spec": keyed, "cell_hash": cell_hash(keyed)}
    if status != "ok":
        data.update(status=status, metrics={}, error="RuntimeError: boom")
    old = store.write(Record.from_json(seal(data)))
    today = current_spec(CellSpec.from_json(keyed))
    assert today != CellSpec.from_json(keyed) and store.path_for(today) != old
    return old, today, data


def _record_at(store: ResultStore, spec: CellSpec, status: str) -> Path:
    data = {**body("edm", 0.1), "spec": spec.to_json(), "cell_hash": spec.key}
    if status != "ok":
        data.update(status=status, metrics={}, error="RuntimeError: earlier failure")
    return store.write(Record.from_json(seal(data)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("there", ["failed", "unsupported", "garbage", "truncated"])
def test_migrate_writes_an_ok_record_over_a_lesser_file_at_its_new_key(there, seed, tmp_path, capsys):
    store = ResultStore(tmp_path)
    old, today, data = _old_and_today(store, seed=seed)
    target = store.path_for(today)
    if there in ("failed", "unsupported"):
        _record_at(store, today, there)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("{not json" if there == "garbage" else _record_at(store, today, "ok").read_text()[:40])
    before = target.read_bytes()

    code, out, err = run_cli(["records", "migrate", "--results", str(tmp_path), "--dry-run"], capsys)
    assert f"{target} would be replaced by the re-keyed {old}: it held " in out, out + err
    assert old.exists() and target.read_bytes() == before  # a dry run writes nothing

    code, out, err = run_cli(["records", "migrate", "--results", str(tmp_path)], capsys)
    assert code == 0 and "re-keyed 1, 0 already current, 0 refused" in out, out + err
    assert f"{target} replaced by the re-keyed {old}: it held " in out
    assert (f"a{'n' * (there == 'unsupported')} {there} record, where the moved one is ok"
            if there in ("failed", "unsupported")
            else "not a valid record") in out
    assert not old.exists() and store.paths() == [target]
    moved = store.lookup(today)  # the ok result, at the key a run computes today, valid
    assert moved is not None and moved.status.value == "ok" and moved.metrics == data["metrics"]


@pytest.mark.parametrize("old_status, there", [("ok", "ok"), ("failed", "ok"), ("failed", "failed"),
                                               ("unsupported", "unsupported"), ("failed", "unsupported")])
@pytest.mark.parametrize("seed", SEEDS)
def test_migrate_keeps_a_record_at_its_new_key_that_is_at_least_as_final(old_status, there, seed, tmp_path, capsys):
    store = ResultStore(tmp_path)
    old, today, _ = _old_and_today(store, old_status, seed)
    target = _record_at(store, today, there)
    before = target.read_bytes()

    code, out, err = run_cli(["records", "migrate", "--results", str(tmp_path)], capsys)
    assert code == 0 and "re-keyed 1, 1 already current, 0 refused" in out, out + err
    assert (f"{old} removed: its cell is already at its current key, {target}, as a valid {there} record, which "
            f"is kept") in out
    assert not old.exists() and target.read_bytes() == before


def test_migrate_leaves_a_record_whose_new_key_cannot_be_written(tmp_path, capsys):
    store = ResultStore(tmp_path)
    old, today, _ = _old_and_today(store)
    before = old.read_bytes()
    store.path_for(today).mkdir(parents=True)  # a folder at the new key's path

    code, out, err = run_cli(["records", "migrate", "--results", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"refused {old}: its current key's path {store.path_for(today)} cannot be written" in err
    assert "error: 2 record file(s)" in err  # the folder itself is listed too: it is no record
    assert old.read_bytes() == before


def test_reusing_records_computed_at_another_thread_count_is_said(tmp_path, capsys):
    """A record's key does not hold the CPU thread count (its caches do), so a run
    at another count reuses it: the run says so, and how to keep one count."""
    code, _, err = run_cli(REAL[:-3] + ["--threads", "1", "--seeds", "1", "--results", str(tmp_path), "-q"], capsys)
    assert code == 0 and "thread count" not in err, err
    code, _, err = run_cli(REAL[:-3] + ["--threads", "2", "--seeds", "2", "--results", str(tmp_path), "-q"], capsys)
    assert code == 0, err
    assert "note: 1 cached record of this run was computed at another CPU thread count (1 at 1 thread); this run " \
           "computes at 2" in err and "--threads 1" in err
