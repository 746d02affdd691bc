"""The ``paper-r50`` preset: Real-Fake's downstream classifier recipe (Yuan et al.
2024, arXiv 2310.10402, Appendix F, Table 8), selectable like any preset."""

import torch

from synthbench.benchmark.classifiers import build_classifier
from synthbench.benchmark.options import by_preset
from synthbench.benchmark.presets import PRESETS, STEP_DECAY, get_preset
from synthbench.benchmark.suite import load_suite


def test_preset_is_table_8():
    p = get_preset("paper-r50")
    assert (p.classifier, p.epochs, p.optimizer, p.lr, p.lr_schedule, p.lr_step_epochs) == \
        ("resnet50-224", 200, "sgd", 0.1, "step-x0.2", 50)
    # x0.2 at epochs 50, 100 and 150 of 200
    factors = [STEP_DECAY[p.lr_schedule] ** (e // p.lr_step_epochs) for e in (0, 49, 50, 100, 150, 199)]
    assert [round(f, 6) for f in factors] == [1.0, 1.0, 0.2, 0.04, 0.008, 0.008]


def test_resnet50_224_sees_224_pixels_with_the_imagenet_stem():
    net = build_classifier("resnet50-224", 3, 10).eval()
    assert net.net.conv1.kernel_size == (7, 7)
    seen = []
    net.net.conv1.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    with torch.no_grad():
        logits = net(torch.zeros(1, 3, 32, 32))
    assert logits.shape == (1, 10) and seen == [(224, 224)]


def test_protocol_defaults_follow_paper_for_its_variant():
    pick = by_preset(smoke=1, fast=2, paper=3)
    assert [pick(PRESETS[n]) for n in ("smoke", "fast", "paper", "paper-r50")] == [1, 2, 3, 3]


def test_shipped_suite_selects_it():
    suite = load_suite("configs/paper-r50-cifar10.yaml")
    assert suite.preset == "paper-r50" and "realfake" in suite.generators and "real" in suite.generators
