"""`synthbench regress`: passes against a baseline of the same code, fails (exit 1)
on a perturbed baseline or a plugin version the baseline does not know, and
answers bad input with one paragraph and exit 2. The committed suite and baseline
are checked for consistency here; CI recomputes them (`.ci/run`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthbench.plugins import GENERATORS, PROTOCOLS
from synthbench.cli import main
from test_cli import run_cli
from synthbench.errors import UserError
from synthbench.leaderboard.regress import (BASELINE_FORMAT, Tolerance, baseline_path, cell_key, compare,
                                            load_suite, read_baseline, render)

REPO = Path(__file__).resolve().parents[1]
TINY_SUITE = """
name: tiny
dataset: digits
preset: smoke
seeds: [0]
device: cpu
generators:
  real: {}
protocols:
  replace: {}
  detect: {}
tolerance:
  default: {abs: 0.02}
  metrics:
    "detect.*": {abs: 0.0}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A one-generator suite and a baseline written by `--update-baseline`."""
    root = tmp_path_factory.mktemp("regress")
    suite = root / "tiny.yaml"
    suite.write_text(TINY_SUITE)
    code = None
    try:
        main(["regress", "-q", "--suite", str(suite), "--baseline", str(root / "base"), "--update-baseline",
              "--results", str(root / "store")])
    except SystemExit as exc:
        code = exc.code
    assert code in (None, 0)
    return suite, root / "base" / "tiny.json", root / "store"


def test_regress_passes_on_an_unchanged_recomputation(tiny, capsys):
    suite, base, _ = tiny
    data = json.loads(base.read_text())
    assert data["format"] == BASELINE_FORMAT and set(data["cells"]) == {"real/replace/seed0", "real/detect/seed0"}
    assert data["plugins"]["protocol:replace"] == PROTOCOLS.get("replace").version
    # A fresh temporary store: nothing cached, everything recomputed.
    code, out, err = run_cli(["regress", "-q", "--suite", str(suite), "--baseline", str(base.parent)], capsys)
    assert code == 0, out + err
    assert "regress ok" in out and "0 drifted" in out
    assert data["environment"]["cpu_capability"] and data["environment"]["device"].startswith("cpu")
    assert "machines:" not in out  # the same machine: nothing to name


def test_regress_fails_on_a_perturbed_baseline_and_says_what_moved(tiny, tmp_path, capsys):
    suite, base, store = tiny
    data = json.loads(base.read_text())
    data["cells"]["real/replace/seed0"]["metrics"]["top1"] += 0.05   # past abs 0.02
    data["cells"]["real/replace/seed0"]["metrics"]["worst_class_acc"] += 0.001  # within it
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    code, out, err = run_cli(["regress", "-q", "--suite", str(suite), "--baseline", str(tmp_path),
                              "--results", str(store)], capsys)
    assert code == 1
    drift = [line for line in out.splitlines() if "DRIFT" in line]
    assert len(drift) == 1 and "real/replace/seed0" in drift[0] and "top1" in drift[0] and "-0.05" in drift[0]
    assert any("worst_class_acc" in line and "within tolerance" in line for line in out.splitlines())
    assert "regress FAIL" in out and "--update-baseline" in err


def test_regress_fails_when_a_plugin_version_differs_from_the_baseline(tiny, tmp_path, capsys):
    suite, base, store = tiny
    data = json.loads(base.read_text())
    data["plugins"]["protocol:detect"] = data["plugins"]["protocol:detect"] - 1
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    code, out, _ = run_cli(["regress", "-q", "--suite", str(suite), "--baseline", str(tmp_path),
                            "--results", str(store)], capsys)
    assert code == 1
    assert "protocol detect is v" in out and "regenerate the baseline" in out


def test_compare_tolerances_status_and_missing_cells(tmp_path):
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(TINY_SUITE + '    "*fid*": {rel: 0.1}\n')
    suite = load_suite(suite_file)
    assert suite.tolerance("detect", "pixel_acc") == Tolerance(abs=0.0)
    assert suite.tolerance("replace", "top1") == Tolerance(abs=0.02)
    assert suite.tolerance("fidelity", "floor_fid").allowed(20.0) == pytest.approx(2.0)

    def cell(status="ok", **metrics):
        return {"status": status, "error": None if status == "ok" else "boom", "metrics": metrics}

    base = {"suite_digest": suite.digest, "dataset_digest": "x", "plugins": {"protocol:replace": 2},
            "cells": {"a/replace/seed0": cell(top1=0.5, fid=float("nan")), "b/replace/seed0": cell(top1=0.6),
                      "c/replace/seed0": cell(top1=0.7)}}
    now = {"suite_digest": suite.digest, "dataset_digest": "x", "plugins": {"protocol:replace": 2},
           "cells": {"a/replace/seed0": cell(top1=0.515, fid=float("nan")), "b/replace/seed0": cell("failed"),
                     "d/replace/seed0": cell(top1=0.1)}}
    report = compare(suite, base, now)
    verdicts = {(line.cell, line.metric): line.verdict for line in report.lines}
    assert verdicts[("a/replace/seed0", "top1")] == "within tolerance"
    assert verdicts[("a/replace/seed0", "fid")] == "same"  # NaN on both sides is no change
    assert verdicts[("b/replace/seed0", "status")] == "status changed"
    assert verdicts[("b/replace/seed0", "top1")] == "missing"
    assert verdicts[("c/replace/seed0", "(cell)")] == "missing" and verdicts[("d/replace/seed0", "(cell)")] == "new"
    assert report.drifted and not report.notes
    clean = compare(suite, base, {**base})
    assert not clean.drifted and all(line.verdict == "same" for line in clean.lines)
    assert clean.machines is None and "machines:" not in render(clean)


def test_a_run_on_another_kind_of_cpu_names_both_machines_without_drifting(tmp_path):
    """The smoke numbers repeat bitwise only on the same kind of CPU: a report
    whose values moved names where the baseline and the run were computed (the
    CPU and the kernels torch dispatched), and that alone is not drift."""
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(TINY_SUITE)
    suite = load_suite(suite_file)
    env = {"torch": "2.14.1", "device": "cpu (x86_64, 2 threads)", "threads": 2, "cpu": "AMD EPYC",
           "cpu_capability": "AVX512"}
    base = {"suite_digest": suite.digest, "dataset_digest": "x", "plugins": {}, "environment": env,
            "cells": {"a/replace/seed0": {"status": "ok", "error": None, "metrics": {"top1": 0.5}}}}
    now = dict(base, environment=dict(env, cpu_capability="AVX2"),
               cells={"a/replace/seed0": {"status": "ok", "error": None, "metrics": {"top1": 0.51}}})
    report = compare(suite, base, now)
    assert not report.drifted and report.machines
    text = render(report)
    assert "machines: baseline computed with torch 2.14.1, cpu (x86_64, 2 threads), AMD EPYC, AVX512 kernels; " \
           "this run with torch 2.14.1, cpu (x86_64, 2 threads), AMD EPYC, AVX2 kernels" in text
    assert "regress ok" in text
    # a baseline written before the kernels were recorded says so
    old = dict(base, environment={k: v for k, v in env.items() if k not in ("cpu", "cpu_capability")})
    assert "cpu (x86_64, 2 threads), kernels not recorded; this run" in render(compare(suite, old, base))


@pytest.mark.parametrize("text, message", [
    ("generators: [real\n", "not valid YAML"),
    ("- a list\n", "must hold a mapping"),
    ("generators: {real: {}}\nprotocols: {replace: {}}\nbogus: 1\n", "unknown keys bogus"),
    ("generators: {real: {}}\nprotocols: {replace: {}}\nseeds: [-1]\n", "seeds must be"),
    ("generators: {real: {}}\nprotocols: {replace: {}}\ntolerance: {default: {abs: -1}}\n", ">= 0"),
    ("generators: {}\nprotocols: {replace: {}}\n", "generators must be a non-empty mapping"),
    ("generators: {edm: [{}, {churn: 0.5}]}\nprotocols: {replace: {}}\n", "generators.edm gives a list"),
])
def test_bad_suites_are_one_paragraph_errors(tmp_path, capsys, text, message):
    suite = tmp_path / "bad.yaml"
    suite.write_text(text)
    with pytest.raises(UserError, match=message):
        load_suite(suite)
    code, out, err = run_cli(["regress", "--suite", str(suite)], capsys)
    assert code == 2 and message.split()[0] in err and "Traceback" not in err and err.count("\n") == 1


def test_missing_suite_baseline_and_bad_options_exit_2(tmp_path, capsys):
    code, _, err = run_cli(["regress", "--suite", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "no such file" in err
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY_SUITE)
    code, _, err = run_cli(["regress", "--suite", str(suite), "--baseline", str(tmp_path / "none")], capsys)
    assert code == 2 and "No baseline" in err and "--update-baseline" in err
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "tiny.json").write_text("{}")
    code, _, err = run_cli(["regress", "--suite", str(suite), "--baseline", str(tmp_path / "none")], capsys)
    assert code == 2 and "not a synthbench regression baseline" in err
    suite.write_text(TINY_SUITE.replace("replace: {}", "replace: {no_such_option: 1}"))
    (tmp_path / "none" / "tiny.json").write_text(json.dumps({"format": BASELINE_FORMAT, "cells": {}}))
    code, _, err = run_cli(["regress", "--suite", str(suite), "--baseline", str(tmp_path / "none")], capsys)
    assert code == 2 and "no_such_option" in err


def test_the_committed_baseline_matches_the_committed_suite():
    """What CI's `synthbench regress` compares: the baseline must describe this
    suite's grid and the installed plugin versions (a version bump without a new
    baseline fails here, before the two-minute recomputation)."""
    suite = load_suite(REPO / "configs" / "regress.yaml")
    baseline = read_baseline(baseline_path(suite, None))
    assert baseline["suite_digest"] == suite.digest, "suite changed: run `synthbench regress --update-baseline`"
    expected = {f"generator:{g}": GENERATORS.get(g).version for g in suite.generators}
    expected.update({f"protocol:{p}": PROTOCOLS.get(p).version for p in suite.protocols})
    assert baseline["plugins"] == expected, "a plugin version changed: run `synthbench regress --update-baseline`"
    cells = {cell_key(g, p, s) for g in suite.generators for p in suite.protocols for s in suite.seeds}
    assert set(baseline["cells"]) == cells
    assert all(c["status"] in ("ok", "unsupported") for c in baseline["cells"].values())
    assert sum(len(c["metrics"]) for c in baseline["cells"].values()) > 50


def test_committed_tolerances_pick_the_pattern_meant_for_each_metric():
    """Patterns match `protocol.metric` too, so a careless "*fid*" would catch
    every `fidelity.*` metric (as it once did): check the committed suite."""
    from synthbench.leaderboard.regress import load_suite

    suite = load_suite(Path(__file__).resolve().parents[1] / "configs" / "regress.yaml")
    fid = suite.tolerance("fidelity", "fid")
    assert suite.tolerance("fidelity", "floor_fid") == fid == suite.tolerance("recon", "fid_t10")
    assert fid.rel > 0
    assert suite.tolerance("fidelity", "precision").rel == 0 and suite.tolerance("fidelity", "precision") != fid
    assert suite.tolerance("fidelity", "floor_precision") == suite.default_tolerance
    assert suite.tolerance("augment", "top1") == suite.default_tolerance
    assert suite.tolerance("scaleup", "real_top1") == suite.default_tolerance


def test_committed_tolerances_cover_the_measured_moves_between_cpus():
    """The largest moves measured between two CPUs (the baseline's AVX-512 AMD
    EPYC against an AVX2-only one, same torch, 2 threads) stay within the
    committed tolerances, and the ones for a classifier trained on the smoke
    EDM's samples alone do not widen the real oracle's other figures."""
    from synthbench.leaderboard.regress import load_suite

    suite = load_suite(Path(__file__).resolve().parents[1] / "configs" / "regress.yaml")
    moved = {("replace", "top1"): 0.039, ("ood", "replace_clean_top1"): 0.039, ("scaleup", "top1_x1"): 0.039,
             ("fidelity", "recall"): 0.108, ("longtail", "balanced_target_acc"): 0.0463,
             ("longtail", "balanced_top1"): 0.0251, ("longtail", "control_worst_class_acc"): 0.0833,
             ("mia", "nearer_member_fraction_feature"): 0.025}
    for (protocol, metric), move in moved.items():
        assert suite.tolerance(protocol, metric).allowed(0.5) >= 1.4 * move, (protocol, metric)
    for protocol, metric in (("augment", "top1"), ("recon", "top1_t0"), ("ood", "augment_clean_top1"),
                             ("longtail", "control_top1")):
        assert suite.tolerance(protocol, metric).allowed(0.9) == 0.03, (protocol, metric)
