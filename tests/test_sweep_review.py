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
