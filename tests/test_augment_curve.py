"""augment's replacement curve (option ``replace_fractions``, Basu, Karanam &
Ramadwar, "Exploring Synthetic Data Generation using Diffusion Models", Table 4):
parsing, nested draws, unchanged single-fraction sets, and a smoke cell."""

from __future__ import annotations

import pytest
import torch

from synthbench.benchmark.context import CellContext
from synthbench.benchmark.datasets import Split
from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.sample_cache import SampleCache
from synthbench.benchmark.seeding import derive_seed, torch_generator
from synthbench.benchmark.store import ResultStore
from synthbench.errors import UserError
from synthbench.plugins import PROTOCOLS
from synthbench.protocols.augment import augmented_train_set, augmented_train_sets

from conftest import fit_generator, run_cells

CPU = torch.device("cpu")


def _opts(**given):
    return resolve_options(PROTOCOLS.get("augment").options, given, "augment")


@pytest.mark.parametrize("text, want", [("0.02,0.04,0.08,0.12", (0.02, 0.04, 0.08, 0.12)), ("", ()), (" ", ()),
                                        ("0.1", (0.1,)), ("0,0.5", (0, 0.5))])
def test_replace_fractions_parse(text, want):
    assert _opts(replace_fractions=text)["replace_fractions"] == want


@pytest.mark.parametrize("bad", ["1", "-0.1", "0.1,0.1", "a", "0.1,nan", "1.5"])
def test_bad_replace_fractions(bad):
    with pytest.raises(UserError):
        _opts(replace_fractions=bad)


def test_declaration_and_pool_size():
    cls = PROTOCOLS.get("augment")
    assert cls.version == 2 and cls.declared("top1_r0.02") == "top1_r{f}" and cls.metrics["top1_r{f}"] is True
    assert cls.declared("top1") == "top1"
    default = cls(**_opts())
    assert default.opts["replace_fractions"] == () and default.table_metrics() == ["top1", "worst_class_acc"]
    assert default.sample_pool_size(1000, None) == 1000
    curve = cls(**_opts(ratio="0", replace_fraction="0.05", replace_fractions="0.12,0.02,0.04"))
    assert curve.table_metrics() == ["top1", "worst_class_acc", "top1_r0.02", "top1_r0.04", "top1_r0.12"]
    assert curve.sample_pool_size(1000, None) == 120  # the largest fraction, not replace_fraction
    assert cls(**_opts(replace_fraction="0.3", replace_fractions="0.1")).sample_pool_size(1000, None) == 1300


def _old_augmented_train_set(ctx, ratio, replace_fraction):
    """augment v1's training set, verbatim: the single-fraction set must not change."""
    real = ctx.dataset.train
    n_real = len(real)
    n_add = int(round(ratio * n_real))
    n_swap = int(round(replace_fraction * n_real))
    synth = ctx.synthetic(n_add + n_swap)
    keep = torch.ones(n_real, dtype=torch.bool)
    swapped = Split(synth.images[:0], synth.labels[:0])
    if n_swap:
        gen = torch_generator(derive_seed("augment-replace", ctx.seed))
        order = torch.randperm(n_real, generator=gen)
        swapped = synth.subset(slice(n_add, n_add + n_swap))
        for label in swapped.labels.tolist():
            pos = order[(real.labels[order] == label) & keep[order]][0]
            keep[pos] = False
    added = synth.subset(slice(0, n_add))
    train = Split(torch.cat([real.images[keep], swapped.images, added.images]),
                  torch.cat([real.labels[keep], swapped.labels, added.labels]))
    return train, n_add, n_swap


@pytest.fixture(scope="module")
def edm_ctx(smoke_digits, session_cache, tmp_path_factory):
    gen = fit_generator("edm", smoke_digits, session_cache, eval_batch="64")
    cache = tmp_path_factory.mktemp("augment-curve")
    return CellContext(dataset=smoke_digits, generator=gen, preset=PRESETS["smoke"], seed=0, device=CPU,
                       options={}, samples=SampleCache(cache), cache_dir=cache)


def test_curve_sets_are_nested_and_match_the_single_fraction_sets(edm_ctx, smoke_digits):
    real = smoke_digits.train
    n = len(real)
    fractions = [0.02, 0.05, 0.1, 0.2]
    for ratio in (0.0, 0.5):
        sets = augmented_train_sets(edm_ctx, ratio, fractions)
        assert len(sets) == len(fractions)
        n_add = round(ratio * n)
        largest = sets[-1]
        for f, (train, added, swapped, replaced) in zip(fractions, sets):
            assert added == n_add and swapped == round(f * n) == len(replaced)
            assert len(train) == n + n_add  # ratio 0: Basu et al.'s constant size
            # nested: the real images replaced at f are the first replaced at the largest fraction
            assert torch.equal(replaced, largest[3][:swapped])
            assert len(set(replaced.tolist())) == swapped
            # class balance unchanged by the replacement
            assert torch.equal(torch.bincount(train.labels[:n], minlength=10), torch.bincount(real.labels, minlength=10))
            # the swapped-in synthetic images are a prefix of the largest fraction's
            kept = n - swapped
            assert torch.equal(train.images[kept:kept + swapped], largest[0].images[n - largest[2]:][:swapped])
            # the added synthetic images are the same for every fraction
            assert torch.equal(train.images[n:], largest[0].images[n:])
            # each curve point is exactly the set replace_fraction=f trains on (the v1 function)
            old, old_add, old_swap = _old_augmented_train_set(edm_ctx, ratio, f)
            assert torch.equal(train.images, old.images) and torch.equal(train.labels, old.labels)
            assert (old_add, old_swap) == (added, swapped)


@pytest.mark.parametrize("ratio, fraction", [(1.0, 0.0), (0.5, 0.1), (0.0, 0.12)])
def test_single_fraction_set_is_unchanged(edm_ctx, ratio, fraction):
    """What existing cells (and ood, ratio 1 and no replacement) train on."""
    new = augmented_train_set(edm_ctx, ratio, fraction)
    old = _old_augmented_train_set(edm_ctx, ratio, fraction)
    assert torch.equal(new[0].images, old[0].images) and torch.equal(new[0].labels, old[0].labels)
    assert new[1:] == old[1:]


def test_augment_cell_reports_the_curve(smoke_digits, tmp_path):
    n = len(smoke_digits.train)
    fractions = "0.12,0.02,0.04,0.08"
    (cell,) = run_cells(smoke_digits, ["real"], {"augment": {"ratio": "0", "replace_fraction": "0.04",
                                                             "replace_fractions": fractions}}, [0],
                        ResultStore(tmp_path))
    rec = cell.record
    assert rec.status == "ok", rec.traceback
    curve = rec.details["replace_curve"]
    assert curve["fractions"] == [0.02, 0.04, 0.08, 0.12]
    assert len(curve["top1"]) == len(curve["real_replaced"]) == len(curve["train_size"]) == 4
    assert curve["real_replaced"] == [round(f * n) for f in curve["fractions"]]
    assert curve["train_size"] == [n] * 4  # ratio 0: partial replacement at constant size
    for f, acc in zip(curve["fractions"], curve["top1"]):
        m = rec.metrics[f"top1_r{f}"]
        assert m["value"] == acc and m["higher_is_better"] is True and m["n"] == len(smoke_digits.test)
    # the headline is the replace_fraction classifier, here the curve's 0.04 point
    assert rec.metrics["top1"] == rec.metrics["top1_r0.04"]
    assert rec.details["real_replaced"] == round(0.04 * n) and rec.details["train_size"] == n


def test_the_board_draws_the_replacement_curve(tmp_path):
    """A row whose records hold ``replace_curve`` gets its figure: accuracy against
    the fraction replaced, without the size columns."""
    from synthbench.leaderboard.site import ROW_FIGURES

    draw = next(f[4] for f in ROW_FIGURES if f[0] == "replace-curve")
    details = [{"replace_curve": {"fractions": [0.02, 0.04, 0.08], "top1": [0.9, 0.89, 0.87 + s / 100],
                                  "real_replaced": [7, 14, 28], "train_size": [359] * 3}} for s in range(3)]
    path = draw(details, tmp_path / "c.svg", [])
    text = path.read_text()
    assert path.exists() and "fractions" in text and "train_size" not in text
    assert draw([{}], tmp_path / "none.svg", []) is None
