"""Submissions: ``submit`` packs a generator's records with a manifest;
``verify`` rejects a bundle whose files were edited, recomputes random cells and
catches records computed with something else; a verified bundle marks its rows."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from synthbench.benchmark.cell import seal
from synthbench.benchmark.sample_files import write_samples
from test_cli import run_cli


def bundle_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def repack(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def remanifest(files: dict[str, bytes]) -> None:
    """Rewrite the manifest for the files as they are now (what a careful forger does)."""
    import hashlib

    listed = {name.removeprefix("bundle/"): hashlib.sha256(data).hexdigest()
              for name, data in files.items() if name != "bundle/manifest.json"}
    files["bundle/manifest.json"] = json.dumps({"format": 1, "files": listed}).encode()


def test_submit_then_verify_clean_edited_and_transplanted_bundles(tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = run_cli(["evaluate", "-g", "edm", "-p", "replace", "--preset", "smoke", "--seeds", "1",
                            "--results", str(store), "--threads", "1", "-q"], capsys)
    assert code == 0, err
    bundle = tmp_path / "edm.tar.gz"
    code, out, err = run_cli(["submit", "--results", str(store), "-g", "edm", "--out", str(bundle)], capsys)
    assert code == 0, err
    files = bundle_files(bundle)
    meta = json.loads(files["bundle/metadata.json"])
    assert meta["generator"] == "edm" and meta["code"]["package"] == "synthbench" and meta["cells"] == 1
    assert set(json.loads(files["bundle/manifest.json"])["files"]) == {
        n.removeprefix("bundle/") for n in files if n != "bundle/manifest.json"}

    # a clean bundle verifies, and with --results its rows are marked verified
    board = tmp_path / "board"
    code, out, err = run_cli(["verify", str(bundle), "--cells", "1", "--seed", "0", "--results", str(board), "-q"],
                             capsys)
    assert code == 0, (out, err)
    assert "verified: 1 cells recomputed" in out and "same" in out
    from synthbench.leaderboard.aggregate import build_tables, read_store

    read = read_store(board)
    (table,) = build_tables(read.records, stamps=read.stamps)
    (row,) = table.rows
    assert row.verification == "verified" and "1 of its submission's 1 cells re-run" in row.verification_text

    # one metric edited after packing: the manifest no longer matches; nothing runs
    record_name = next(n for n in files if n.startswith("bundle/records/"))
    edited = dict(files)
    rec = json.loads(edited[record_name])
    rec["metrics"]["top1"]["value"] = min(1.0, rec["metrics"]["top1"]["value"] + 0.1)
    edited[record_name] = json.dumps(rec).encode()
    forged = tmp_path / "edited.tar.gz"
    repack(forged, edited)
    code, out, err = run_cli(["verify", str(forged), "--cells", "1", "--seed", "0", "-q"], capsys)
    assert code == 1 and "REJECTED" in err and "does not match its manifest digest" in err
    assert "recomputing" not in out

    # records computed with another generator (real's numbers under edm's cell), re-sealed and
    # re-manifested so every file checks out: only the re-run catches it
    real = json.loads(next(p for p in (store / "records").rglob("*.json") if "/real/" in str(p)).read_text())
    transplant = dict(files)
    rec = json.loads(files[record_name])
    rec["metrics"] = {k: dict(v, **{"value": real["metrics"][k]["value"]}) for k, v in rec["metrics"].items()}
    for entry, source in zip(rec["metrics"].values(), real["metrics"].values()):
        entry.pop("per_image", None)
        if "per_image" in source:
            entry["per_image"] = source["per_image"]
    rec.pop("record_digest", None)
    transplant[record_name] = json.dumps(seal(rec)).encode()
    remanifest(transplant)
    swapped = tmp_path / "swapped.tar.gz"
    repack(swapped, transplant)
    code, out, err = run_cli(["verify", str(swapped), "--cells", "1", "--seed", "0", "-q"], capsys)
    assert code == 1, (out, err)
    assert "MISMATCH in 1 of 1 cells" in err and "edm/replace/digits/seed 0" in err
    assert "DRIFT" in out


def test_a_samples_submission_carries_its_images_and_verifies(tmp_path, digits, capsys):
    x, y = digits.train.images.numpy(), digits.train.labels.numpy()
    keep = np.concatenate([np.flatnonzero(y == c)[:40] for c in range(10)])
    src = write_samples(tmp_path / "mine.npz", "npz", x[keep], y[keep], [str(i) for i in range(10)])
    store = tmp_path / "store"
    code, _, err = run_cli(["evaluate", "-g", f"samples:{src}", "-p", "replace", "--preset", "smoke", "--seeds",
                            "1", "--results", str(store), "--threads", "1", "-q"], capsys)
    assert code == 0, err
    bundle = tmp_path / "mine.tar.gz"
    code, _, err = run_cli(["submit", "--results", str(store), "-g", "samples", "--out", str(bundle)], capsys)
    assert code == 2 and "--samples PATH" in err  # the maintainers need the images to re-run anything
    code, _, err = run_cli(["submit", "--results", str(store), "-g", "samples", "--out", str(bundle),
                            "--samples", str(src)], capsys)
    assert code == 0, err
    assert "bundle/samples/mine.npz" in bundle_files(bundle)
    code, out, err = run_cli(["verify", str(bundle), "--cells", "1", "--seed", "1", "-q"], capsys)
    assert code == 0, (out, err)
    from synthbench.leaderboard.aggregate import build_tables, read_store

    read = read_store(store)  # scored here, never verified: shown as such
    rows = {r.generator: r for t in build_tables(read.records, stamps=read.stamps) for r in t.rows}
    assert rows["samples"].verification == "unverified" and rows["real"].verification == ""


def test_verify_leaves_no_folder_behind_when_the_bundle_will_not_open(tmp_path, monkeypatch):
    """A bundle that is not one stops ``verify`` with a clear error, and its temporary
    folder goes with it."""
    import tempfile

    from synthbench.leaderboard.submission import verify

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar file")
    from synthbench.leaderboard.submission import Rejected

    with pytest.raises(Rejected, match="not a readable"):
        verify(bad, 1, 0, None)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_recomputed_cell_that_ends_without_a_record_is_not_recomputable(tmp_path, monkeypatch):
    """verify compares the recomputed record with the submitted one: a cell whose
    record could not be written is a reason, not a traceback on ``None``."""
    from types import SimpleNamespace

    import synthbench.benchmark.runner as runner
    from synthbench.api import evaluate
    from synthbench.leaderboard.submission import recompute

    (rec,) = evaluate([], "replace", "digits", "smoke", (0,), tmp_path / "store", threads=1)
    monkeypatch.setattr(runner, "run_grid", lambda grid, store, *a, **k: [runner.CellOutcome(rec.spec, None, False)])
    with pytest.raises(ValueError, match="ended without a record"):
        recompute(rec, SimpleNamespace(samples=None), tmp_path / "work", None, "cpu")


@pytest.mark.parametrize("metadata", [["real"], {"generator": ["real"]}, {"generator": "real", "samples_digest": [1]}])
def test_a_bundle_whose_metadata_is_not_a_mapping_of_text_is_rejected_not_a_traceback(metadata, tmp_path, capsys):
    from synthbench.leaderboard.submission import Rejected, open_bundle

    store, bundle = tmp_path / "store", tmp_path / "real.tar.gz"
    assert run_cli(["evaluate", "-g", "real", "-p", "replace", "--preset", "smoke", "--seeds", "1", "--threads", "1",
                    "--results", str(store), "-q"], capsys)[0] == 0
    assert run_cli(["submit", "--results", str(store), "-g", "real", "--out", str(bundle)], capsys)[0] == 0
    files = bundle_files(bundle)
    files["bundle/metadata.json"] = json.dumps(metadata).encode()
    remanifest(files)
    repack(bundle, files)
    with pytest.raises(Rejected, match="metadata.json is not a mapping that names the generator"):
        open_bundle(bundle, tmp_path / "open")


def test_submit_packs_only_the_records_of_the_samples_it_packs_and_verify_stamps_no_other(tmp_path, digits,
                                                                                          capsys):
    """A store holding records of several samples sources: ``submit --samples A``
    packed every source's records with A's images only, and ``verify --results``
    then stamped the other sources' records verified, though nobody could re-run
    them (a source of test-image copies among them). Found by a reviewer scoring
    three exported folders into one store."""
    x, y = digits.train.images.numpy(), digits.train.labels.numpy()
    store = tmp_path / "store"
    sources = {}
    for i, name in enumerate(["a", "b", "c"]):
        keep = np.concatenate([np.flatnonzero(y == c)[40 * i:40 * (i + 1)] for c in range(10)])
        sources[name] = write_samples(tmp_path / f"{name}.npz", "npz", x[keep], y[keep], [str(c) for c in range(10)])
    for name in "ab":
        code, _, err = run_cli(["evaluate", "-g", f"samples:{sources[name]}", "-p", "replace", "--preset", "smoke",
                                "--seeds", "1", "--results", str(store), "--threads", "1", "-q"], capsys)
        assert code == 0, err

    # the other source's record is left out, and submit says so
    bundle = tmp_path / "a.tar.gz"
    code, out, err = run_cli(["submit", "--results", str(store), "-g", "samples", "--out", str(bundle),
                              "--samples", str(sources["a"])], capsys)
    assert code == 0, err
    assert "1 records of samples" in out and "left out 1 records" in err and "b: 1" in err
    files = bundle_files(bundle)
    records = [json.loads(v) for k, v in files.items() if k.startswith("bundle/records/")]
    meta = json.loads(files["bundle/metadata.json"])
    assert len(records) == 1 and meta["cells"] == 1
    assert records[0]["spec"]["generator_extra"]["samples_digest"] == meta["samples_digest"]
    assert records[0]["spec"]["generator_options"]["label"] == "a"

    # samples that no record scored: refused, naming the sources the records scored
    code, _, err = run_cli(["submit", "--results", str(store), "-g", "samples", "--out", str(tmp_path / "c.tar.gz"),
                            "--samples", str(sources["c"])], capsys)
    assert code == 2 and "is not what any record of samples scored" in err and "a: 1 record" in err
    assert not (tmp_path / "c.tar.gz").exists()

    # a bundle holding b's record beside a's images (as the old submit wrote it) is rejected, and nothing stamped
    (b_path,) = [p for p in (store / "records").rglob("samples/*.json")
                 if json.loads(p.read_text())["spec"]["generator_options"]["label"] == "b"]
    files[f"bundle/{b_path.relative_to(store).as_posix()}"] = b_path.read_bytes()
    remanifest(files)
    mixed = tmp_path / "mixed.tar.gz"
    repack(mixed, files)
    board = tmp_path / "board"
    for seed in range(3):  # whichever cell the seed chooses
        code, out, err = run_cli(["verify", str(mixed), "--cells", "1", "--seed", str(seed), "--results", str(board),
                                  "-q"], capsys)
        assert code == 1 and "REJECTED" in err and "1 of its 2 records scored other samples" in err, (out, err)
    assert not board.exists()


def test_submit_packs_a_record_from_the_file_it_was_read_from(tmp_path, capsys):
    """A record file renamed by hand (``seed0-... (copy).json``, the original
    gone) is a valid record, but submit read it again from its cell's own path
    and stopped (exit 2) telling the user to free disk space or fix
    permissions. It now packs the file it read, under the cell's own path."""
    from synthbench.benchmark.store import ResultStore

    store = tmp_path / "store"
    code, _, err = run_cli(["evaluate", "-g", "stylegan3", "-p", "replace", "--preset", "smoke", "--seeds", "1",
                            "--results", str(store), "--threads", "1", "-q"], capsys)
    assert code == 0, err
    (own,) = [p for p in ResultStore(store).paths() if p.parts[-2] == "stylegan3"]
    data = own.read_bytes()
    own.rename(own.with_name(own.stem + " (copy).json"))
    bundle = tmp_path / "sg3.tar.gz"
    code, out, err = run_cli(["submit", "--results", str(store), "-g", "stylegan3", "--out", str(bundle)], capsys)
    assert code == 0, err
    assert bundle_files(bundle)[f"bundle/{own.relative_to(store).as_posix()}"] == data
