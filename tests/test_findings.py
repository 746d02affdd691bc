"""The findings page, the README's generated results section and the board's
audit (mixed-provenance warnings, pairs separated, CPU-hours), on records made
here (nothing is trained): each verdict must follow from the records."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from synthbench.benchmark.cell import Record, cell_hash, seal
from synthbench.benchmark.metrics import metric
from synthbench.benchmark.store import ResultStore
from synthbench.leaderboard.aggregate import build_tables
from synthbench.leaderboard.audit import cost_tables, provenance_text, provenance_warnings, separation
from synthbench.leaderboard.findings import (CONSISTENT, NOT_MEASURED, NOT_SHOWN, REFUTED, REPRODUCED, Finding,
                                             build_findings, paired_difference, verdict)
from synthbench.leaderboard.readme import END, START, update_readme
from synthbench.leaderboard.site import build_site
from synthbench.plugins import GENERATORS, PROTOCOLS
from synthbench.errors import UserError
from test_cli import run_cli

N = 1000
SEEDS = (0, 1, 2)


def rec(generator: str, protocol: str, seed: int, metrics: dict, *, options: dict | None = None,
        threads: int = 1, precision: str | None = None, wall: float = 36.0, status: str = "ok",
        dataset: str = "digits", cpu: str | None = None) -> Record:
    """A current record (registered versions) of ``generator`` x ``protocol`` on ``dataset``."""
    preset = {"name": "fast"} if precision is None else {"name": "fast", "precision": precision}
    spec = {"schema_version": 1, "synthbench_version": "0.1.0", "dataset": dataset,
            "dataset_digest": dataset[0] * 64,
            "generator": generator, "generator_version": GENERATORS.get(generator).version,
            "generator_options": options or {}, "generator_extra": {}, "protocol": protocol,
            "protocol_version": PROTOCOLS.get(protocol).version, "protocol_options": {}, "preset": preset,
            "seed": seed, "device_type": "cpu"}
    return Record.from_json(seal({
        "schema_version": 1, "cell_hash": cell_hash(spec), "spec": spec, "status": status, "error": None,
        "metrics": metrics, "details": {},
        "cost": {"wall_s": {"cell_s": wall, "fit_s": 0.0}, "device": f"cpu (x86_64, {threads} threads)"},
        "provenance": {"created": f"2024-01-01T00:00:0{seed}+00:00", **({"cpu": cpu} if cpu else {})}}))


def ablation(arms_of_seed) -> Finding:
    """The realfake-ablation finding over ``replace`` records of the arms that
    ``arms_of_seed(seed)`` gives (options -> per-image outcomes; ``{}`` is the
    default row). Each record holds every realfake option, defaults too, as
    the records a run writes do."""
    defaults = {k: o.default for k, o in GENERATORS.get("realfake").options.items()}
    records = [rec("realfake", "replace", s, {"top1": acc(outcomes)}, options={**defaults, **dict(opts)})
               for s in SEEDS for opts, outcomes in arms_of_seed(s).items()]
    return finding(records, "realfake-ablation")


def subjects(f: Finding, comparison: str) -> dict[str, str]:
    """Subject -> verdict of a finding's evidence of one kind of comparison."""
    return {e.subject: e.verdict for e in f.evidence if e.comparison == comparison}


STEP, WHOLE = "top1, with the component - without it", "top1, every component on - this arm"


def acc(outcomes: np.ndarray) -> dict:
    """An accuracy entry that keeps its per-image outcomes (the paired bootstrap reads them)."""
    top1 = float(outcomes.mean())
    return metric(top1, (top1 * (1 - top1) / len(outcomes)) ** 0.5, len(outcomes), True, outcomes=outcomes)


def plain(value: float, higher: bool | None = True) -> dict:
    return metric(value, 0.01, 100, higher)


def draws(seed: int, accuracy: float) -> np.ndarray:
    return (np.random.default_rng(seed).random(N) < accuracy).astype(np.int8)


def improved(base: np.ndarray, share: float) -> np.ndarray:
    """``base`` with ``share`` of the images it got wrong set right: a paired improvement."""
    out = base.copy()
    wrong = np.flatnonzero(out == 0)
    out[wrong[: int(share * N)]] = 1
    return out


def worsened(base: np.ndarray, share: float) -> np.ndarray:
    """``base`` with ``share`` of all images, among those it got right, set wrong."""
    out = base.copy()
    right = np.flatnonzero(out == 1)
    out[right[: int(share * N)]] = 0
    return out


def board(augment_gain: float = 0.05) -> list[Record]:
    """real, edm and stylegan3 under replace and augment (augment beats replace by
    ``augment_gain`` of the images when positive, loses that much when
    negative), recon for edm, detect for edm and stylegan3."""
    out = []
    for s in SEEDS:
        real = draws(100 + s, 0.95)
        out.append(rec("real", "replace", s, {"top1": acc(real)}))
        for g, base_acc in (("edm", 0.85), ("stylegan3", 0.75)):
            base = draws({"edm": 200, "stylegan3": 250}[g] + s, base_acc)
            out.append(rec(g, "replace", s, {"top1": acc(base)}))
            aug = improved(base, augment_gain) if augment_gain >= 0 else worsened(base, -augment_gain)
            out.append(rec(g, "augment", s, {"top1": acc(aug)}))
        t0 = draws(300 + s, 0.95)
        out.append(rec("edm", "recon", s, {
            "top1_t0": acc(t0), "top1_t50": acc(np.where(np.arange(N) < 30, 0, t0).astype(np.int8)),
            "top1_t100": acc(np.where(np.arange(N) < 80, 0, t0).astype(np.int8)),
            "entropy_train_t0": plain(1.2 + 0.01 * s, None), "entropy_train_t100": plain(0.9 + 0.01 * s, None),
            "fid_t0": plain(1.0 + 0.1 * s, False), "fid_t100": plain(9.0 + 0.1 * s, False),
            "precision_t0": plain(0.8 + 0.01 * s), "precision_t100": plain(0.8 + 0.02 * (s - 1)),
            "recall_t0": plain(0.8 + 0.01 * s), "recall_t100": plain(0.5 + 0.01 * s)}))
        out.append(rec("stylegan3", "detect", s, {"pixel_acc": plain(0.90 + 0.01 * s), "dct_acc": plain(0.6)}))
        out.append(rec("edm", "detect", s, {"pixel_acc": plain(0.56 + 0.01 * s), "dct_acc": plain(0.6)}))
    return out


def finding(records: list[Record], key: str):
    return next(f for f in build_findings(build_tables(records)) if f.key == key)


# --------------------------------------------------------------------------- the test and the verdict


def test_paired_difference_uses_per_image_outcomes_and_falls_back_to_seeds():
    a = {s: acc(improved(draws(s, 0.8), 0.05)) for s in SEEDS}
    b = {s: acc(draws(s, 0.8)) for s in SEEDS}
    d = paired_difference(a, b)
    assert d.test.startswith("paired bootstrap over 3 seeds x 1,000 test images")
    assert d.significant and d.diff == pytest.approx(0.05, abs=1e-9)
    e = paired_difference({s: plain(0.5 + 0.01 * s) for s in SEEDS}, {s: plain(0.4 + 0.01 * s) for s in SEEDS})
    assert e.test == "paired by seed, Student t over 3 seeds"
    assert e.diff == pytest.approx(0.1) and e.low == pytest.approx(0.1) and e.high == pytest.approx(0.1)
    noisy = paired_difference({s: plain(v) for s, v in zip(SEEDS, (0.5, 0.7, 0.4))},
                              {s: plain(0.5) for s in SEEDS})
    assert not noisy.significant  # a mean of +0.033 with a spread of 0.15: t over 3 seeds cannot tell
    assert paired_difference({0: plain(0.5)}, {0: plain(0.4)}) is None  # one common seed, no outcomes
    assert paired_difference({0: plain(0.5)}, {1: plain(0.4)}) is None


def test_verdicts_follow_the_sign_and_the_interval():
    from synthbench.leaderboard.findings import Difference

    up, down, flat = Difference(0.1, 0.05, 0.15, "t"), Difference(-0.1, -0.15, -0.05, "t"), Difference(0, -1, 1, "t")
    assert verdict(up, +1) == REPRODUCED and verdict(down, +1) == REFUTED and verdict(flat, +1) == NOT_SHOWN
    assert verdict(down, -1) == REPRODUCED and verdict(up, -1) == REFUTED
    assert verdict(flat, 0) == CONSISTENT and verdict(up, 0) == REFUTED
    assert verdict(None, +1) == NOT_MEASURED


# --------------------------------------------------------------------------- findings from records


def test_findings_reproduced_and_refuted_from_the_records():
    records = board(augment_gain=0.05)
    aug = finding(records, "augment")
    vs_replace = [e for e in aug.evidence if e.comparison.endswith("on synthetic alone")]
    assert {e.subject for e in vs_replace} == {"edm", "stylegan3"}
    assert all(e.verdict == REPRODUCED for e in vs_replace)
    vs_real = [e for e in aug.evidence if e.comparison.endswith("on real alone")]
    assert vs_real and all(e.verdict == REFUTED for e in vs_real)  # 0.85 + 5 points is still below real's 0.95
    assert aug.verdict == "mixed"
    assert "on synthetic alone: reproduced in 2 of 2 comparisons" in aug.sentence  # each claim's own tally
    assert "on real alone: refuted in 2 of 2 comparisons" in aug.sentence

    worse = finding(board(augment_gain=-0.05), "augment")
    assert {e.verdict for e in worse.evidence if e.comparison.endswith("on synthetic alone")} == {REFUTED}

    recon = finding(records, "recon-accuracy")
    (e,) = recon.evidence
    assert e.verdict == REPRODUCED and e.difference.diff == pytest.approx(0.08 * 0.95, abs=0.01)  # 80 images, 95% right
    assert "0: " in e.ours and "100: " in e.ours and "50: " in e.ours  # the whole curve is shown
    assert finding(records, "recon-entropy").verdict == REPRODUCED
    fidelity = finding(records, "recon-fidelity")
    by = {e.comparison.split(" at ")[0]: e.verdict for e in fidelity.evidence}
    assert by == {"FID": REPRODUCED, "precision": NOT_SHOWN, "recall": REPRODUCED}
    assert fidelity.verdict == "mixed"

    detect = finding(records, "detect")
    (e,) = detect.evidence
    assert e.subject == "stylegan3 vs edm" and e.verdict == REPRODUCED and "Table 1" in detect.source


def test_a_finding_without_records_is_not_measured_and_cites_its_paper():
    mia = finding(board(), "mia")
    assert mia.verdict == NOT_MEASURED and mia.evidence == []
    assert "Not measured" in mia.sentence
    assert "arXiv 2310.10402" in mia.source and "seeds" not in mia.source


def test_realfake_ablation_compares_the_full_recipe_with_each_arm():
    def arms(s):
        full = draws(500 + s, 0.9)
        return {(): full, (("mmd", False),): np.where(np.arange(N) < 50, 0, full).astype(np.int8),
                (("finetune_steps", 0), ("prior_init", False)): full}

    assert subjects(ablation(arms), WHOLE) == {"fine-tuned + latent prior + visual guidance": REPRODUCED,
                                               "no fine-tuning": NOT_SHOWN}


def test_realfake_ablation_tests_each_component_against_the_arm_one_step_below():
    """Table 2 adds one step at a time: every two arms one component apart are
    compared, so a component that hurts shows up even when the full recipe beats
    every arm (here visual guidance costs 5 points on the fine-tuned model, yet
    all-on still wins by its prior)."""
    def arms(s):
        base = draws(700 + s, 0.7)
        tuned = np.maximum(base, draws(710 + s, 0.3))                   # fine-tuning helps
        guided = np.where(np.arange(N) < 50, 0, tuned).astype(np.int8)  # guidance hurts
        full = np.maximum(guided, draws(720 + s, 0.6))                  # the prior helps a lot
        return {(): full,
                (("finetune_steps", 0), ("prior_init", False)): base,
                (("mmd", False), ("prior_init", False), ("visual_guidance", False)): tuned,
                (("mmd", False), ("prior_init", False)): guided}

    f = ablation(arms)
    assert subjects(f, STEP) == {"fine-tuning, added to no fine-tuning": REPRODUCED,
                                 "visual guidance, added to fine-tuned only": REFUTED}
    whole = subjects(f, WHOLE)
    assert set(whole.values()) == {REPRODUCED} and len(whole) == 3
    assert f.verdict == "mixed" and "with the component - without it: " in f.sentence


def test_a_component_at_another_setting_is_a_step_of_its_own_not_an_ablation_arm():
    """The full recipe with a stronger MMD term is compared with the arm without
    MMD (and named by its setting), never with the full recipe as an arm."""
    def arms(s):
        full = draws(800 + s, 0.8)
        return {(): full, (("mmd", False),): full, (("mmd_weight", 1.0),): np.maximum(full, draws(810 + s, 0.2))}

    f = ablation(arms)
    assert subjects(f, STEP) == {
        "distribution matching, added to fine-tuned + latent prior + visual guidance": NOT_SHOWN,
        "distribution matching (mmd_weight=1.0), added to fine-tuned + latent prior + visual guidance": REPRODUCED}
    assert list(subjects(f, WHOLE)) == ["fine-tuned + latent prior + visual guidance"]


def test_a_dataset_still_being_computed_does_not_carry_the_verdict_until_it_catches_up():
    """fashion-mnist is preferred over digits, but only once its comparisons are
    as complete (seeds and generators) as digits'."""
    digits = board(augment_gain=0.05)

    def fashion(seeds, generators=("edm", "stylegan3")):
        out = []
        for s in seeds:
            out.append(rec("real", "replace", s, {"top1": acc(draws(900 + s, 0.95))}, dataset="fashion-mnist"))
            for g in generators:
                base = draws(950 + s, 0.85)
                out.append(rec(g, "replace", s, {"top1": acc(base)}, dataset="fashion-mnist"))
                out.append(rec(g, "augment", s, {"top1": acc(worsened(base, 0.05))}, dataset="fashion-mnist"))
        return out

    one_seed = finding(digits + fashion([0]), "augment")
    assert one_seed.main == "digits" and one_seed.sentence.startswith("On digits:")
    assert {e.dataset for e in one_seed.evidence} == {"digits", "fashion-mnist"}  # both listed on the page
    assert finding(digits + fashion(SEEDS, ("edm",)), "augment").main == "digits"  # stylegan3 not there yet
    done = finding(digits + fashion(SEEDS), "augment")
    assert done.main == "fashion-mnist" and done.sentence.startswith("On fashion-mnist:")
    assert {e.verdict for e in done.main_evidence if e.comparison.endswith("on synthetic alone")} == {REFUTED}


# --------------------------------------------------------------------------- the audit


def test_mixed_thread_counts_precisions_and_missing_seeds_are_warned():
    clean = board() + [rec("real", "recon", s, {}, status="unsupported") for s in SEEDS]
    assert provenance_warnings(build_tables(clean)) == []  # a row that cannot take part is not a short row
    mixed = clean + [rec("ddpm", "replace", 0, {"top1": acc(draws(9, 0.8))}, threads=2)]
    warnings = provenance_warnings(build_tables(mixed))
    assert any("mixes records trained at 1, 2 CPU threads" in w and "replace" in w for w in warnings)
    assert "digits (fast): ddpm has 1 of 3 seeds computed (failed seeds not counted) in replace." in warnings
    # a row short in several tables is named once, with the tables it is short in
    two = mixed + [rec("ddpm", "augment", 0, {"top1": acc(draws(8, 0.8))}, threads=1)]
    assert [w for w in provenance_warnings(build_tables(two)) if "ddpm has" in w] == [
        "digits (fast): ddpm has 1 of 3 seeds computed (failed seeds not counted) in augment, replace."]
    bf16 = [r for r in clean if r.spec.protocol != "detect"] + [
        rec("edm", "detect", s, {"pixel_acc": plain(0.6)}, precision="bf16") for s in SEEDS] + [
        rec("stylegan3", "detect", s, {"pixel_acc": plain(0.9)}) for s in SEEDS]
    assert any(w.startswith("the board mixes precisions: bf16 in digits detect") and "fp32 in" in w
               for w in provenance_warnings(build_tables(bf16)))


def test_cost_tables_sum_cpu_hours_and_separation_counts_pairs():
    records = board() + [rec("ddpm", "replace", s, {"top1": acc(draws(700 + s, 0.85))}, threads=2, wall=1800.0)
                         for s in SEEDS]
    tables = build_tables(records)
    (cost,) = cost_tables(tables)
    assert cost.hours["ddpm"]["replace"] == pytest.approx(3 * 1800 * 2 / 3600)
    assert cost.hours["edm"]["replace"] == pytest.approx(3 * 36 / 3600)
    assert cost.generators[0] == "real"
    assert cost.total == pytest.approx(sum(cost.row_total(g) for g in cost.generators))
    replace = next(t for t in tables if t.protocol == "replace")
    sep = separation(replace)
    # edm ~0.85 and ddpm ~0.85 drawn independently: the test cannot tell them apart on 1,000 images;
    # stylegan3 at 0.75 is clearly below both
    assert (sep.separated, sep.pairs) == (2, 3)
    assert "paired bootstrap" in sep.method


def test_the_provenance_line_names_the_cpus_records_were_computed_on():
    """fp32 bytes repeat only on one kind of CPU, so the board says which CPUs its
    records came from; records older than the field are counted as not recorded."""
    ok = {"top1": acc(draws(0, 0.9))}
    old = [rec("real", "replace", s, ok) for s in SEEDS]
    assert "CPUs" not in provenance_text(build_tables(old))  # nothing recorded: nothing to say
    mixed = old[:1] + [rec("real", "replace", 1, ok, cpu="AMD EPYC"), rec("real", "replace", 2, ok, cpu="Intel Xeon")]
    assert provenance_text(build_tables(mixed)).endswith("CPUs AMD EPYC (1), Intel Xeon (1), not recorded (1)")


# --------------------------------------------------------------------------- the site and the README


def test_findings_page_warnings_and_readme_section(tmp_path, capsys):
    store = ResultStore(tmp_path / "store")
    for r in board() + [rec("ddpm", "replace", 0, {"top1": acc(draws(9, 0.8))}, threads=2)]:
        store.write(r)
    build = build_site(tmp_path / "store", tmp_path / "site")
    page = (tmp_path / "site" / "findings.html").read_text()
    assert "Accuracy falls as the reverse step t_re grows" in page and "arXiv 2311.13090" in page
    assert "reproduced" in page and "not measured" in page
    assert "Mixed provenance" in page and build.warnings
    assert "generator pairs" in page and "CPU-hours" in page

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nintro\n\n{START}\nold text\n{END}\n\nafter\n")
    code, out, err = run_cli(["leaderboard", "-q", "--results", str(tmp_path / "store"), "--out",
                              str(tmp_path / "site"), "--readme", str(readme)], capsys)
    assert code == 0, err
    assert "warning: mixed provenance" in err and "1, 2 CPU threads" in err
    text = readme.read_text()
    assert "old text" not in text and text.startswith("# x\n\nintro\n") and text.endswith(f"{END}\n\nafter\n")
    assert "| finding | paper | ours (mean ± 95% interval; difference [95%]) | verdict | why |" in text
    assert "**reproduced**" in text and "edm: " in text  # our numbers, not only the verdict
    assert "rewritten" in out
    code, out, _ = run_cli(["leaderboard", "-q", "--results", str(tmp_path / "store"), "--out",
                            str(tmp_path / "site"), "--readme", str(readme)], capsys)
    assert code == 0 and "already current" in out and readme.read_text() == text

    bare = tmp_path / "BARE.md"
    bare.write_text("# no markers\n")
    with pytest.raises(UserError, match="has no results markers"):
        update_readme(bare, build.built_tables)
    code, _, err = run_cli(["leaderboard", "-q", "--results", str(tmp_path / "store"), "--out",
                            str(tmp_path / "site"), "--readme", str(bare)], capsys)
    assert code == 2 and "results markers" in err and "Traceback" not in err
    shutil.rmtree(tmp_path / "site")
    code, _, err = run_cli(["leaderboard", "-q", "--results", str(tmp_path / "store"), "--out",
                            str(tmp_path / "site"), "--readme", str(tmp_path / "missing.md")], capsys)
    assert code == 2 and "cannot be read" in err and "Traceback" not in err
    assert not (tmp_path / "site").exists()  # checked before the build, not after it


def test_the_readmes_results_section_is_what_the_published_store_gives(tmp_path):
    """The README's results section is generated, never edited: regenerating it
    from the committed store changes nothing (after a change to results/, run
    ``synthbench leaderboard --readme README.md`` and commit both)."""
    from pathlib import Path

    from synthbench.leaderboard.aggregate import PluginInfo, read_store

    root = Path(__file__).resolve().parents[1]
    read = read_store(root / "results")
    assert not read.left_out, read.left_out
    copy = tmp_path / "README.md"
    copy.write_text((root / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    changed = update_readme(copy, build_tables(read.records, PluginInfo(), read.stamps))
    assert not changed, "README.md's results section is stale: run `synthbench leaderboard --readme README.md`"
