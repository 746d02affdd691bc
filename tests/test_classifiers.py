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
