import pytest
import torch

from synthbench.benchmark.classifiers import build_classifier
from synthbench.errors import UserError


@pytest.mark.parametrize("arch", ["smallcnn", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_classifiers_take_small_images(arch, shape):
    model = build_classifier(arch, shape[0], 10).eval()
    x = torch.zeros(2, *shape)
    feats = model.features(x)
    assert feats.shape == (2, model.num_features)
    assert model(x).shape == (2, 10)
    assert torch.allclose(model.head(feats), model(x))
    # the small-image stem keeps spatial resolution: block4 of a 32x32 input is 4x4
    if arch == "resnet18" and shape[-1] == 32:
        assert model.feature_map(x).shape[-1] == 4


def test_unknown_classifier():
    with pytest.raises(UserError, match="smallcnn"):
        build_classifier("vgg", 1, 10)


@pytest.mark.parametrize("bf16", [False, True])
def test_smallcnn_relu_after_the_pool_is_the_textbook_order_bit_for_bit(bf16):
    """SmallCNN runs the ReLU of the block before each max-pool after the pool
    (a quarter of the elements): its forward values, gradients and AdamW steps
    must be the bits of conv-BN-ReLU-pool, in fp32 and in bf16 channels_last,
    and its state dict must keep the textbook keys (weights cached before load)."""
    import copy

    import torch.nn as nn
    import torch.nn.functional as F

    from synthbench.benchmark.classifiers import SmallCNN

    torch.manual_seed(0)
    ours = SmallCNN(1, 10, width=8)
    textbook = copy.deepcopy(ours)
    for i in (1, 4):  # the blocks before the pools: ReLU back in the block, the pool alone
        textbook.body[i].append(nn.ReLU(inplace=True))
        textbook.body[i + 1] = textbook.body[i + 1][0]
    assert [type(m).__name__ for m in textbook.body[1]] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert ours.state_dict().keys() == textbook.state_dict().keys()
    opts = [torch.optim.AdamW(m.parameters(), lr=3e-3) for m in (ours, textbook)]
    gen = torch.Generator().manual_seed(1)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    for _ in range(3):
        x = torch.randn(16, 1, 28, 28, generator=gen).contiguous(memory_format=layout)
        y = torch.randint(10, (16,), generator=gen)
        logits = []
        for model, opt in zip((ours, textbook), opts):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
            F.cross_entropy(out.float(), y).backward()
            opt.step()
            opt.zero_grad()
            logits.append(out)
        assert torch.equal(*logits)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), textbook.state_dict().values()))
