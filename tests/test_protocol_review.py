"""Bugs found by the protocols review (synthbench/protocols and what they use),
each test failing on the code before its fix."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthbench.benchmark.datasets import Split
from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.errors import UserError
from synthbench.plugins import PROTOCOLS


def _step_preset():
    """The smoke preset with the paper presets' step schedule (x0.1 every 2 of 4 epochs)."""
    return dataclasses.replace(PRESETS["smoke"], lr_schedule="step", epochs=4, lr_step_epochs=2, batch_size=10,
                               optimizer="sgd", lr=0.01)


def _learning_rates(monkeypatch, **kwargs) -> list[float]:
    """Every learning rate a tiny training run steps through."""
    from synthbench.benchmark import trainer

    seen: list[float] = []
    step = torch.optim.lr_scheduler.LambdaLR.step

    def recording(self, *a, **k):
        step(self, *a, **k)
        seen.append(round(self.get_last_lr()[0], 9))

    monkeypatch.setattr(torch.optim.lr_scheduler.LambdaLR, "step", recording)
    gen = torch.Generator().manual_seed(0)
    n = kwargs.pop("n")
    x = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=gen)
    trainer.train_classifier(x, torch.arange(n) % 10, 10, _step_preset(), 0, torch.device("cpu"), False, **kwargs)
    return seen


def test_trainer_step_schedule_decays_at_the_given_period(monkeypatch):
    real = list(_learning_rates(monkeypatch, n=100))  # 4 epochs x 10 steps, x0.1 at steps 20 and 40
    assert sorted(set(real), reverse=True) == [0.01, 0.001, 0.0001]
    # x5 the images at the real run's 40 steps: lr_step_epochs epochs of them are 100 steps, beyond the budget
    monkeypatch.undo()
    bigger = _learning_rates(monkeypatch, n=500, max_steps=40, lr_step=20)
    assert bigger == real


def test_scaleup_steps_budget_decays_at_the_real_runs_steps():
    """scaleup budget=steps on a step-schedule preset (paper, paper-r50): every
    multiple's classifier got the real run's step count but kept its own
    lr_step_epochs epochs as the decay period, 10x the steps at x10, so past x1
    the rate never decayed (paper: lr 0.01 throughout, where the real run decays
    at epochs 30, 60, 90)."""
    cls = PROTOCOLS.get("scaleup")
    proto = cls(**resolve_options(cls.options, {"multiples": "1,5", "budget": "steps"}, "scaleup"))
    preset = dataclasses.replace(PRESETS["paper"], batch_size=10)
    train = Split(torch.zeros(100, 1, 8, 8, dtype=torch.uint8), torch.arange(100) % 10)
    asked = []
    ev = SimpleNamespace(top1=0.5, n=10, per_class=[0.5] * 10, metric=lambda: {"value": 0.5})

    def synthetic(n, **_):
        return Split(torch.zeros(n, 1, 8, 8, dtype=torch.uint8), torch.arange(n) % 10)

    ctx = SimpleNamespace(dataset=SimpleNamespace(train=train), preset=preset, seed=0,
                          generator=SimpleNamespace(name="g", pool_limit=lambda labels: None),
                          synthetic=synthetic, reference_classifier=lambda: None, evaluate=lambda model: ev,
                          train=lambda split, desc, **kw: asked.append((len(split), kw)))
    proto.run(ctx)
    steps_per_epoch = 10
    want = {"max_steps": preset.epochs * steps_per_epoch, "lr_step": preset.lr_step_epochs * steps_per_epoch}
    assert asked == [(100, want), (500, want)]


@pytest.mark.parametrize("text", ["x", ",", "1,1", "7,x"])
def test_longtail_bad_target_classes_are_refused_before_the_cell(text):
    """target_classes=x (or ',') failed the cell with 'ValueError: invalid literal
    for int()' and stored a failed record; 1,1 ran and counted class 1 twice in
    targeted_target_acc. Now an option error (exit 2) before anything runs."""
    cls = PROTOCOLS.get("longtail")
    with pytest.raises(UserError, match="distinct class indices"):
        resolve_options(cls.options, {"target_classes": text}, "longtail")
    for good in ("", "7,8,9", " 0 , 3"):
        resolve_options(cls.options, {"target_classes": good}, "longtail")


def test_recon_test_images_that_take_no_image_are_refused(smoke_digits):
    """recon test_images=1 on digits: the class-stratified subset takes round(36 /
    359) = 0 images of each class, and the cell failed at its first t_re > 0 with
    'ValueError: no images to evaluate' after reconstructing the train split."""
    cls = PROTOCOLS.get("recon")
    proto = cls(**resolve_options(cls.options, {"test_images": "1"}, "recon"))
    ctx = SimpleNamespace(dataset=smoke_digits, preset=PRESETS["smoke"])
    with pytest.raises(UserError, match="test_images=1 takes no test image"):
        proto._entropy_test_index(ctx)
    ten = cls(**resolve_options(cls.options, {"test_images": "10"}, "recon"))._entropy_test_index(ctx)
    assert len(ten) == 10


def test_ood_folder_reads_class_folders_as_samples_folders_name_them(tmp_path):
    """ood_folder looked for PATH/<class name>/ only: Fashion-MNIST's T-shirt/top
    was looked for as the nested PATH/T-shirt/top, so its T-shirt_top folder (the
    file-safe name export-samples writes and samples: reads) and an index folder
    (2) were skipped without a word and the shifted accuracy left those classes out."""
    from PIL import Image

    from synthbench.protocols.ood import load_ood_folder

    names = ["T-shirt/top", "Trouser", "Pullover"]
    for value, folder in enumerate(["T-shirt_top", "Trouser", "2", "not-a-class"]):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((28, 28), value, np.uint8)).save(tmp_path / folder / "a.png")
    images, labels = load_ood_folder(tmp_path, names, (1, 28, 28))
    assert labels.tolist() == [0, 1, 2]
    assert images[:, 0, 0, 0].tolist() == [0, 1, 2]


def test_longtail_refuses_an_unconditional_generator():
    """ddpm conditional=false x longtail (smoke digits) ran: its pseudo-labelled
    top-up gave the 'balanced' arm class counts [46, 34, 30, 22, 25, 17, 16, 10, 171,
    29] instead of 40 each, and the 'targeted' arm added 25, 166, 4 images to
    classes 9, 8, 7 instead of their deficits 34, 35, 36. Refused now: before the
    fit when an option makes it unconditional, in run when only the fit tells."""
    from synthbench.errors import Unsupported
    from synthbench.plugins import GENERATORS

    proto = PROTOCOLS.get("longtail")(**resolve_options(PROTOCOLS.get("longtail").options, {}, "longtail"))
    ddpm = GENERATORS.get("ddpm")
    assert "unconditional" in proto.unsupported_reason(ddpm(**resolve_options(ddpm.options, {"conditional": "false"},
                                                                               "ddpm")))
    assert proto.unsupported_reason(ddpm(**resolve_options(ddpm.options, {}, "ddpm"))) is None
    fitted_unconditional = SimpleNamespace(name="pickle", oracle=False, conditional=False, opts={},
                                           unconditional_by_options=lambda options: False)  # no option says so
    with pytest.raises(Unsupported, match="unconditional"):
        proto.run(SimpleNamespace(generator=fitted_unconditional))


def test_augment_replacement_with_pseudo_labels_that_outnumber_a_class_is_a_clear_error():
    """ddpm conditional=false x augment ratio=0 replace_fraction=0.9 (smoke digits)
    failed the cell with 'IndexError: index 0 is out of bounds for dimension 0 with
    size 0': 247 of the 360 pseudo-labelled replacements were 8s, and the split
    holds 40. Now a UserError naming the class and the counts."""
    from synthbench.protocols.augment import augmented_train_sets

    train = Split(torch.zeros(20, 1, 8, 8, dtype=torch.uint8), torch.arange(20) % 2)  # 10 of each class
    ctx = SimpleNamespace(dataset=SimpleNamespace(train=train, class_names=["a", "b"]), seed=0,
                          generator=SimpleNamespace(name="uncond"),
                          synthetic=lambda n: Split(torch.ones(n, 1, 8, 8, dtype=torch.uint8),
                                                    torch.ones(n, dtype=torch.long)))  # every sample a 'b'
    assert augmented_train_sets(ctx, 0.0, [0.5])[0][2] == 10  # 10 'b's replace the 10 real ones
    with pytest.raises(UserError, match="12 of them labelled 'b'.*holds only 10"):
        augmented_train_sets(ctx, 0.0, [0.6])


def test_ood_folder_refuses_a_16_bit_image_instead_of_clipping_it_white(tmp_path):
    """A 16-bit grey PNG in ood_folder went through Pillow's convert('L'), which
    clips each 16-bit value to 255: a gradient 0..65535 came out 99.6% white and
    was scored as a shifted test image. It is refused now, as samples: refuses it."""
    from PIL import Image

    from synthbench.protocols.ood import load_ood_folder

    (tmp_path / "0").mkdir()
    Image.fromarray((np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)).save(tmp_path / "0" / "a.png")
    with pytest.raises(UserError, match=r"ood_folder: .*a\.png is a I;16 image"):
        load_ood_folder(tmp_path, [str(i) for i in range(10)], (1, 8, 8))


def test_pixelate_severities_at_8_px_are_as_documented(digits):
    """The corruption module's docstring says which pixelate severities coincide on
    digits (int(8 c) = 7, 7, 6, 6, 5 px) and that 28 px keeps all five apart."""
    from synthbench.benchmark.corruptions import corrupt

    x = digits.test.images[:50]
    p = [corrupt(x, "pixelate", s) for s in range(1, 6)]
    same = [[bool(torch.equal(a, b)) for b in p] for a in p]
    assert same[0][1] and same[2][3] and not same[1][2] and not same[3][4]
    big = torch.nn.functional.interpolate(x.float(), size=(28, 28)).round().to(torch.uint8)
    q = [corrupt(big, "pixelate", s) for s in range(1, 6)]
    assert not any(torch.equal(q[i], q[j]) for i in range(5) for j in range(i + 1, 5))


def test_lira_with_two_shadows_has_a_variance():
    """shadows=2 (allowed, and what the tests and a quick run use) gives each
    example one IN and one OUT shadow: the fixed variance, pooled about each
    example's own mean, was 0, so every Gaussian was eps = 1e-6 wide; offline
    scores reached 1e13 and tied at exactly 0 for every example below its OUT
    mean (29% of a simulated set). Now the side's overall spread, as Carlini et
    al.'s reference code takes it; 4 shadows and more are bit for bit as before."""
    from synthbench.benchmark.lira import lira_scores, paired_halves

    rng = np.random.default_rng(0)
    n = 500
    base, gap = rng.normal(0, 1, n), rng.uniform(0, 3, n)
    member = rng.random(n) < 0.5
    target = base + gap * member + rng.normal(0, 0.5, n)
    mask = paired_halves(n, 2, np.random.default_rng(1))
    shadow = base + gap * mask + rng.normal(0, 0.5, (2, n))
    online, offline = lira_scores(target, shadow, mask, fixed_variance=True)
    assert np.isfinite(online).all() and np.abs(offline).max() < 1e3
    assert (offline == 0).mean() < 0.01
    with pytest.raises(ValueError, match="two IN and two OUT"):
        lira_scores(target, shadow, mask, fixed_variance=False)


def test_mia_refuses_per_example_variances_from_two_shadows(smoke_digits):
    cls = PROTOCOLS.get("mia")
    proto = cls(**resolve_options(cls.options, {"shadows": "2", "fixed_variance": "false"}, "mia"))
    ctx = SimpleNamespace(dataset=smoke_digits, preset=PRESETS["smoke"], generator=SimpleNamespace(refits=True))
    with pytest.raises(UserError, match="shadows=4 or more"):
        proto.run(ctx)


def test_nearer_member_fraction_is_best_at_one_half():
    """mia's nearer_member_fraction_* was declared lower-is-better: the published
    fashion-mnist mia table starred stylegan3's pixel fraction 0.4389 ± 0.0228 as
    best, against edm's 0.4991, which is where a generator that keeps nothing of
    its members sits; below 0.5 means samples nearer the non-members, not less
    leakage. Declared closest-to-0.5 now (records unchanged)."""
    from synthbench.benchmark.metrics import Target, distance

    rules = PROTOCOLS.get("mia").metrics
    for space in ("pixel", "feature"):
        rule = rules[f"nearer_member_fraction_{space}"]
        assert rule == Target(0.5)
        assert distance(rule, 0.4991) < distance(rule, 0.5213) < distance(rule, 0.4389)


def _ood_ctx(test, model, cache_dir):
    import contextlib

    return SimpleNamespace(dataset=SimpleNamespace(test=test, train=test, image_shape=tuple(test.images.shape[1:]),
                                                   class_names=[str(i) for i in range(10)]),
                           synthetic=lambda n: test, reference_classifier=lambda: model,
                           train=lambda split, desc: model, generator=SimpleNamespace(name="g"), seed=0,
                           device=torch.device("cpu"), cache_dir=cache_dir,
                           phase=lambda *a, **k: contextlib.nullcontext())


def test_ood_holds_one_shifted_test_set_at_a_time(tmp_path, monkeypatch):
    """ood corrupted the whole suite (8 types x 5 severities) up front and kept all
    40 shifted copies of the test split for the next arm: on a 2,000-image 3 x 64 x
    64 split the run's peak memory grew 1,908 MiB (a 3 x 224 x 224 split of 10,000
    would hold 60 GB). Now each set is made, scored and dropped."""
    import weakref

    from synthbench.benchmark.trainer import init_model
    from synthbench.protocols import ood

    made: list = []
    corrupt = ood.corrupt

    def tracked(images, kind, severity):
        assert all(ref() is None for ref in made), "an earlier shifted set is still held"
        out = corrupt(images, kind, severity)
        made.append(weakref.ref(out))
        return out

    monkeypatch.setattr(ood, "corrupt", tracked)
    monkeypatch.setattr(ood, "augmented_train_set", lambda ctx, ratio, fraction: (ctx.dataset.train, 0, 0))
    test = Split(torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)),
                 torch.arange(20) % 10)
    model = init_model(PRESETS["smoke"], 1, 10, 0).eval()
    proto = PROTOCOLS.get("ood")(**resolve_options(PROTOCOLS.get("ood").options, {}, "ood"))
    result = proto.run(_ood_ctx(test, model, tmp_path))
    assert len(made) == 40  # the three arms are one classifier here: scored once, then read from the cache
    assert len(result.details["per_corruption"]["replace"]["jpeg"]) == 5


def test_gaussian_blur_convolves_a_chunk_at_a_time_with_the_same_bytes(monkeypatch):
    """gaussian_blur convolved the whole test split in one call, whose working
    memory is about 2 radius + 1 float copies of it (150 GB for 10,000 3 x 224 x 224
    images at ImageNet-C's severity 5). Now BLUR_CHUNK images a call, the same bytes."""
    from synthbench.benchmark import corruptions

    x = torch.randint(0, 256, (150, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    whole = {s: corruptions.corrupt(x, "gaussian_blur", s) for s in (1, 5)}
    sizes: list[int] = []
    conv2d = corruptions.F.conv2d
    monkeypatch.setattr(corruptions.F, "conv2d", lambda y, *a, **k: sizes.append(len(y)) or conv2d(y, *a, **k))
    for s in (1, 5):
        assert torch.equal(corruptions.corrupt(x, "gaussian_blur", s), whole[s])
    assert max(sizes) <= corruptions.BLUR_CHUNK
    for s in (1, 5):  # chunked anew: the same bytes as one image at a time
        assert torch.equal(torch.cat([corruptions.corrupt(x[i:i + 1], "gaussian_blur", s) for i in range(len(x))]),
                           whole[s])


def test_the_two_configurations_whose_numbers_were_fixed_are_keyed_apart():
    """scaleup budget=steps on a step-schedule preset and mia shadows=2 compute
    other numbers since this review's fixes; a store's old cells of those
    configurations must not be cache hits, and every other cell keys as before
    (the spec's protocol_extra is empty and left out of its JSON)."""
    from synthbench.benchmark.cell import CellSpec, PluginChoice
    from synthbench.benchmark.datasets import load_dataset
    from synthbench.benchmark.presets import PRESETS
    from synthbench.plugins import GENERATORS, PROTOCOLS

    digits = load_dataset("digits")
    real = PluginChoice.resolve(GENERATORS, "real", {})

    def spec(protocol: str, preset: str, **opts) -> CellSpec:
        return CellSpec.of(digits, real, PluginChoice.resolve(PROTOCOLS, protocol, opts), PRESETS[preset], 0,
                           torch.device("cpu"))

    assert spec("scaleup", "paper", budget="steps").protocol_extra
    for preset, opts in (("paper", {}), ("fast", {"budget": "steps"}), ("smoke", {"budget": "steps"})):
        plain = spec("scaleup", preset, **opts)
        assert plain.protocol_extra == {} and "protocol_extra" not in plain.to_json()
    assert spec("mia", "fast", shadows=2).protocol_extra
    assert spec("mia", "fast", shadows=4).protocol_extra == {} and spec("mia", "paper").protocol_extra == {}
    assert spec("mia", "fast", shadows=2).key != spec("mia", "fast", shadows=4).key
