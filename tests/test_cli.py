"""The command line as a user meets it: tables, records, cache hits, and one-
paragraph errors with exit status 2 (never a traceback)."""

from __future__ import annotations

import json

import pytest

from synthbench.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out, out.err


def test_evaluate_smoke_prints_real_beside_edm_and_caches(tmp_path, capsys):
    args = ["evaluate", "--preset", "smoke", "--seeds", "1", "--results", str(tmp_path), "-q"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "| real" in out and "| edm" in out and "top1" in out
    records = list((tmp_path / "records").rglob("*.json"))
    assert len(records) == 2
    rec = json.loads(records[0].read_text())
    assert rec["schema_version"] == 1 and rec["status"] == "ok"
    code, out2, _ = run_cli(args, capsys)
    assert code == 0
    cached_col = [line for line in out2.splitlines() if line.startswith("| edm")][0].split("|")[-2]
    assert cached_col.strip() == "1"


def test_dry_run_lists_cells_without_computing(tmp_path, capsys):
    code, out, _ = run_cli(["evaluate", "--preset", "smoke", "--seeds", "2", "--results", str(tmp_path),
                            "--dry-run"], capsys)
    assert code == 0 and out.count("to compute") == 4
    assert not (tmp_path / "records").exists()


@pytest.mark.parametrize("args, words", [
    (["evaluate", "--generator", "edn"], "Did you mean 'edm'"),
    (["evaluate", "--protocol", "replase"], "Did you mean 'replace'"),
    (["evaluate", "--dataset", "digitz"], "Did you mean 'digits'"),
    (["evaluate", "--protocol", "augment", "--option", "ratio=lots"], "not a valid float"),
    (["evaluate", "--option", "nonsense=1"], "No plugin in this run has an option"),
    (["evaluate", "--dataset", "mnist", "--data-root", "/no/such/folder"], "not a folder"),
    (["evaluate", "--config", "/no/such.yaml"], "no such file"),
    (["evaluate", "--option", "edm.sampler_steps=99999999999999999999999"], "is too large"),  # passed, then failed
])
def test_bad_input_is_one_paragraph_and_exit_2(args, words, tmp_path, capsys):
    code, out, err = run_cli(args + ["--results", str(tmp_path), "--preset", "smoke"], capsys)
    assert code == 2
    assert words in err and "Traceback" not in err


def test_corrupt_cached_pool_is_a_clear_error_and_keeps_records(tmp_path, capsys):
    args = ["evaluate", "--preset", "smoke", "--seeds", "1", "--results", str(tmp_path), "-q"]
    assert run_cli(args, capsys)[0] == 0
    for pool in (tmp_path / "cache" / "samples").glob("*.npz"):
        pool.write_bytes(b"garbage")
    records_before = sorted(p.read_text() for p in (tmp_path / "records").rglob("*.json"))
    code, _, err = run_cli(["evaluate", "--preset", "smoke", "--seeds", "1", "--protocol", "augment",
                            "--results", str(tmp_path), "-q"], capsys)
    assert code == 2 and "Delete that file" in err and "Traceback" not in err
    records_after = sorted(p.read_text() for p in (tmp_path / "records").rglob("*.json"))
    assert set(records_before) <= set(records_after)


def test_config_file_and_flag_precedence(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("generator: real\npreset: smoke\nseeds: 1\noptions:\n  ratio: 0.5\nprotocol: augment\n")
    code, out, err = run_cli(["evaluate", "--config", str(cfg), "--results", str(tmp_path), "--dry-run"], capsys)
    assert code == 0, err
    assert "augment on digits" in out and "preset smoke" in out and out.count("seed 0") == 1
    code, out, _ = run_cli(["evaluate", "--config", str(cfg), "--seeds", "2", "--results", str(tmp_path),
                            "--dry-run"], capsys)
    assert out.count("to compute") == 2  # the flag beats the file


def test_list_shows_options_and_needs(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    for word in ("digits", "fashion-mnist", "edm", "real", "replace", "augment", "ratio=", "needs:"):
        assert word in out


def test_help_is_documentation(capsys):
    code, out, _ = run_cli(["evaluate", "--help"], capsys)
    assert code == 0 and "--generator" in out and "default" in out


def test_bad_config_values_and_unwritable_results(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("seeds: many\n")
    code, _, err = run_cli(["evaluate", "--config", str(cfg), "--dry-run"], capsys)
    assert code == 2 and "--seeds 'many'" in err
    cfg.write_text("compile: 1\n")
    code, _, err = run_cli(["evaluate", "--config", str(cfg), "--dry-run"], capsys)
    assert code == 2 and "compile=1: give true or false" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(["evaluate", "--preset", "smoke", "--results", str(blocker / "sub"), "--seeds", "1"], capsys)
    assert code == 2 and "Cannot write results" in err


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfeseeds: 2\n", "is not UTF-8 text"),
    (b"seed: -1\n", "seed=-1: give a non-negative whole number below 2**63"),
    (b"seed: 99999999999999999999999\n", "below 2**63"),
    (b"seeds: [0, 99999999999999999999999]\n", "every seed must be below 2**63"),
    (b"threads: 99999\n", "threads=99999: give a whole number from 1 to 1024"),
    (b"data_root: 5\n", "data_root=5 in the config is not a folder path"),
    (None, "is a folder; give the YAML file in it"),
])
def test_config_files_a_careless_hand_writes_are_one_paragraph_errors(content, words, tmp_path, capsys):
    """Each of these was a traceback, or a run that failed every cell (and left
    a record that stopped submit), or a crash in the BLAS thread pool."""
    cfg = tmp_path / "cfg.yaml"
    if content is None:
        cfg.mkdir()
    else:
        cfg.write_bytes(content)
    code, _, err = run_cli(["evaluate", "-g", "real", "--preset", "smoke", "--config", str(cfg), "--dry-run",
                            "--results", str(tmp_path / "r")], capsys)
    assert code == 2 and words in err and "Traceback" not in err, err


def test_validate_refuses_a_nan_adherence_floor(tmp_path, capsys):
    code, _, err = run_cli(["validate", "real", "--preset", "smoke", "--min-adherence", "nan",
                            "--results", str(tmp_path)], capsys)
    assert code == 2 and "--min-adherence nan" in err


def test_summary_table_with_a_metric_only_some_seeds_report():
    """scaleup's multiple_reaching_real exists only for seeds that reached real:
    the table says so instead of crashing after the records are written."""
    from synthbench.benchmark.cell import CellOutcome, CellSpec, Record, Status
    from synthbench.cli import summary_table

    def cell(seed, metrics):
        spec = CellSpec(schema_version=1, synthbench_version="0.1.0", dataset="digits", dataset_digest="d" * 64,
                        generator="g", generator_version=1, generator_options={}, generator_extra={},
                        protocol="scaleup", protocol_version=1, protocol_options={}, preset={"name": "smoke"},
                        seed=seed, device_type="cpu")
        record = Record(spec=spec, status=Status.OK, metrics=metrics, cost={"wall_s": {"cell_s": 1.0}})
        return CellOutcome(spec=spec, record=record, cached=False)

    m = {"value": 5, "stderr": None, "n": 1, "higher_is_better": False}
    table = summary_table([cell(0, {"reach": m}), cell(1, {})], ["reach"])
    assert "(1 of 2 seeds)" in table and "5.0000" in table
    none = summary_table([cell(0, {}), cell(1, {})], ["reach"])  # no seed reached it: no "nan"
    assert "n/a (0 of 2 seeds)" in none and "nan" not in none
    # one seed and no stderr: the bare value keeps its four decimals (tabulate re-read it as the number 0)
    zero = {"value": 0.0, "stderr": None, "n": 1, "higher_is_better": True}
    lone = summary_table([cell(0, {"worst": zero})], ["worst"])
    assert "| 0.0000 " in lone, lone


def test_threads_pins_torch_and_keys_the_classifier_cache(tmp_path, capsys):
    """On a CPU, weights trained at 1 and at 2 threads differ: ``--threads``
    pins the count, the record's device line says it, and the classifier cache
    keeps one file per thread count instead of mixing them."""
    import torch

    before = torch.get_num_threads()
    try:
        args = ["evaluate", "-g", "real", "--preset", "smoke", "--seeds", "1", "--results", str(tmp_path), "-q"]
        code, out, err = run_cli(args + ["--threads", "1"], capsys)
        assert code == 0, err
        assert "1 threads" in out
        (rec,) = (tmp_path / "records").rglob("*.json")
        assert json.loads(rec.read_text())["cost"]["device"].endswith("1 threads)")
        first = set((tmp_path / "cache" / "classifiers").iterdir())
        assert first

        rec.unlink()  # recompute the record, now at 2 threads
        code, _, err = run_cli(args + ["--threads", "2"], capsys)
        assert code == 0, err
        assert len(set((tmp_path / "cache" / "classifiers").iterdir()) - first) == len(first)

        code, _, err = run_cli(args + ["--threads", "0"], capsys)
        assert code == 2 and "--threads" in err
    finally:
        torch.set_num_threads(before)


def test_precision_is_part_of_the_cell(tmp_path, capsys):
    """--precision bf16 trains the classifiers in bf16: a different cell from the
    preset's fp32 one, recorded in the spec's preset."""
    args = ["evaluate", "-g", "real", "--preset", "smoke", "--seeds", "1", "--results", str(tmp_path), "-q"]
    assert run_cli(args, capsys)[0] == 0
    code, out, _ = run_cli(args + ["--precision", "bf16", "--dry-run"], capsys)
    assert code == 0 and "to compute" in out
    assert run_cli(args + ["--precision", "bf16"], capsys)[0] == 0
    presets = sorted(json.loads(p.read_text())["spec"]["preset"]["precision"]
                     for p in (tmp_path / "records").rglob("*.json"))
    assert presets == ["bf16", "fp32"]


def test_compile_is_part_of_the_cell_and_leaves_other_keys_alone(tmp_path, capsys):
    """--compile trains the classifiers under torch.compile: a different cell,
    whose spec says so and whose board label says "compiled"; a run without it
    keeps the spec (and so the key) it had before the flag existed."""
    from synthbench.benchmark.presets import preset_label

    args = ["evaluate", "-g", "real", "--preset", "smoke", "--seeds", "1", "--results", str(tmp_path), "-q"]
    assert run_cli(args, capsys)[0] == 0
    code, out, _ = run_cli(args + ["--compile", "--dry-run"], capsys)
    assert code == 0 and "to compute" in out
    assert run_cli(args + ["--compile"], capsys)[0] == 0
    presets = sorted((json.loads(p.read_text())["spec"]["preset"] for p in (tmp_path / "records").rglob("*.json")),
                     key=len)
    assert "compile" not in presets[0] and presets[1] == {**presets[0], "compile": True}
    assert [preset_label(p) for p in presets] == ["smoke", "smoke, compiled"]
    code, out, _ = run_cli(args + ["--no-compile", "--dry-run"], capsys)  # the eager cell, cached
    assert code == 0 and "cached" in out and "to compute" not in out


@pytest.mark.parametrize("amx, same_as", [(False, "fp32"), (True, "bf16")])
def test_precision_auto_is_the_cell_it_resolves_to(tmp_path, capsys, monkeypatch, amx, same_as):
    """``--precision auto`` is fp32 or bf16 decided for this machine before any
    cell is keyed: its dry run finds the record of the precision it chose."""
    import torch

    args = ["evaluate", "-g", "real", "--preset", "smoke", "--seeds", "1", "--results", str(tmp_path), "-q",
            "--device", "cpu"]
    assert run_cli(args + ["--precision", same_as], capsys)[0] == 0
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    code, out, _ = run_cli(args + ["--precision", "auto", "--dry-run"], capsys)
    assert code == 0 and "cached" in out and "to compute" not in out


def test_list_shows_every_plugin_when_one_is_broken(monkeypatch, capsys):
    """A plugin that cannot be imported is listed as such and explained at the
    end (exit 2); before, its error stopped `synthbench list` at its name and
    hid every plugin after it."""
    from synthbench.plugins import GENERATORS

    GENERATORS.names()  # entry points scanned before the fake one goes in
    monkeypatch.setitem(GENERATORS._targets, "aaa-broken", "no_such_module_for_synthbench_tests:Thing")
    monkeypatch.setitem(GENERATORS._origin, "aaa-broken", "entry point test")
    code, out, err = run_cli(["list", "generators"], capsys)
    assert code == 2
    assert "aaa-broken (entry point test): cannot be used, see below" in out
    assert "  edm (v" in out and "  real (v" in out  # listed after the broken one, alphabetically
    assert "The generator plugin 'aaa-broken'" in err and "failed to import" in err
    assert "Traceback" not in err
