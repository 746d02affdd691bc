import torch

from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.seeding import torch_generator
from synthbench.benchmark.trainer import evaluate, random_crop_flip, train_classifier


def test_crop_flip_shapes_and_content():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    y = random_crop_flip(x, 1, True, torch_generator(0))
    assert y.shape == x.shape
    assert torch.equal(random_crop_flip(x, 0, False, torch_generator(0)), x)


def test_augmented_batches_are_channels_last_so_fp32_training_is_too():
    """The batched crop gathers pixels in NHWC order, so the batch it returns is
    channels_last, for one channel and for three. Convolutions then return
    channels_last activations, and an fp32 classifier (NCHW weights) trains in
    channels_last all the way down: that is how the published fp32 classifiers
    were trained (all but ``detect``'s, which train unaugmented), and it is the
    layout that ran fp32 SmallCNN steps fastest on a CPU.
    A crop that returned contiguous NCHW batches would change the arithmetic
    (and so those records) and slow training down."""
    from synthbench.benchmark.classifiers import build_classifier

    for chans in (1, 3):
        x = torch.rand(4, chans, 8, 8)
        y = random_crop_flip(x, 1, True, torch_generator(0))
        assert y.is_contiguous(memory_format=torch.channels_last) and y.stride(1) == 1  # channels innermost
        model = build_classifier("smallcnn", chans, 10)
        assert model.feature_map(y).is_contiguous(memory_format=torch.channels_last)
        assert not model.feature_map(x).is_contiguous(memory_format=torch.channels_last)  # unaugmented: NCHW


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


def test_evaluation_runs_in_fixed_batches_whatever_the_split_size():
    """Every image is computed in a batch of exactly the evaluation batch (the
    last chunk padded, its padding dropped): oneDNN picks kernels by batch
    size, and a short last chunk could round its images apart."""
    from synthbench.benchmark.batches import eval_batch, in_fixed_batches
    from synthbench.benchmark.classifiers import build_classifier
    from synthbench.benchmark.feature_metrics import classifier_features
    from synthbench.benchmark.trainer import predict_logits

    seen = []
    out = in_fixed_batches(lambda x: (seen.append(len(x)), x.sum((1, 2, 3)))[1],
                           torch.arange(10 * 3 * 2 * 2).reshape(10, 3, 2, 2).float(), 4)
    assert seen == [4, 4, 4] and out.dtype == torch.float32 and out.shape == (10,)
    assert torch.equal(out[9], torch.tensor(sum(range(108, 120)), dtype=torch.float32))  # padding dropped

    cpu = torch.device("cpu")
    assert eval_batch(cpu) == 64 and eval_batch(torch.device("cuda")) == 512
    torch.manual_seed(0)
    model = build_classifier("smallcnn", 1, 10).eval()
    images = torch.randint(0, 256, (150, 1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    full = predict_logits(model, images, cpu)
    # an image's logits do not depend on the images evaluated with it
    assert torch.equal(predict_logits(model, images[:67], cpu), full[:67])
    assert torch.equal(predict_logits(model, images[140:], cpu), full[140:])
    feats = classifier_features(model, images, cpu)
    assert feats.shape == (150, model.num_features)
    assert torch.equal(classifier_features(model, images[3:5], cpu), feats[3:5])


def test_compiled_training_is_close_to_eager_and_keyed_apart(digits):
    """``compile`` (``--compile``) trains the same model under torch.compile: the
    weights agree with eager training up to float rounding, and, as they round
    differently, the classifier cache keeps the two apart."""
    from synthbench.benchmark.context import reference_classifier_path
    from synthbench.benchmark.presets import get_preset
    from synthbench.benchmark.trainer import predict_logits

    cpu = torch.device("cpu")
    eager, fast = get_preset("smoke"), get_preset("smoke", None, True)
    assert "compile" not in eager.as_dict() and fast.as_dict() == {**eager.as_dict(), "compile": True}
    assert reference_classifier_path(digits, eager, 0, cpu, "c") != reference_classifier_path(digits, fast, 0, cpu, "c")
    a, b = (train_classifier(digits.train.images, digits.train.labels, 10, p, 1, cpu, False, epochs=1)
            for p in (eager, fast))
    assert not hasattr(b, "_orig_mod")  # the trained module itself, evaluated eagerly
    # relative to each tensor's scale: batch norm's running variances are in the tens
    diffs = [float((pa - pb).abs().max() / pa.abs().max()) for pa, pb in
             zip(a.state_dict().values(), b.state_dict().values()) if pa.is_floating_point()]
    assert max(diffs) < 2e-2, diffs  # AdamW steps by sign-like ratios, so small rounding grows a little
    pa, pb = (predict_logits(m, digits.test.images, cpu).argmax(1) for m in (a, b))
    assert float((pa == pb).float().mean()) > 0.97


def test_training_compile_without_a_compiler_is_a_clear_error(digits):
    """--compile on a machine whose C++ compiler does not work stops with a
    message that names the fix, not a traceback from inductor."""
    import pytest

    from synthbench.benchmark.presets import get_preset
    from synthbench.errors import UserError

    images = torch.nn.functional.pad(digits.train.images[:64], (1, 1, 1, 1))  # a shape no other test compiles
    # no on-disk graph or autograd cache either, so inductor must build kernels
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False}), \
            torch._functorch.config.patch({"enable_autograd_cache": False}):
        with pytest.raises(UserError, match="C\\+\\+ compiler.*without --compile"):
            train_classifier(images, digits.train.labels[:64], 10, get_preset("smoke", None, True), 0,
                             torch.device("cpu"), False, epochs=1)


def test_deterministic_kernels_hold_only_inside_and_are_restored():
    """run_compiled(..., deterministic=True) runs its call in torch's
    deterministic mode (warn-only, memory not filled) and restores the mode the
    caller had, also when the call raises; deterministic=False leaves it alone,
    so eager cells never see it."""
    import pytest
    import torch.utils.deterministic

    from synthbench.benchmark.compiling import run_compiled

    def state():
        return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.utils.deterministic.fill_uninitialized_memory)

    before = state()
    assert before[0] is False
    assert run_compiled(state, deterministic=True) == (True, True, False)
    assert run_compiled(state) == before
    with pytest.raises(ZeroDivisionError):
        run_compiled(lambda: 1 / 0, deterministic=True)
    assert state() == before
