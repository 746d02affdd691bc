import torch

from synthbench.benchmark.gradcam import fixed_indices, grad_cam, gradcam_details

CPU = torch.device("cpu")


def test_fixed_indices_take_the_first_image_of_each_class():
    labels = torch.tensor([2, 0, 0, 1, 2, 1])
    assert fixed_indices(labels, 3) == [1, 3, 0]
    assert fixed_indices(labels, 3, per_class=2) == [1, 2, 3, 5, 0, 4]


def test_grad_cam_maps_are_normalised_and_deterministic(digits, reference_classifier):
    test = digits.test
    details = gradcam_details(reference_classifier, test.images, test.labels, 10, CPU)
    maps = torch.tensor(details["maps"])
    assert maps.shape == (10, 8, 8)
    assert maps.min() >= 0 and torch.allclose(maps.flatten(1).max(1).values, torch.ones(10), atol=1e-3)
    before = [None if p.grad is None else p.grad.clone() for p in reference_classifier.parameters()]
    assert details == gradcam_details(reference_classifier, test.images, test.labels, 10, CPU)
    # gradients are taken w.r.t. the feature map only: the parameters' .grad is untouched
    after = [p.grad for p in reference_classifier.parameters()]
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before, after))


class _LinearOnPixels(torch.nn.Module):
    """A model whose Grad-CAM is known in closed form: the feature map is the
    input itself (one channel), pooled by the mean, and class c's logit is
    w_c * mean(x). Grad-CAM's weight is then w_c / (H W) and the map
    ReLU(w_c x) up to scale: the bright pixels for w_c > 0, the dark ones for
    w_c < 0 (inputs live in [-1, 1])."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[1.0], [-1.0]]))

    def feature_map(self, x):
        return x

    def pooled(self, fmap):
        return fmap.mean(dim=(2, 3))

    def head(self, f):
        return f @ self.w.T


def test_grad_cam_matches_its_closed_form():
    img = torch.zeros(1, 1, 6, 6, dtype=torch.uint8)
    img[0, 0, 1:3, 2:5] = 255
    bright = (img[0, 0] == 255).float()
    model = _LinearOnPixels()
    pos = grad_cam(model, img, torch.tensor([0]), CPU)[0]
    neg = grad_cam(model, img, torch.tensor([1]), CPU)[0]
    assert torch.allclose(pos, bright, atol=1e-6)
    assert torch.allclose(neg, 1 - bright, atol=1e-6)
