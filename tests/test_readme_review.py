"""What a first-time reader of the README meets when following it: each test
here is a place where the program did not do what the README (or its own
output) led the reader to expect."""

from __future__ import annotations

import json
import shlex

import numpy as np

from test_cli import run_cli


def _npz(path, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), 50)
    np.savez(path, images=rng.integers(0, 256, (len(labels), 1, 8, 8), dtype=np.uint8), labels=labels)
    return path


def test_dry_run_names_each_row_as_the_table_does(tmp_path, capsys):
    """`evaluate --dry-run` printed the plugin's name alone, so two `samples:`
    sources (or edm with and without an option) were indistinguishable lines
    ("samples seed 0 cached" twice) while the table after a run names them
    `samples (label=a)` and `samples (label=b)`."""
    a, b = _npz(tmp_path / "a.npz", 0), _npz(tmp_path / "b.npz", 1)
    code, out, err = run_cli(["evaluate", "-g", f"edm,samples:{a},samples:{b}", "-o", "edm.churn=0.5",
                              "--preset", "smoke", "--seed", "0", "--results", str(tmp_path / "r"), "--dry-run"],
                             capsys)
    assert code == 0, err
    rows = [line.split(" seed ")[0].strip() for line in out.splitlines() if " seed 0 " in line]
    assert rows == ["real", "edm (churn=0.5)", "samples (label=a)", "samples (label=b)"], out


def test_a_file_named_records_is_named_in_the_error(tmp_path, capsys):
    """A file where the store keeps its records folder said only "Cannot write
    results to DIR (File exists)", naming neither the file nor what to do; the
    README promises a message that names the path."""
    (tmp_path / "records").write_text("not a folder")
    code, _, err = run_cli(["evaluate", "-g", "real", "--preset", "smoke", "--seed", "0", "-q",
                            "--results", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path / 'records'} is a file, where the store needs a folder" in err, err


def test_export_samples_prints_a_command_that_gives_the_adapters_numbers(tmp_path, capsys):
    """export-samples ends with `score them: synthbench evaluate ...`; after
    `--threads 1` that command left the thread count out, so it trained the
    classifier at torch's default count and, on a 2-core machine, gave 0.2117
    where edm's own record at 1 thread holds 0.1950: not the adapter's numbers
    bit for bit, as the README promises. It also left out --results, so it
    missed the caches the export filled."""
    results = tmp_path / "store"
    common = ["--preset", "smoke", "--threads", "1", "--results", str(results), "-q"]
    code, out, err = run_cli(["export-samples", "-g", "edm", "--seed", "0", "--out", str(tmp_path / "edm.npz"),
                              *common], capsys)
    assert code == 0, err
    hint = [line for line in out.splitlines() if line.startswith("score them: synthbench ")][0]
    args = shlex.split(hint.removeprefix("score them: synthbench "))
    assert "--threads" in args and args[args.index("--threads") + 1] == "1", hint
    assert "--results" in args and args[args.index("--results") + 1] == str(results), hint
    code, _, err = run_cli([*args, "-g", f"edm,{args[args.index('-g') + 1]}", "-q"], capsys)
    assert code == 0, err
    top1 = {}
    for path in (results / "records" / "digits" / "replace").rglob("*.json"):
        rec = json.loads(path.read_text())
        top1[rec["spec"]["generator"]] = rec["metrics"]["top1"]["value"]
    assert top1["samples"] == top1["edm"], top1


def test_seeds_help_names_the_interval_the_table_prints(capsys):
    """`evaluate --help` said the table gives "mean ± standard error" over the
    seeds, as the README did; the table prints the 95% interval (its header
    says so: one seed's top1 0.9721 ± 0.0170 is 1.96 x the binomial standard
    error 0.0087 over digits' 359 test images)."""
    code, out, _ = run_cli(["evaluate", "--help"], capsys)
    seeds_help = " ".join(out[out.index("--seeds"):out.index("--seed K")].split())
    assert code == 0 and "95% interval" in seeds_help and "standard error over them" not in seeds_help, seeds_help


def test_verify_stamps_nothing_verified_that_it_did_not_recompute(tmp_path, capsys):
    """`verify BUNDLE --cells 0 --results DIR` said "verified: 0 cells
    recomputed", added the records to DIR and stamped them, so the leaderboard
    marked rows nobody re-ran `✓ verified`; the README says a row nobody re-ran
    is `unverified`. A bundle with no ok cell (here real's `recon` cells, all
    unsupported) was stamped the same way with --cells 3."""
    from pathlib import Path

    suite = str(Path(__file__).resolve().parents[1] / "configs" / "regress.yaml")
    store, bundle = tmp_path / "store", tmp_path / "real.tar.gz"
    code, _, err = run_cli(["evaluate", "-g", "real", "-p", "recon", "--preset", "smoke", "--seed", "0",
                            "--threads", "1", "-q", "--results", str(store)], capsys)
    assert code == 0, err
    code, _, err = run_cli(["submit", "--results", str(store), "-g", "real", "--out", str(bundle)], capsys)
    assert code == 0, err
    board = tmp_path / "board"
    code, _, err = run_cli(["verify", str(bundle), "--cells", "0", "--results", str(board), "--suite", suite, "-q"],
                           capsys)
    assert code == 2 and "--cells 0 recomputes nothing" in err and "Traceback" not in err, err
    assert not board.exists()
    code, _, err = run_cli(["verify", str(bundle), "--cells", "0", "--suite", suite, "-q"], capsys)
    assert code == 0, err  # the integrity check alone still works
    code, _, err = run_cli(["verify", str(bundle), "--cells", "3", "--results", str(board), "--suite", suite, "-q"],
                           capsys)
    assert code == 1 and "not added" in err, err
    assert not (board / "verified").exists()


def test_a_config_may_list_generators_and_protocols(tmp_path, capsys):
    """`--config` takes the flags' keys, and `seeds: [0, 3]` works as a YAML
    list, but `generator: [edm, real]` was refused ("is not a name; give e.g.
    generator: edm"): only the flag's comma-separated text was accepted."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: smoke\nseeds: [0]\ngenerator: [edm, real]\nprotocol: [replace, copies]\n")
    code, out, err = run_cli(["evaluate", "--config", str(cfg), "--results", str(tmp_path / "r"), "--dry-run"],
                             capsys)
    assert code == 0, err
    assert "replace on digits" in out and "copies on digits" in out and out.count("edm ") == 2, out


def test_a_config_option_may_be_a_yaml_list(tmp_path, capsys):
    """A suite takes `scaleup: {multiples: [1, 2]}`, but the same mapping under
    a config's `options:` became the text '[1, 2]' and was refused ("could not
    convert string to float: '[1'")."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: smoke\nseeds: 1\ngenerator: real\nprotocol: scaleup\noptions:\n  multiples: [1, 2]\n")
    code, out, err = run_cli(["evaluate", "--config", str(cfg), "--results", str(tmp_path / "r"), "--dry-run"],
                             capsys)
    assert code == 0 and "scaleup on digits" in out, err
