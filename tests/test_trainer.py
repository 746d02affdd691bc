import torch

from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.seeding import torch_generator
from synthbench.benchmark.trainer import evaluate, random_crop_flip, train_classifier


def test_crop_flip_shapes_and_content():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    y = random_crop_flip(x, 1, True, torch_generator(0))
    assert y.shape == x.shape
    assert torch.equal(random_crop_flip(x, 0, False, torch_generator(0)), x)


def test_training_is_seeded_and_learns(digits):
    preset = PRESETS["smoke"]
    cpu = torch.device("cpu")
    a = train_classifier(digits.train.images, digits.train.labels, 10, preset, 1, cpu, False, epochs=3)
    b = train_classifier(digits.train.images, digits.train.labels, 10, preset, 1, cpu, False, epochs=3)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    ev = evaluate(a, digits.test.images, digits.test.labels, 10, cpu)
    assert ev.top1 > 0.5  # chance is 0.1
    assert sum(map(sum, ev.confusion)) == len(digits.test)
    assert 0 < ev.stderr < 0.05
