"""`synthbench export` and `synthbench.api.load_results`: the numbers that leave
the store are the records' numbers, row for row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from synthbench.benchmark.store import ResultStore, read_record
from test_cli import run_cli

PUBLISHED = Path(__file__).resolve().parents[1] / "results"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A few committed records (every status the store holds, two protocols) copied to a fresh store."""
    root = tmp_path / "store"
    picked = [p for p in ResultStore(PUBLISHED).paths() if p.parts[-4] == "digits" and p.parts[-3] in ("replace", "mia")]
    assert picked, "the published store has no digits records"
    for path in picked:
        target = root / path.relative_to(PUBLISHED)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return root


def expected_rows(root: Path) -> dict[tuple, float | None]:
    out = {}
    for path in ResultStore(root).paths():
        rec = read_record(path)
        for name, m in rec.metrics.items():
            out[(rec.cell_hash, name)] = m["value"]
    return out


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_reads_back_with_the_records_numbers(store, tmp_path, capsys, fmt):
    import pandas as pd  # in the test extra
    out = tmp_path / f"x.{fmt}"
    code, text, err = run_cli(["export", "--results", str(store), "--format", fmt, "--out", str(out)], capsys)
    assert code == 0, err
    df = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True), "parquet": pd.read_parquet}[fmt](out)
    want = expected_rows(store)
    rows = df[df["metric"].notna()]
    assert len(rows) == len(want)
    for row in rows.itertuples():
        assert row.value == pytest.approx(want[(row.cell_hash, row.metric)], rel=0, abs=1e-15)
    one = rows.iloc[0]
    assert one["dataset"] == "digits" and one["preset"] in ("fast", "smoke", "paper") and one["threads"] >= 1
    assert isinstance(json.loads(one["generator_options"]), dict)
    assert not rows["compile"].astype(bool).any()  # the store's classifiers were trained eagerly
    assert f"{len(df)} rows" in text


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_the_format_follows_the_out_suffix_unless_told(store, tmp_path, capsys, fmt):
    """`export --out x.parquet` wrote CSV text into x.parquet (--format defaulted
    to csv whatever --out said), which pandas then refused as 'not a parquet
    file'; a suffix contradicting --format is refused (exit 2), writing nothing."""
    import pandas as pd  # in the test extra
    out = tmp_path / f"x.{fmt}"
    code, _, err = run_cli(["export", "--results", str(store), "--out", str(out)], capsys)
    assert code == 0, err
    df = {"jsonl": lambda p: pd.read_json(p, lines=True), "parquet": pd.read_parquet}[fmt](out)
    assert len(df[df["metric"].notna()]) == len(expected_rows(store))
    clash = tmp_path / "y.parquet"
    code, _, err = run_cli(["export", "--results", str(store), "--format", "csv", "--out", str(clash)], capsys)
    assert code == 2 and "drop --format" in err and not clash.exists()
    code, _, err = run_cli(["export", "--results", str(store), "--out", str(tmp_path / "z.txt")], capsys)
    assert code == 0 and (tmp_path / "z.txt").read_text().startswith("dataset,")


def test_a_copied_record_file_is_counted_once(store, tmp_path, capsys):
    """A record copied by hand beside itself (``seed0-... (copy).json``) was
    exported twice, and the site's downloads held it twice, while the tables
    took one record per seed; the copy is now left out, named, everywhere."""
    import pandas as pd  # in the test extra
    original = ResultStore(store).paths()[0]
    copy = original.with_name(original.stem + " (copy).json")
    shutil.copy(original, copy)
    out = tmp_path / "x.csv"
    code, text, err = run_cli(["export", "--results", str(store), "--out", str(out)], capsys)
    assert code == 0, err
    rows = pd.read_csv(out)
    assert len(rows[rows["metric"].notna()]) == len(expected_rows(store))
    assert not rows.duplicated(["cell_hash", "metric"]).any()
    assert f"left out {copy}: the same cell as {original.relative_to(store)}" in err


def test_load_results_is_a_dataframe_of_the_same_rows(store):
    from synthbench.api import load_results

    df = load_results(store)
    top1 = df[(df.protocol == "replace") & (df.metric == "top1")]
    want = {k: v for k, v in expected_rows(store).items() if k[1] == "top1"}
    assert len(top1) == sum(1 for p in ResultStore(store).paths() if p.parts[-3] == "replace")
    assert sorted(top1.value) == sorted(v for (h, name), v in want.items()
                                        if any(h == read_record(p).cell_hash for p in ResultStore(store).paths()
                                               if p.parts[-3] == "replace"))


def test_an_edited_record_is_left_out_of_the_export_or_stops_it(store, tmp_path, capsys):
    path = ResultStore(store).paths()[0]
    data = json.loads(path.read_text())
    data["metrics"][next(iter(data["metrics"]))]["value"] = 0.999
    path.write_text(json.dumps(data))
    code, _, err = run_cli(["export", "--results", str(store), "--out", str(tmp_path / "x.csv")], capsys)
    assert code == 0 and "left out" in err and "edited" in err
    code, _, err = run_cli(["export", "--results", str(store), "--out", str(tmp_path / "y.csv"), "--strict"], capsys)
    assert code == 2 and "not a valid synthbench record" in err
