"""The corruption suite's constant sets: CIFAR-10-C's for small images, ImageNet-C's
for large ones, named in the ood record."""

import torch

from synthbench.benchmark.corruptions import CONSTANTS, CORRUPTIONS, SEVERITIES, constants_for, corrupt


def test_every_corruption_has_five_constants_in_both_sets():
    for name, table in CONSTANTS.items():
        assert set(table) == set(CORRUPTIONS), name
        assert all(len(v) == len(SEVERITIES) for v in table.values()), name


def test_cifar_c_constants_are_hendrycks_and_dietterichs():
    # the values of the CIFAR-10-C generation script (Hendrycks & Dietterich 2019, arXiv 1903.12261)
    c = CONSTANTS["cifar-c"]
    assert c["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert c["shot_noise"] == (500, 250, 100, 75, 50)
    assert c["impulse_noise"] == (0.01, 0.02, 0.03, 0.05, 0.07)
    assert c["contrast"] == (0.75, 0.5, 0.4, 0.3, 0.15)
    assert c["brightness"] == (0.05, 0.1, 0.15, 0.2, 0.3)
    assert c["jpeg"] == (80, 65, 58, 50, 40)
    assert c["pixelate"] == (0.95, 0.9, 0.85, 0.75, 0.65)
    assert CONSTANTS["imagenet-c"]["gaussian_noise"] == (0.08, 0.12, 0.18, 0.26, 0.38)


def test_set_follows_image_size():
    assert [constants_for(s) for s in (8, 28, 32, 64, 224)] == ["cifar-c"] * 3 + ["imagenet-c"] * 2


def test_default_set_is_the_sized_one_and_sets_differ():
    x = torch.randint(0, 256, (6, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for kind in CORRUPTIONS:
        assert torch.equal(corrupt(x, kind, 3), corrupt(x, kind, 3, "cifar-c")), kind
    # ImageNet-C's noise is stronger than CIFAR-C's at the same severity
    gap = {name: (corrupt(x, "gaussian_noise", 1, name).float() - x.float()).abs().mean() for name in CONSTANTS}
    assert gap["imagenet-c"] > gap["cifar-c"]
