"""Classifier architectures: a small fast CNN for the CPU presets and ResNet-18/50
from timm with a small-image stem (3x3 stride-1 first convolution, no max-pool),
the usual CIFAR adaptation used by Yamaguchi & Fukuda 2023 (arXiv 2311.13090,
Sec. 4.2) and Real-Fake (Yuan et al. 2024, arXiv 2310.10402).
``resnet50-224`` is Real-Fake's downstream classifier as its Appendix F
trains it: ResNet-50 with the standard ImageNet stem on images resized to
224x224 (Table 8), the input the ``paper-r50`` preset uses.

Every model exposes ``feature_map(x)`` (the last conv block: ResNet's block4),
``pooled(map)``, ``features(x)`` (penultimate activations, block4 after pooling)
and ``head(features)`` so analysis code (PCA, entropy,
feature-space metrics) can use any of them the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from synthbench.errors import UserError

ARCHITECTURES = ("smallcnn", "resnet18", "resnet50", "resnet50-224")


class SmallCNN(nn.Module):
    """Five conv-BN-ReLU blocks, two max-pools and a linear head: ~100k parameters,
    trains in seconds on 8x8 digits and in a minute or two per epoch-sweep on
    28x28 images on a CPU.

    The ReLU of the block before each pool runs after the pool instead. Max-pool
    and ReLU commute exactly (ReLU is monotone and both only select values, so
    the forward values and the gradients are the same bits), and after the pool
    the ReLU touches a quarter of the elements: a training step 1.04x faster in
    bf16 and 1.06x in fp32 (``fast`` fashion-mnist batch, one thread, 2-core
    Intel Xeon with AMX), with bitwise the same weights after 120 steps
    (``tests/test_classifiers.py`` checks the equality). The state dict's keys
    are those of the textbook order, so weights cached before load as they were."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 32):
        super().__init__()

        def block(cin: int, cout: int, relu: bool = True) -> nn.Sequential:
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
            return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))

        def pool_then_relu() -> nn.Sequential:
            return nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(inplace=True))

        self.body = nn.Sequential(
            block(in_chans, width), block(width, width, relu=False), pool_then_relu(),
            block(width, 2 * width), block(2 * width, 2 * width, relu=False), pool_then_relu(),
            block(2 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        self.num_features = 4 * width

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv block's output (the Grad-CAM target)."""
        return self.body(x)

    def pooled(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map -> penultimate features (global average pool)."""
        return self.pool(fmap).flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.feature_map(x))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TimmResNet(nn.Module):
    """A timm ResNet; ``feature_map`` is block4 (layer4). Without ``input_size``
    it has the small-image stem and sees images at their own size; with it, the
    standard ImageNet stem (7x7 stride-2 convolution and max-pool) on images
    resized bilinearly to ``input_size`` pixels."""

    def __init__(self, arch: str, in_chans: int, num_classes: int, input_size: int | None = None):
        super().__init__()
        import timm

        net = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)
        if input_size is None:
            net.conv1 = nn.Conv2d(in_chans, net.conv1.out_channels, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        self.net = net
        self.input_size = input_size
        self.num_features = net.num_features

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and x.shape[-2:] != (self.input_size, self.input_size):
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                          align_corners=False)
        return self.net.forward_features(x)

    def pooled(self, fmap: torch.Tensor) -> torch.Tensor:
        """block4's map -> penultimate features (timm's pooling head)."""
        return self.net.forward_head(fmap, pre_logits=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.feature_map(x))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.net.get_classifier()(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(arch: str, in_chans: int, num_classes: int) -> nn.Module:
    if arch == "smallcnn":
        return SmallCNN(in_chans, num_classes)
    if arch in ("resnet18", "resnet50"):
        return TimmResNet(arch, in_chans, num_classes)
    if arch == "resnet50-224":
        return TimmResNet("resnet50", in_chans, num_classes, input_size=224)
    raise UserError(f"Unknown classifier {arch!r}: choose one of {', '.join(ARCHITECTURES)}.")


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float in [-1, 1], the classifiers' input convention."""
    return images_uint8.float().div_(127.5).sub_(1.0)
