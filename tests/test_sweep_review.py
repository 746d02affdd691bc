"""Findings of the sweep review: every built-in generator against every
protocol, at defaults and at the options each protocol documents (smoke,
digits), looking for cells whose record says something that did not happen."""

from __future__ import annotations

from synthbench.benchmark.sample_files import write_samples
from test_cli import run_cli
from test_samples import CLASSES, digits_images, records_of


def test_longtail_fit_on_longtail_says_when_it_did_not_apply(tmp_path, digits, capsys):
    """``samples:`` x longtail with ``fit_on=longtail`` ran and its record said
    ``fit_on: longtail`` with no note, while nothing was fitted on the long tail:
    the top-up came from the same fixed images, and every metric equalled the
    ``fit_on=full`` cell's (balanced_top1 0.7298 both, smoke digits). The
    record now says the option did not apply."""
    x, y = digits_images(digits, 45)
    src = write_samples(tmp_path / "src.npz", "npz", x, y, CLASSES)
    code, _, err = run_cli(["evaluate", "-g", f"samples:{src}", "-p", "longtail", "--preset", "smoke",
                            "--seed", "0", "--threads", "1", "--results", str(tmp_path / "runs"),
                            "-o", "fit_on=longtail", "-q"], capsys)
    assert code == 0, err
    rec = records_of(tmp_path / "runs", "samples")[("src", "longtail", 0)]
    assert rec["status"] == "ok"
    assert rec["details"]["fit_on"] == "longtail"
    assert "fit_on=longtail did not apply" in rec["details"]["note"]


def test_an_ood_folder_whose_images_changed_is_a_new_cell(tmp_path, digits, capsys):
    """ood keyed a cell by ``ood_folder``'s path alone: after the folder's
    images were replaced, the same command was a cache hit with the old
    accuracies (replace_folder0_top1 0.1000 stored, 0.1266 on the new files,
    one cell key). The key now holds each folder's digest (the spec's
    ``protocol_extra``); a cell without a folder keys as before."""
    import json

    import numpy as np

    from synthbench.benchmark.store import ResultStore

    x, y = digits_images(digits, 4)
    folder = write_samples(tmp_path / "shifted", "folder", x, y, CLASSES)
    args = ["evaluate", "-g", "real", "-p", "ood", "--preset", "smoke", "--seed", "0", "--threads", "1",
            "--results", str(tmp_path / "runs"), "-o", f"ood_folder={folder}", "-q"]

    def ood_records() -> dict:
        return {p: json.loads(p.read_text()) for p in ResultStore(tmp_path / "runs").paths() if p.parts[-3] == "ood"}

    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    (first,) = ood_records().values()
    assert first["spec"]["protocol_extra"]["ood_folder_digests"][0]
    code, _, err = run_cli(args, capsys)  # the same files: the same cell, cached
    assert code == 0 and len(ood_records()) == 1, err
    for f in sorted(folder.rglob("*.png"))[:8]:  # other images under the same names
        f.write_bytes((folder / "9" / sorted(p.name for p in (folder / "9").iterdir())[0]).read_bytes())
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    records = ood_records()
    assert len(records) == 2  # a new cell beside the old one
    digests = {r["spec"]["protocol_extra"]["ood_folder_digests"][0] for r in records.values()}
    assert len(digests) == 2
    plain = ["evaluate", "-g", "real", "-p", "ood", "--preset", "smoke", "--seed", "0", "--threads", "1",
             "--results", str(tmp_path / "plain"), "-q"]
    code, _, err = run_cli(plain, capsys)
    assert code == 0, err
    (rec,) = [json.loads(p.read_text()) for p in ResultStore(tmp_path / "plain").paths() if p.parts[-3] == "ood"]
    assert "protocol_extra" not in rec["spec"] and np.isfinite(rec["metrics"]["replace_clean_top1"]["value"])
    from synthbench.benchmark.cell import Record
    from synthbench.leaderboard.aggregate import build_tables

    tables = build_tables([Record.from_json(r) for r in records.values()])
    assert len([t for t in tables if t.protocol == "ood"]) == 2  # two folders' contents: two tables, not one
