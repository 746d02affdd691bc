import pytest
import torch

from synthbench.generators.distribution_matching import distribution_matching_loss


def test_eq21_against_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    target, pred = torch.randn(6, 2, 3, 3, generator=g), torch.randn(6, 2, 3, 3, generator=g)
    total, simple, dm = distribution_matching_loss(target, pred, gamma=0.05)
    r = (target - pred).reshape(6, -1)
    direct_simple = sum(float((r[i] ** 2).sum()) for i in range(6)) / (6 * 18)
    mean_r = r.sum(0) / 6
    direct_dm = float((mean_r ** 2).sum()) / 18
    assert float(simple) == pytest.approx(direct_simple, rel=1e-6)
    assert float(dm) == pytest.approx(direct_dm, rel=1e-6)
    assert float(total) == pytest.approx(direct_simple + 0.05 * direct_dm, rel=1e-6)


def test_the_mmd_term_is_bounded_by_the_simple_loss_and_sees_a_shared_bias():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(64, 4, generator=g)
    noisy = target + torch.randn(64, 4, generator=g)   # zero-mean errors: the means agree
    biased = target + 0.5                              # every prediction off the same way
    _, s1, d1 = distribution_matching_loss(target, noisy, 1.0)
    _, s2, d2 = distribution_matching_loss(target, biased, 1.0)
    assert d1 <= s1 and d2 <= s2 + 1e-6   # Jensen (Eq. 7)
    assert d1 < 0.1 * s1                  # independent errors mostly cancel in the mean
    assert float(d2) == pytest.approx(float(s2))  # a shared bias does not


def test_weights_scale_both_terms_and_gamma_zero_is_the_plain_loss():
    target, pred = torch.zeros(2, 3), torch.ones(2, 3)
    total, simple, dm = distribution_matching_loss(target, pred, 0.0, weight=torch.tensor([4.0, 4.0]))
    assert float(total) == float(simple) == 4.0 and float(dm) == 4.0
    with pytest.raises(ValueError):
        distribution_matching_loss(torch.zeros(2, 3), torch.zeros(3, 2), 0.1)


def test_realfake_sd_options_reach_the_config():
    """``snr_gamma`` and ``lora_rank`` are settable from the ``realfake`` options;
    the defaults are the released scripts' rank 4 and no min-SNR weighting."""
    from synthbench.generators.realfake import RealFakeGenerator
    from synthbench.generators.realfake_sd import RealFakeSDConfig

    defaults = {name: o.default for name, o in RealFakeGenerator.options.items()}
    cfg = RealFakeSDConfig.from_opts(defaults)
    assert (cfg.lora_rank, cfg.snr_gamma) == (4, None)
    cfg = RealFakeSDConfig.from_opts({**defaults, "snr_gamma": 0.75, "lora_rank": 8})
    assert (cfg.lora_rank, cfg.snr_gamma) == (8, 0.75)
