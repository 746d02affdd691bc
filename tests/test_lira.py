import numpy as np
import torch
from scipy.stats import norm

from synthbench.benchmark.lira import lira_scores, logit_confidence, paired_halves, roc_summary


def test_logit_confidence_matches_the_definition():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 2])
    p = logits.softmax(1).double()
    py = p[torch.arange(2), labels]
    expected = torch.log(py / (1 - py)).numpy()
    assert np.allclose(logit_confidence(logits, labels), expected)


def test_paired_halves_put_every_example_in_half_the_shadows():
    masks = paired_halves(11, 6, np.random.default_rng(0))
    assert masks.shape == (6, 11)
    assert np.all(masks.sum(0) == 3)
    assert np.all(masks[0] ^ masks[1])


def test_online_and_offline_scores_against_a_direct_computation():
    rng = np.random.default_rng(1)
    in_mask = paired_halves(5, 8, rng)
    shadow = rng.normal(size=(8, 5)) + 2.0 * in_mask
    target = rng.normal(size=5)
    online, offline = lira_scores(target, shadow, in_mask, fixed_variance=False)
    j = 3
    ins, outs = shadow[in_mask[:, j], j], shadow[~in_mask[:, j], j]
    direct_online = (norm.logpdf(target[j], ins.mean(), ins.std(ddof=1) + 1e-6)
                     - norm.logpdf(target[j], outs.mean(), outs.std(ddof=1) + 1e-6))
    direct_offline = -norm.logsf(target[j], outs.mean(), outs.std(ddof=1) + 1e-6)
    assert np.isclose(online[j], direct_online) and np.isclose(offline[j], direct_offline)


def test_attack_separates_when_members_are_more_confident():
    rng = np.random.default_rng(2)
    n, k = 400, 8
    in_mask = paired_halves(n, k, rng)
    shadow = rng.normal(size=(k, n)) + 3.0 * in_mask
    member = rng.random(n) < 0.5
    target = rng.normal(size=n) + 3.0 * member
    for scores in lira_scores(target, shadow, in_mask, fixed_variance=True):
        assert roc_summary(scores, member)["auc"] > 0.9
    noise = rng.normal(size=n)
    assert abs(roc_summary(noise, member)["auc"] - 0.5) < 0.1


def test_roc_summary_tpr_at_fpr():
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    member = np.array([1, 1, 0, 0, 0, 1], dtype=bool)
    summary = roc_summary(scores, member, fprs=(0.0, 0.34))
    # one false positive (0.7) is allowed at FPR 1/3, which lets 0.3 in as well
    assert summary["tpr@0"] == 2 / 3 and summary["tpr@0.34"] == 1.0


def test_roc_points_span_the_low_fpr_end_on_a_log_grid():
    import pytest

    from synthbench.benchmark.lira import roc_points

    member = np.array([True] * 500 + [False] * 500)
    perfect = roc_points(np.where(member, 1.0, 0.0), member)
    assert perfect["fpr"][0] == pytest.approx(1 / 500) and perfect["fpr"][-1] == 1.0
    assert all(t == 1.0 for t in perfect["tpr"])  # every member found before any false positive
    rng = np.random.default_rng(0)
    chance = roc_points(rng.random(1000), member)
    assert abs(chance["tpr"][-10] - chance["fpr"][-10]) < 0.1  # a coin flip sits on the diagonal
    assert chance["fpr"] == sorted(chance["fpr"]) and len(chance["fpr"]) <= 48


def test_multi_query_lira_averages_independent_per_query_scores():
    from synthbench.benchmark.lira import lira_scores_queries

    rng = np.random.default_rng(3)
    n, k = 30, 6
    in_mask = paired_halves(n, k, rng)
    shadow = rng.normal(size=(k, n)) + 1.5 * in_mask
    target = rng.normal(size=n)
    for fixed in (True, False):
        single = lira_scores(target, shadow, in_mask, fixed)
        # one query is the single-query attack bit for bit; repeating a query changes nothing
        for q in (1, 2, 3):
            many = lira_scores_queries(np.stack([target] * q), np.stack([shadow] * q), in_mask, fixed)
            same = np.array_equal if q < 3 else np.allclose  # (x + x + x) / 3 may round
            assert all(same(a, b) for a, b in zip(many, single)), q
        # two different queries: each with its own shadow statistics, the scores averaged
        shadow2, target2 = shadow * 2.0 + 1.0, target * 0.5
        both = lira_scores_queries(np.stack([target, target2]), np.stack([shadow, shadow2]), in_mask, fixed)
        second = lira_scores(target2, shadow2, in_mask, fixed)
        for got, a, b in zip(both, single, second):
            assert np.allclose(got, (a + b) / 2)
    import pytest

    with pytest.raises(ValueError):
        lira_scores_queries(target, shadow, in_mask, True)  # one query must still be [1, n]


def test_false_positives_allowed_match_the_roc_threshold():
    from synthbench.benchmark.lira import false_positives_allowed, roc_support

    for negatives in (1, 7, 100, 200, 999, 1000, 5000):
        for f in (0.001, 0.01, 0.07, 0.29, 0.5):
            brute = max(fp for fp in range(negatives + 1) if fp / negatives <= f)
            assert false_positives_allowed(f, negatives) == brute, (f, negatives)
    member = np.array([True] * 50 + [False] * 200)
    support = roc_support(member)
    assert support["negatives"] == 200
    assert support["false_positives_at@0.001"] == 0 and support["false_positives_at@0.01"] == 2
    assert len(support["notes"]) == 1 and support["notes"][0].startswith("tpr@0.001 rests on 0 false positives")
    assert "notes" not in roc_support(np.array([True] * 5 + [False] * 1000))
