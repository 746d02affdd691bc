"""``mia`` v3: shadows trained like the target (``shadows_from=generator``), the
flip query, and the negatives each low-FPR TPR rests on; ``real`` shadows with
plain queries keep v2's numbers. At the smoke preset, on a cheap memorising
adapter (``copycat``) whose fit is counted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthbench.api import GENERATORS
from synthbench.benchmark.cache import digest
from synthbench.benchmark.context import CellContext, cached_classifier
from synthbench.benchmark.lira import lira_scores, logit_confidence, paired_halves, roc_summary
from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.seeding import derive_seed, numpy_rng
from synthbench.benchmark.store import ResultStore
from synthbench.benchmark.trainer import predict_logits
from synthbench.plugins import PROTOCOLS

from adversarial_adapters import CopyCat
from conftest import run_cells


class Memo(CopyCat):
    name = "mia-memo"
    fits: list[str] = []

    def fit(self, ctx):
        Memo.fits.append(ctx.dataset_digest)
        return super().fit(ctx)


@pytest.fixture(scope="module")
def memo():
    GENERATORS.register(Memo.name, Memo)
    yield Memo
    GENERATORS.unregister(Memo.name)


def _mia(**opts):
    cls = PROTOCOLS.get("mia")
    return cls(**resolve_options(cls.options, opts, "mia"))


def _split_digest(split) -> str:
    return digest(split.images, split.labels)


def _ok(cells):
    for cell in cells:
        assert cell.record.status == "ok", cell.record.traceback
    return [cell.record for cell in cells]


def test_generator_shadows_refit_once_per_half_and_keep_their_halves_across_seeds(memo, smoke_digits, tmp_path,
                                                                                   monkeypatch):
    fitted_on: dict[int, list[str]] = {}
    real_fit_generator = CellContext.fit_generator

    def counting(self, train, **overrides):
        fitted_on.setdefault(self.seed, []).append(_split_digest(train))
        return real_fit_generator(self, train, **overrides)

    monkeypatch.setattr(CellContext, "fit_generator", counting)
    memo.fits.clear()
    records = _ok(run_cells(smoke_digits, {memo.name: {}}, {"mia": {"shadows": 2, "shadows_from": "generator"}},
                            [0, 1], ResultStore(tmp_path)))
    half = len(smoke_digits.train) // 2
    # each cell fits the generator on the members and once per shadow half: three distinct halves
    assert sorted(fitted_on) == [0, 1] and all(len(set(d)) == 3 for d in fitted_on.values())
    # the halves (hence each shadow's fit) are the same for both run seeds
    assert fitted_on[0] == fitted_on[1]
    # the plan declared the same fits (members, shadow-0, shadow-1), so it ran them as fit tasks first
    needs = _mia(shadows=2, shadows_from="generator").generator_fits(smoke_digits, memo())
    assert [f.name for f in needs] == ["members", "shadow-0", "shadow-1"]
    assert [_split_digest(f.train) for f in needs] == fitted_on[0] and all(len(f.train) == half for f in needs)
    assert len(set(memo.fits)) == 3  # the adapter saw three training sets in all
    for rec in records:
        d = rec.details
        assert (d["shadows_from"], d["queries"], d["shadow_generator_fits"]) == ("generator", "plain", 2)
        assert 0 <= rec.metrics["synthetic_online_auc"]["value"] <= 1


def test_shadow_halves_follow_split_seed_in_generator_mode_and_the_run_seed_in_real_mode():
    mia = _mia()
    fixed = mia._shadow_masks(100, 4)
    assert np.array_equal(fixed, _mia()._shadow_masks(100, 4))  # no run seed in sight
    assert not np.array_equal(fixed, _mia(split_seed=1)._shadow_masks(100, 4))
    assert np.all(fixed.sum(0) == 2)
    # generator mode's first halves are those of fewer shadows: a smaller count reuses the fits
    assert np.array_equal(mia._shadow_masks(100, 2), fixed[:2])


def test_shadow_fits_are_declared_per_preset(smoke_digits, memo):
    gen = memo()
    default = _mia()
    assert [f.name for f in default.generator_fits(smoke_digits, gen)] == ["members"]  # no preset: unknown
    assert [f.name for f in default.generator_fits(smoke_digits, gen, PRESETS["smoke"])] == ["members"]
    paper = default.generator_fits(smoke_digits, gen, PRESETS["paper"])
    assert [f.name for f in paper] == ["members"] + [f"shadow-{k}" for k in range(16)]
    explicit = _mia(shadows_from="generator", shadows=4).generator_fits(smoke_digits, gen)
    assert len(explicit) == 5
    assert _mia(shadows_from="real", shadows=4).generator_fits(smoke_digits, gen, PRESETS["paper"])[1:] == []
    assert _mia(shadows_from="generator").generator_fits(smoke_digits, GENERATORS.get("real")(),
                                                         PRESETS["paper"]) == []


def _v2_metrics(ds, store, seed: int, shadows: int) -> dict[str, float]:
    """mia v2's attack numbers for the ``real`` generator, computed as v2 did
    (shadows on real halves drawn with the run seed, one query), from the
    classifiers the cells cached: target and baseline are both the members' model."""
    preset, cpu = PRESETS["smoke"], torch.device("cpu")
    train, n = ds.train, len(ds.train)
    is_member = _mia()._is_member(n)

    def model(split, s):
        return cached_classifier(split, ds.num_classes, preset, s, cpu, ds.hflip, store.cache_dir, "v2 check")

    def phi(m):
        return logit_confidence(predict_logits(m, train.images, cpu), train.labels)

    in_mask = paired_halves(n, shadows, numpy_rng("mia-shadows", seed))
    shadow_phi = np.stack([phi(model(train.subset(torch.from_numpy(mask)), derive_seed("mia-shadow", seed, k)
                                     & 0xFFFFFFF)) for k, mask in enumerate(in_mask)])
    target = phi(model(train.subset(torch.from_numpy(is_member)), seed))
    online, offline = lira_scores(target, shadow_phi, in_mask, True)
    out = {}
    for who in ("synthetic", "members"):
        for kind, scores in (("online", online), ("offline", offline)):
            out.update({f"{who}_{kind}_{k}": v for k, v in roc_summary(scores, is_member).items()})
    return out


def test_real_shadows_keep_v2_numbers_and_the_oracle_treats_generator_as_real(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    (real,) = _ok(run_cells(smoke_digits, {"real": {}}, {"mia": {"shadows": 2, "shadows_from": "real"}}, [0], store))
    (asked,) = _ok(run_cells(smoke_digits, {"real": {}}, {"mia": {"shadows": 2, "shadows_from": "generator"}}, [0],
                             store))
    v2 = _v2_metrics(smoke_digits, store, 0, 2)
    assert {k: real.metrics[k]["value"] for k in v2} == v2  # bit for bit
    assert {k: v["value"] for k, v in asked.metrics.items()} == {k: v["value"] for k, v in real.metrics.items()}
    assert (real.details["shadows_from"], real.details["shadow_generator_fits"]) == ("real", 0)
    assert asked.details["shadows_from"] == "real" and asked.details["shadow_generator_fits"] == 0
    assert "oracle" in asked.details["shadows_note"] and "shadows_note" not in real.details

    # (d) each attack says how many negatives its low-FPR TPRs rest on
    negatives = real.details["non_members"]
    for attack in ("synthetic_online", "synthetic_offline", "members_online", "members_offline"):
        roc = real.details["roc"][attack]
        assert roc["negatives"] == negatives
        assert roc["false_positives_at@0.01"] == math.floor(0.01 * negatives)
        assert roc["false_positives_at@0.001"] == math.floor(0.001 * negatives)
        assert roc["tpr@0.01"] == real.metrics[f"{attack}_tpr@0.01"]["value"]
        if 0.001 * negatives < 1:
            assert any("tpr@0.001 rests on 0 false positives" in note for note in roc["notes"])
    assert set(real.details["roc_curves"]) == set(real.details["roc"])


def test_flip_queries_score_the_image_and_its_mirror(memo, smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    (plain,) = _ok(run_cells(smoke_digits, {memo.name: {}}, {"mia": {"shadows": 2}}, [0], store))
    (flip,) = _ok(run_cells(smoke_digits, {memo.name: {}}, {"mia": {"shadows": 2, "queries": "flip"}}, [0], store))
    assert plain.details["queries"] == "plain" and flip.details["queries"] == "flip"
    assert "horizontal flips" in flip.details["queries_note"]  # digits trains without flips
    assert flip.details["shadows_from"] == "real"  # the smoke default
    for key in ("synthetic_online_auc", "members_offline_auc", "synthetic_online_tpr@0.01"):
        assert 0 <= flip.metrics[key]["value"] <= 1
    assert flip.metrics["members_online_auc"]["value"] != plain.metrics["members_online_auc"]["value"]
    # the copy check and accuracy do not depend on the queries
    assert flip.metrics["copy_fraction_pixel"] == plain.metrics["copy_fraction_pixel"]
    assert flip.metrics["synthetic_top1"] == plain.metrics["synthetic_top1"]


def test_the_plan_runs_each_shadow_fit_once_as_a_fit_task(tmp_path):
    """With ``shadows_from=generator`` the planner sees the shadow halves (it passes
    the grid's preset) and lists one fit task per shadow, shared by the seeds."""
    from synthbench.benchmark.driver import suite_grids
    from synthbench.benchmark.plan import build_plan
    from synthbench.benchmark.suite import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndataset: digits\npreset: smoke\nseeds: [0, 1]\ndevice: cpu\nthreads: 1\n"
                     "generators: {edm: {}}\nprotocols: {mia: {shadows_from: generator, shadows: 2}}\n")
    plan = build_plan(suite_grids(load_suite(suite), str(tmp_path / "r")))
    fits = sorted(t.fit for t in plan.by_kind("fit"))
    assert fits == ["members", "shadow-0", "shadow-1"]
