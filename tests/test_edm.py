import pytest
import torch

from synthbench.errors import UserError
from synthbench.generators.diffusion import T_RECON, build_unet, karras_sigmas

from conftest import fit_generator


def test_karras_schedule_ends():
    s = karras_sigmas(18)
    assert len(s) == 19 and s[-1] == 0
    assert abs(float(s[0]) - 80.0) < 1e-6 and abs(float(s[-2]) - 0.002) < 1e-6
    assert torch.all(s[:-1] > s[1:])


def test_unet_depth_fits_the_image():
    u = build_unet((1, 28, 28), 10, (16, 32, 32, 32), 1)
    assert len(u.config.block_out_channels) == 3  # 28 -> 14 -> 7, not 3.5
    out = u(torch.zeros(2, 1, 28, 28), torch.zeros(2), class_labels=torch.tensor([0, 1])).sample
    assert out.shape == (2, 1, 28, 28)


@pytest.fixture(scope="module")
def edm(smoke_digits, session_cache):
    return fit_generator("edm", smoke_digits, session_cache, eval_batch="16")


def test_reconstruction_follows_the_reverse_step(edm, smoke_digits):
    """t_re = 0 returns the input; reconstructions drift from it as t_re grows
    (Yamaguchi & Fukuda 2023, Fig. 2); t_re = T ignores the input (pure noise)."""
    imgs, labels = smoke_digits.train.images[:16], smoke_digits.train.labels[:16]
    seeds = list(range(16))
    dist = {t: (edm.reconstruct(imgs, labels, t, seeds).float() - imgs.float()).abs().mean().item()
            for t in (0, 10, 60)}
    assert dist[0] == 0 and dist[10] < dist[60]
    a = edm.reconstruct(imgs, labels, T_RECON, seeds)
    b = edm.reconstruct(torch.zeros_like(imgs), labels, T_RECON, seeds)
    assert torch.equal(a, b)


def test_reconstruct_rejects_out_of_range(edm, smoke_digits):
    with pytest.raises(UserError, match="outside 0..100"):
        edm.reconstruct(smoke_digits.train.images[:1], smoke_digits.train.labels[:1], 101, [0])


def test_weights_are_cached(smoke_digits, session_cache, edm):
    files = list((session_cache / "generators").glob("edm-*.pt"))
    assert files
    again = fit_generator("edm", smoke_digits, session_cache, eval_batch="16")
    assert again.fingerprint() == edm.fingerprint()


def test_corrupt_cached_weights_is_a_clear_error(smoke_digits, tmp_path):
    fit_generator("edm", smoke_digits, tmp_path, train_steps="2")
    (path,) = (tmp_path / "generators").glob("edm-*.pt")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="Delete that file"):
        fit_generator("edm", smoke_digits, tmp_path, train_steps="2")


def test_bf16_training_is_deterministic_and_keyed_apart(smoke_digits, tmp_path):
    """train_precision=bf16 trains under autocast: the same recipe gives the same
    weights in two runs, other weights than fp32's, in a cache file of its own;
    an fp32 recipe names no precision, so fp32 weights keep the key they had."""
    from synthbench.benchmark.context import FitContext
    from synthbench.benchmark.presets import PRESETS
    from synthbench.generators.diffusion import unet_recipe

    a = fit_generator("edm", smoke_digits, tmp_path / "a", train_steps="5", train_precision="bf16")
    b = fit_generator("edm", smoke_digits, tmp_path / "b", train_steps="5", train_precision="bf16")
    f = fit_generator("edm", smoke_digits, tmp_path / "a", train_steps="5", train_precision="fp32")
    wa, wb, wf = (g.net.unet.state_dict() for g in (a, b, f))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wf[k]) for k in wa)
    assert len(list((tmp_path / "a" / "generators").glob("edm-*.pt"))) == 2
    ctx = FitContext.from_dataset(smoke_digits, PRESETS["smoke"], torch.device("cpu"), tmp_path)
    assert "precision" not in unet_recipe(ctx, 5, 1e-3, 0, True)
    assert unet_recipe(ctx, 5, 1e-3, 0, True, "bf16")["precision"] == "bf16"


def test_compiled_training_is_deterministic_close_to_eager_and_keyed_apart(smoke_digits, tmp_path):
    """train_edm with recipe["compile"] (what test_edm_training_precision
    measures): the same recipe gives the same weights in two runs (the second
    reuses the process's compiled graph), weights near the eager ones but not
    the same bits, under a recipe, and so a weights key, of its own; an eager
    recipe names no compile, so its key is the one it always had."""
    from synthbench.benchmark.context import FitContext
    from synthbench.benchmark.presets import PRESETS
    from synthbench.generators.diffusion import train_edm, unet_recipe

    ctx = FitContext.from_dataset(smoke_digits, PRESETS["smoke"], torch.device("cpu"), tmp_path)
    eager, fast = unet_recipe(ctx, 5, 1e-3, 0, True), unet_recipe(ctx, 5, 1e-3, 0, True, compile=True)
    assert "compile" not in eager and fast == {**eager, "compile": True}
    wa, wb, we = (train_edm(ctx, recipe).state_dict() for recipe in (fast, fast, eager))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert max((wa[k].float() - we[k].float()).abs().max().item() for k in wa) < 1e-3


class FakeEDMPrecond(torch.nn.Module):
    """Stands in for NVlabs' EDMPrecond in a pickle: D(x; sigma, one-hot) with
    the attributes the adapter reads. Module-level so pickle can find it."""

    img_resolution, img_channels, label_dim = 8, 1, 10

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, sigma, class_labels):
        assert class_labels.shape == (x.shape[0], 10) and torch.all(class_labels.sum(1) == 1)
        shift = class_labels.argmax(1).float().view(-1, 1, 1, 1) / 10
        return self.scale * x / (1 + sigma.view(-1, 1, 1, 1) ** 2) + shift


def test_official_pickle_needs_the_opt_in_and_then_samples(smoke_digits, session_cache, tmp_path):
    import pickle

    from synthbench.plugins import GENERATORS

    path = tmp_path / "edm-fake.pkl"
    with path.open("wb") as fh:
        pickle.dump({"ema": FakeEDMPrecond()}, fh)
    with pytest.raises(UserError, match="trust_pickle=true"):
        fit_generator("edm", smoke_digits, session_cache, network_pkl=str(path))
    trained = sorted((session_cache / "generators").glob("edm-*.pt"))
    gen = fit_generator("edm", smoke_digits, session_cache, network_pkl=str(path), trust_pickle="true",
                        eval_batch="8")
    x = gen.sample(torch.tensor([0, 9, 9]), [1, 2, 2])
    assert x.dtype == torch.uint8 and x.shape == (3, 1, 8, 8)
    assert torch.equal(x[1], x[2]) and not torch.equal(x[0], x[1])  # the label reaches the network
    assert sorted((session_cache / "generators").glob("edm-*.pt")) == trained  # nothing trained or cached
    extras = GENERATORS.get("edm").spec_extras({"network_pkl": str(path)})
    assert len(extras["network_pkl_sha256"]) == 64
    with pytest.raises(UserError, match="does not exist"):
        fit_generator("edm", smoke_digits, session_cache, network_pkl=str(tmp_path / "nope.pkl"),
                      trust_pickle="true")


def test_compile_without_a_compiler_is_a_clear_error():
    """compile=true on a machine whose C++ compiler does not work stops with a
    message that names the fix, not a traceback from inductor."""
    from synthbench.generators.diffusion import EDMDenoiser, denoise_in_chunks

    net = EDMDenoiser(build_unet((1, 8, 8), 10, (16, 32), 1)).eval()
    x, y = torch.zeros(3, 1, 8, 8), torch.zeros(3, dtype=torch.long)
    # a batch shape no other test compiles, and no on-disk graph cache, so inductor must build kernels
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False}):
        with pytest.raises(UserError, match="C\\+\\+ compiler.*compile=false"):
            denoise_in_chunks(net, x, 1.0, y, 3, torch.device("cpu"), "fp32", compile=True)


def test_compiled_network_matches_eager_closely_and_is_its_own_cell():
    """The compiled network computes what the eager one does up to float
    rounding; as it rounds differently, compile is part of the cell's key."""
    from synthbench.benchmark.options import keyed_options, resolve_options
    from synthbench.generators.diffusion import EDMDenoiser, denoise_in_chunks
    from synthbench.generators.edm import EDMGenerator

    torch.manual_seed(0)
    net = EDMDenoiser(build_unet((1, 8, 8), 10, (16, 32), 1)).eval()
    x, y = torch.randn(5, 1, 8, 8), torch.arange(5)
    eager = denoise_in_chunks(net, x, 2.0, y, 8, torch.device("cpu"))
    fast = denoise_in_chunks(net, x, 2.0, y, 8, torch.device("cpu"), compile=True)
    assert torch.allclose(eager, fast, atol=1e-4) and fast.dtype == torch.float32
    keyed = [keyed_options(EDMGenerator.options, resolve_options(EDMGenerator.options, {"compile": c}, "edm"))
             for c in ("false", "true")]
    assert keyed[0]["compile"] is False and keyed[1]["compile"] is True


def test_compiled_network_builds_one_graph_for_full_and_padded_chunks():
    """The padded last chunk reaches the compiled network with the same shapes and
    strides as a full one, so sampling any number of images compiles once per
    chunk size (a second graph per chunk size would also spend dynamo's
    recompile budget twice as fast)."""
    from torch._dynamo.utils import counters

    from synthbench.generators.diffusion import EDMDenoiser, denoise_in_chunks

    net = EDMDenoiser(build_unet((1, 8, 8), 10, (16, 32), 1)).eval()
    y = torch.arange(12) % 10
    before = counters["stats"]["unique_graphs"]
    denoise_in_chunks(net, torch.zeros(6, 1, 8, 8), 1.0, y[:6], 6, torch.device("cpu"), compile=True)  # full
    denoise_in_chunks(net, torch.zeros(4, 1, 8, 8), 1.0, y[:4], 6, torch.device("cpu"), compile=True)  # padded
    assert counters["stats"]["unique_graphs"] - before == 1
