"""``copies``: the copy check without refitting, for every generator; its rule
(``benchmark/nearest.py``, shared with ``mia``) on known data; and the board
flag it raises for a set of pre-generated samples that holds test images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthbench.benchmark import nearest
from synthbench.benchmark.nearest import copy_check
from synthbench.benchmark.sample_files import write_samples
from synthbench.benchmark.store import ResultStore
from synthbench.leaderboard.aggregate import build_tables, read_store
from synthbench.leaderboard.site import build_site
from synthbench.plugins import GENERATORS
from conftest import run_cells
from test_cli import run_cli

CLASSES = [str(i) for i in range(10)]


def test_the_rule_scores_fresh_samples_near_the_quantile_and_copies_at_one(monkeypatch):
    g = torch.Generator().manual_seed(0)
    refs, unseen, fresh = (torch.randn(n, 16, generator=g) for n in (400, 2000, 2000))
    near = refs[torch.randint(0, 400, (300,), generator=g)] + 1e-3 * torch.randn(300, 16, generator=g)
    q = 0.05
    fresh_check = copy_check(fresh, refs, unseen, q)
    assert abs(fresh_check.fraction - q) < 0.02  # fresh draws: the chance level
    copies = copy_check(near, refs, unseen, q)
    assert copies.fraction == 1.0 and copies.threshold == fresh_check.threshold
    brute = ((near[:, None, :].double() - refs[None].double()) ** 2).sum(-1).sqrt().min(1)
    assert torch.allclose(copies.distances, brute.values, rtol=0, atol=1e-9)
    assert torch.equal(copies.nearest, brute.indices)
    monkeypatch.setattr(nearest, "CHUNK", 64)  # chunks of another size: the same copies, to rounding
    again = copy_check(near, refs, unseen, q)
    assert again.fraction == copies.fraction and torch.equal(again.nearest, copies.nearest)
    images = (torch.arange(12, dtype=torch.uint8) * 20).reshape(3, 1, 2, 2)
    same = copy_check(images.flatten(1).double(), images.flatten(1).double(), images.flatten(1).double() + 9, q)
    assert same.exact_copies(images, images) == 3
    pairs = copies.closest_pairs(near, refs, torch.zeros(300, dtype=torch.long), 3, "member")
    assert len(pairs) == 3 and pairs[0]["distance"] <= pairs[1]["distance"] <= pairs[2]["distance"]
    assert set(pairs[0]) == {"distance", "synthetic", "member", "label"}


@pytest.fixture
def adversaries():
    from adversarial_adapters import CopyCat, Peeker

    for cls in (CopyCat, Peeker):
        GENERATORS.register(cls.name, cls)
    yield
    for cls in (CopyCat, Peeker):
        GENERATORS.unregister(cls.name)


def test_copies_runs_without_refitting_and_tells_memorisers_from_contaminated_sets(adversaries, smoke_digits,
                                                                                    tmp_path):
    cells = run_cells(smoke_digits, {"real": {}, "copycat": {}, "peeker": {}}, {"copies": {}}, [0],
                      ResultStore(tmp_path))
    recs = {c.record.spec.generator: c.record for c in cells}
    assert all(r.status.value == "ok" for r in recs.values()), {g: r.error for g, r in recs.items()}
    value = {g: {k: m["value"] for k, m in r.metrics.items()} for g, r in recs.items()}
    n_train = len(smoke_digits.train)
    # the oracle's samples are the train images: copies by construction, at chance against the test split
    assert value["real"]["copy_fraction_pixel"] == 1.0 and value["real"]["copy_fraction_feature"] == 1.0
    assert value["real"]["test_copy_fraction_pixel"] <= 0.01 and "oracle_note" in recs["real"].details
    assert recs["real"].details["exact_train_copies"] == n_train
    # a memoriser: every sample is a train image, none near a test image beyond chance
    assert value["copycat"]["copy_fraction_pixel"] == 1.0
    assert value["copycat"]["test_copy_fraction_pixel"] <= 0.05
    # samples that are test images: contaminated in both spaces, every one an exact copy
    assert value["peeker"]["test_copy_fraction_pixel"] == 1.0
    assert value["peeker"]["test_copy_fraction_feature"] == 1.0
    assert recs["peeker"].details["exact_test_copies"] == n_train
    pair = recs["peeker"].details["closest_test_pairs"][0]
    assert pair["distance"] < 1e-6 and pair["synthetic"] == pair["test"]
    for v in value.values():
        assert set(v) == {"copy_fraction_pixel", "copy_fraction_feature", "test_copy_fraction_pixel",
                          "test_copy_fraction_feature"}


def test_a_sample_set_holding_test_images_is_flagged_contaminated_on_every_table(smoke_digits, tmp_path, capsys):
    """The case ``mia`` cannot reach: pre-generated samples (it would have to
    refit them). Three in four of each class's images are real test images, the
    rest real train images."""
    test, train = smoke_digits.test, smoke_digits.train
    x, y = [], []
    for c in range(10):
        per = int((train.labels == c).sum())
        t = test.images[test.labels == c].numpy()
        r = train.images[train.labels == c].numpy()
        x += [t[: 3 * per // 4], r[: per - 3 * per // 4]]
        y += [np.full(per, c)]
    src = write_samples(tmp_path / "leaky.npz", "npz", np.concatenate(x), np.concatenate(y), CLASSES)
    code, out, err = run_cli(["evaluate", "-g", f"samples:{src}", "-p", "replace,copies", "--preset", "smoke",
                              "--seeds", "1", "--results", str(tmp_path / "runs"), "-q"], capsys)
    assert code == 0, err
    assert "flag: samples (label=leaky) on digits contaminated: " in out  # said at the terminal too
    assert "not checked for copies" not in out
    tables = {t.protocol: t for t in build_tables(read_store(tmp_path / "runs").records)}
    for protocol in ("replace", "copies"):
        row = next(r for r in tables[protocol].rows if r.generator == "samples")
        assert row.flags and row.flags[0].startswith("contaminated"), (protocol, row.flags)
        assert "copies copy check against the test split" in row.flags[0]
        assert row.stats["top1" if protocol == "replace" else "test_copy_fraction_pixel"].mark == ""
    build_site(tmp_path / "runs", tmp_path / "site")  # the closest test pairs are drawn for the reader to judge
    (pairs,) = (tmp_path / "site").rglob("samples*-test-pairs.png")
    assert pairs.stat().st_size > 0 and "contaminated" in (tmp_path / "site" / "index.html").read_text()


def test_contamination_is_flagged_from_a_tenth_and_memorisation_from_half():
    from test_leaderboard import make_record

    from synthbench.leaderboard.aggregate import memorisation_flags

    def flags(protocol, **fractions):
        rec = make_record("g", protocol, 0, {k: (v, None, False) for k, v in fractions.items()})
        return " ".join(f for fs in memorisation_flags([rec]).values() for f in fs)

    assert flags("copies", test_copy_fraction_pixel=0.12).startswith("contaminated: 12%")
    assert "copies copy check" in flags("copies", test_copy_fraction_feature=0.12)
    assert "mia copy check" in flags("mia", test_copy_fraction_pixel=0.12)
    assert flags("copies", test_copy_fraction_pixel=0.03, test_copy_fraction_feature=0.022) == ""
    assert flags("copies", copy_fraction_pixel=0.3) == ""  # a little memorisation: a fifth, like realfake's
    assert flags("copies", copy_fraction_pixel=0.6).startswith("memorises: 60%")
    assert flags("replace", test_copy_fraction_pixel=0.9) == ""  # only the copy checks raise flags


def test_samples_run_without_copies_are_told_how_to_check_them():
    from types import SimpleNamespace

    from synthbench.cli import copy_notes

    def cell(generator, protocol, options=None):
        return SimpleNamespace(spec=SimpleNamespace(generator=generator, protocol=protocol,
                                                    generator_options=options or {}), record=None)

    (note,) = copy_notes([cell("samples", "replace", {"label": "mine"}), cell("edm", "replace")])
    assert note.startswith("note: samples (label=mine) not checked for copies") and "-p copies" in note
    checked = [cell("samples", "replace", {"label": "mine"}), cell("samples", "copies", {"label": "mine"})]
    assert copy_notes(checked) == []
    assert copy_notes([cell("edm", "replace")]) == []
