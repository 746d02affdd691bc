"""ood, longtail and mia end to end at the smoke preset."""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image

from synthbench.benchmark.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from synthbench.benchmark.store import ResultStore
from synthbench.benchmark.worklog import read_worklog
from synthbench.errors import UserError
from synthbench.plugins import GENERATORS, PROTOCOLS
from synthbench.protocols.longtail import long_tail_counts

from conftest import run_cells


def _run(ds, store, gen, proto, **popts):
    (cell,) = run_cells(ds, {gen: {"eval_batch": "64"} if gen == "edm" else {}}, {proto: popts}, [0], store)
    assert cell.record.status == "ok", cell.record.traceback
    return cell.record


def test_corruptions_are_deterministic_and_grow_with_severity(digits):
    x = digits.test.images[:40]
    assert len(CORRUPTIONS) >= 8 and SEVERITIES == (1, 2, 3, 4, 5)
    for kind in CORRUPTIONS:
        a = corrupt(x, kind, 1)
        assert torch.equal(a, corrupt(x, kind, 1)) and a.dtype == torch.uint8 and a.shape == x.shape
        change = [(corrupt(x, kind, s).float() - x.float()).abs().mean() for s in (1, 5)]
        assert change[1] > change[0] > 0, kind


def test_ood_reuses_replace_and_augment_classifiers(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    _run(smoke_digits, store, "real", "replace")  # trains the reference classifier
    _run(smoke_digits, store, "edm", "replace")
    _run(smoke_digits, store, "edm", "augment")
    cached = set((tmp_path / "cache" / "classifiers").iterdir())
    folder = tmp_path / "ood"
    for c in ("3", "7"):
        (folder / c).mkdir(parents=True)
        for i, img in enumerate(smoke_digits.test.images[smoke_digits.test.labels == int(c)][:3]):
            Image.fromarray(img[0].numpy()).resize((16, 16)).save(folder / c / f"{i}.png")
    rec = _run(smoke_digits, store, "edm", "ood", ood_folder=str(folder))
    # replace, augment and the reference classifier came from the cache: nothing new trained
    assert set((tmp_path / "cache" / "classifiers").iterdir()) == cached
    m = rec.metrics
    assert 0 <= m["replace_corrupt_top1"]["value"] <= 1 and m["augment_corrupt_ratio_to_real"]["value"] > 0
    assert set(rec.details["per_corruption"]["replace"]) == set(CORRUPTIONS)
    assert "replace_folder0_top1" in m

    # the suite's accuracies are cached per classifier: `real` under ood meets the
    # reference classifier again (its real and replace arms) and evaluates only
    # its augment arm; the shared real arm gives the same number in both cells
    scored = set((tmp_path / "cache" / "ood").iterdir())
    assert len(scored) == 3
    real = _run(smoke_digits, store, "real", "ood")
    assert len(set((tmp_path / "cache" / "ood").iterdir()) - scored) == 1
    assert real.metrics["real_corrupt_top1"] == m["real_corrupt_top1"]
    assert real.details["per_corruption"]["replace"] == real.details["per_corruption"]["real"]
    files = set((tmp_path / "cache" / "ood").iterdir())
    assert all(re.fullmatch(r"suite-accuracy-[0-9a-f]{24}\.json", f.name) for f in files), files

    # an unreadable cached accuracy file stops the run naming it (the disk cache's
    # one policy), instead of being recomputed over
    for f in files:
        f.write_text("{ truncated")
    store.path_for(real.spec).unlink()
    with pytest.raises(UserError, match=r"suite-accuracy-[0-9a-f]{24}\.json is unreadable.*Delete that file"):
        _run(smoke_digits, store, "real", "ood")
    assert all(f.read_text() == "{ truncated" for f in files)


def test_long_tail_counts_follow_eq1():
    assert long_tail_counts(100, 10, 0.1) == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]


def test_longtail_arms(smoke_digits, tmp_path):
    rec = _run(smoke_digits, ResultStore(tmp_path), "edm", "longtail")
    d = rec.details
    counts = d["class_counts"]
    n_max = d["n_max"]
    assert counts["lt"] == d["long_tail_counts"]
    assert counts["balanced"] == [n_max] * 10
    targets = d["target_classes"]
    assert targets == [9, 8, 7]
    assert sum(counts["targeted"]) == sum(counts["control"])  # equal size, Basu et al. Sec. 3.3.2
    for t in targets:
        assert counts["targeted"][t] == n_max
    assert "conditional=False" in d["control_generator"]
    for arm in ("lt", "balanced", "targeted", "control"):
        assert len(d["per_class_accuracy"][arm]) == 10
    # the control's unconditional generator is the plan's unconditional fit, loaded from its weights file,
    # not a second training of it (the whole train split, given explicitly, is keyed as the whole split)
    weights = [p.name for p in (tmp_path / "cache" / "generators").glob("edm-*.pt") if "snapshot" not in p.name]
    assert len(weights) == 2, weights  # the conditional top-up generator and the unconditional control


def test_longtail_topup_option():
    from synthbench.benchmark.options import resolve_options

    spec = PROTOCOLS.get("longtail").options
    assert resolve_options(spec, {}, "longtail")["topup"] == "to_max"
    assert resolve_options(spec, {"topup": "500"}, "longtail")["topup"] == 500
    assert resolve_options(spec, {"topup": 7}, "longtail")["topup"] == 7  # a YAML integer
    for bad in ("0", "-5", "max", "2.5", True):
        with pytest.raises(UserError):
            resolve_options(spec, {"topup": bad}, "longtail")


def test_longtail_fixed_topup_per_target_class(smoke_digits, tmp_path):
    """topup=N: N conditional samples added to each target class (Basu et al.'s
    fixed 500 a class), whatever its count; the control matches the size."""
    rec = _run(smoke_digits, ResultStore(tmp_path), "edm", "longtail", topup=6, target_classes="9,5")
    d = rec.details
    lt, targeted = d["class_counts"]["lt"], d["class_counts"]["targeted"]
    assert d["topup"] == 6 and d["target_classes"] == [9, 5] and d["targeted_added"] == [6, 6]
    assert [t - c for t, c in zip(targeted, lt)] == [6 if c in (5, 9) else 0 for c in range(10)]
    assert sum(d["class_counts"]["control"]) == sum(targeted)
    assert d["class_counts"]["balanced"] == [d["n_max"]] * 10  # the balanced arm is not affected
    assert "targeted_top1" in rec.metrics


def test_longtail_fixed_topup_real_oracle_caps_at_the_left_out_images(smoke_digits, tmp_path):
    """For `real` the N are the class's left-out real images, as many as there are;
    with to_max (the default) the details say so and the targeted arm tops up to N_max."""
    store = ResultStore(tmp_path)
    rec = _run(smoke_digits, store, "real", "longtail", topup=1000)
    d = rec.details
    totals = torch.bincount(smoke_digits.train.labels, minlength=10).tolist()
    for t, added in zip(d["target_classes"], d["targeted_added"]):
        assert added == totals[t] - d["long_tail_counts"][t]
        assert d["class_counts"]["targeted"][t] == totals[t]
    small = _run(smoke_digits, store, "real", "longtail", topup=2)
    assert small.details["targeted_added"] == [2, 2, 2]
    default = _run(smoke_digits, store, "real", "longtail")
    assert default.details["topup"] == "to_max"
    assert all(default.details["class_counts"]["targeted"][t] == default.details["n_max"]
               for t in default.details["target_classes"])
    assert default.details["targeted_added"] == [default.details["n_max"] - default.details["long_tail_counts"][t]
                                                 for t in default.details["target_classes"]]


def test_mia_real_shows_the_attack_works(smoke_digits, tmp_path):
    """With `real` as the generator the 'synthetic' set is the members themselves:
    the attack must find them and the copy check must flag every sample."""
    rec = _run(smoke_digits, ResultStore(tmp_path), "real", "mia", shadows=4)
    m = rec.metrics
    assert m["members_online_auc"]["value"] == m["synthetic_online_auc"]["value"]
    assert m["copy_fraction_pixel"]["value"] == 1.0
    assert rec.details["closest_pairs"][0]["distance"] == 0.0
    assert rec.details["members"] == len(smoke_digits.train) // 2


def test_mia_edm_runs_and_reports(smoke_digits, tmp_path, monkeypatch):
    """...and fits the EDM on the members only: the runner must not first train
    one on the full split that mia never samples from."""
    cls = GENERATORS.get("edm")
    fitted_on: list[int] = []
    real_fit = cls.fit

    def counting_fit(self, ctx):
        fitted_on.append(len(ctx.train))
        return real_fit(self, ctx)

    monkeypatch.setattr(cls, "fit", counting_fit)
    rec = _run(smoke_digits, ResultStore(tmp_path), "edm", "mia", shadows=2)
    # every fit is on the members: the plan's fit task trains, the cell reads its weights from the cache
    assert fitted_on and set(fitted_on) == {len(smoke_digits.train) // 2}
    trained = [e for e in read_worklog(tmp_path) if e["kind"] == "cache" and e["name"].startswith("edm-")]
    assert len(trained) == 1
    wall = rec.cost["wall_s"]
    # the members' fit is counted, not overwritten by the runner's. It ran as the plan's fit task, outside
    # the cell (cell.COST_PHASES), so it is not bounded by cell_s: comparing the two timed the machine's load
    assert wall["fit_s"] > 0 and wall["cell_s"] > 0
    m = rec.metrics
    for key in ("synthetic_online_auc", "synthetic_offline_auc", "synthetic_online_tpr@0.001",
                "copy_fraction_feature", "nearer_member_fraction_pixel"):
        assert 0 <= m[key]["value"] <= 1 and m[key]["higher_is_better"] is False
    assert len(rec.details["closest_pairs"]) == 8
