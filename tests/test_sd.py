"""The Stable Diffusion adapters, offline, on a tiny randomly initialised
pipeline written to disk (``tests/tiny_sd.py``) and loaded as users load real
weights: ``sd`` (vanilla SD prompted with class names) and ``RealFakeSD``, the
Stable Diffusion backbone of ``realfake`` (Yuan et al. 2024, Sec. 3, Appendix E)."""

from __future__ import annotations

import pytest
import torch

from synthbench.benchmark.datasets import Split
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.seeding import torch_generator
from synthbench.errors import UserError
from synthbench.generators.base import FitContext
from synthbench.generators.distribution_matching import distribution_matching_loss
from synthbench.generators.sd import (
    APPENDIX_E_NEGATIVE_PROMPT, class_prompts, img2img_steps, to_dataset_images, to_pipeline_images,
)

from conftest import fit_generator, killed_after
from tiny_sd import tiny_clip_path, tiny_sd_path  # noqa: F401  (session fixtures)

LABELS = torch.tensor([0, 1, 2, 3, 4, 5, 6])
SEEDS = [11, 12, 13, 14, 15, 16, 17]
FAST = {"sampler_steps": 2, "sd_eval_batch": 4, "finetune_steps": 2, "batch_size": 4, "guidance_images": 4}


def _ctx(dataset, cache_dir, train: Split | None = None) -> FitContext:
    return FitContext.from_dataset(dataset, PRESETS["smoke"], torch.device("cpu"), cache_dir, train=train)


@pytest.fixture(scope="module")
def sd(smoke_digits, tiny_sd_path, tmp_path_factory):
    return fit_generator("sd", smoke_digits, tmp_path_factory.mktemp("sd-cache"), model=str(tiny_sd_path),
                         sampler_steps="2", eval_batch="4")


@pytest.fixture(scope="module")
def realfake(smoke_digits, tiny_sd_path, tiny_clip_path, tmp_path_factory):
    """A fitted RealFakeSD with every component on (2 LoRA steps) and its cache folder."""
    from synthbench.generators.realfake_sd import RealFakeSD

    cache = tmp_path_factory.mktemp("realfake-sd-cache")
    rf = RealFakeSD(str(tiny_sd_path), str(tiny_clip_path), dict(FAST))
    rf.fit(_ctx(smoke_digits, cache))
    return rf, cache


# -- sd ----------------------------------------------------------------------
def test_sd_without_weights_is_a_user_error_naming_the_option(smoke_digits, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model in ("", str(tmp_path / "missing" / "sd-folder"), "nobody/no-such-model"):
        with pytest.raises(UserError) as err:
            fit_generator("sd", smoke_digits, tmp_path, model=model)
        msg = str(err.value)
        assert "sd.model" in msg and "huggingface-cli download" in msg and "--local-dir" in msg, msg
    not_a_pipeline = tmp_path / "empty"
    not_a_pipeline.mkdir()
    with pytest.raises(UserError, match="sd.model"):
        fit_generator("sd", smoke_digits, tmp_path, model=str(not_a_pipeline))


def test_sd_samples_uint8_in_the_dataset_shape(sd, smoke_digits):
    x = sd.sample(LABELS, SEEDS)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (len(SEEDS), *smoke_digits.image_shape)
    assert int(x.max()) > int(x.min())
    assert sd.conditional and "GPU" in sd.needs and "sd.model" in sd.needs


def test_sd_same_seeds_same_bytes_whatever_the_batch(sd):
    whole = sd.sample(LABELS, SEEDS)
    assert torch.equal(whole, sd.sample(LABELS, SEEDS))
    pieces = torch.cat([sd.sample(LABELS[i:i + 3], SEEDS[i:i + 3]) for i in range(0, len(SEEDS), 3)])
    assert torch.equal(whole, pieces)
    assert torch.equal(whole[5:6], sd.sample(LABELS[5:6], SEEDS[5:6]))
    assert not torch.equal(whole, sd.sample(LABELS, [s + 1000 for s in SEEDS]))


def test_sd_reconstruct_is_img2img_at_t_re_over_100(sd, smoke_digits):
    imgs, labels = smoke_digits.train.images[:5], smoke_digits.train.labels[:5]
    assert torch.equal(sd.reconstruct(imgs, labels, 0, SEEDS[:5]), imgs)
    r = sd.reconstruct(imgs, labels, 30, SEEDS[:5])
    assert r.dtype == torch.uint8 and r.shape == imgs.shape
    assert torch.equal(r, sd.reconstruct(imgs, labels, 30, SEEDS[:5]))
    with pytest.raises(UserError, match="t_re"):
        sd.reconstruct(imgs, labels, 101, SEEDS[:5])


def test_prompt_templates_and_helpers():
    names = ["golden_retriever", "cat"]
    assert class_prompts("a photo of a {}", names, [0, 1], [1, 2]) == ["a photo of a golden retriever",
                                                                       "a photo of a cat"]
    two = class_prompts("a photo of a {}|a drawing of a {}", names, [1] * 40, list(range(40)))
    assert set(two) == {"a photo of a cat", "a drawing of a cat"}
    assert two == class_prompts("a photo of a {}|a drawing of a {}", names, [1] * 40, list(range(40)))
    assert all(int(n * s) >= 1 for s in (0.01, 0.05, 0.3, 1.0) for n in [img2img_steps(2, s)])
    x = torch.rand(3, 3, 16, 16)
    y = to_dataset_images(x, (1, 8, 8))
    assert y.dtype == torch.uint8 and y.shape == (3, 1, 8, 8)
    back = to_pipeline_images(torch.full((2, 1, 8, 8), 255, dtype=torch.uint8), 16)
    assert back.shape == (2, 3, 16, 16) and torch.allclose(back, torch.ones_like(back))


# -- Real-Fake on Stable Diffusion -------------------------------------------
def test_realfake_sd_without_weights_or_encoder_is_a_user_error(smoke_digits, tiny_sd_path, tmp_path):
    from synthbench.generators.realfake_sd import RealFakeSD

    with pytest.raises(UserError, match="realfake.image_encoder") as err:
        RealFakeSD(str(tiny_sd_path), None, {"visual_guidance": True})
    assert "realfake.visual_guidance=false" in str(err.value)
    with pytest.raises(UserError, match="realfake.sd_model"):
        RealFakeSD("", None, {"visual_guidance": False}).fit(_ctx(smoke_digits, tmp_path))


def test_realfake_sd_defaults_follow_seed_004():
    from synthbench.generators.realfake_sd import RealFakeSDConfig

    cfg = RealFakeSDConfig.from_opts({"finetune_lr": None, "guidance_scale": 2.0, "sampler_steps": None})
    assert (cfg.sampler_steps, cfg.guidance, cfg.strength, cfg.lr) == (30, 2.0, 0.75, 1e-4)  # Tables 6, 7
    assert cfg.negative_prompt == APPENDIX_E_NEGATIVE_PROMPT == "distorted, unrealistic, blurry, out of frame"
    assert cfg.prompt == "photo of {}"
    assert RealFakeSDConfig.from_opts({"finetune_lr": 3e-4, "guidance_scale": 4.0}).lr == 3e-4


def test_realfake_sd_finetune_steps_zero_means_no_fine_tuning(smoke_digits, tiny_sd_path, tmp_path):
    """Table 2's unfine-tuned rows: ``finetune_steps=0`` must not fall back to the preset's budget."""
    from synthbench.generators.realfake_sd import RealFakeSD

    ctx = _ctx(smoke_digits, tmp_path)
    assert RealFakeSD(str(tiny_sd_path), None, {"visual_guidance": False, "finetune_steps": 0}).finetune_steps(ctx) == 0
    assert RealFakeSD(str(tiny_sd_path), None, {"visual_guidance": False, "finetune_steps": 3}).finetune_steps(ctx) == 3
    assert RealFakeSD(str(tiny_sd_path), None, {"visual_guidance": False}).finetune_steps(ctx) > 0


def test_visual_guidance_appends_exactly_one_token(realfake, smoke_digits, tiny_sd_path, tmp_path):
    from synthbench.generators.realfake_sd import RealFakeSD

    rf, _ = realfake
    plain = RealFakeSD(str(tiny_sd_path), None, {**FAST, "visual_guidance": False})
    plain.setup(_ctx(smoke_digits, tmp_path))
    conds = [(3, 21), (7, 22)]
    with torch.no_grad():
        states, neg = rf.encode(conds)
        text_states, text_neg = plain.encode(conds)
    assert text_states.shape[1] == rf.pipe.tokenizer.model_max_length
    assert states.shape == (2, text_states.shape[1] + 1, text_states.shape[2])
    assert torch.equal(states[:, :-1], text_states)  # the prompt's tokens are untouched
    assert neg.shape == states.shape and torch.equal(neg[:, -1], neg[:, -2])  # uncond: a copy of its last token
    # the token is the projected mean CLIP embedding of the class's images, trained with the LoRA
    assert rf.proj is not None and all(p.requires_grad for p in rf.proj.parameters())
    assert rf.proj.in_features == rf._clip.shape[1] and rf.proj.out_features == states.shape[2]


def test_mmd_term_equals_a_direct_computation(realfake, smoke_digits):
    rf, _ = realfake
    imgs, labels = smoke_digits.train.images[:6], smoke_digits.train.labels[:6]
    out = rf.training_loss(imgs, labels, torch_generator(5))
    residual = (out["target"] - out["prediction"]).detach().double()
    direct_dm = residual.mean(0).pow(2).mean()  # ||1/N sum_i (eps_0 - eps_theta)||^2, Eq. 7
    direct_simple = residual.pow(2).mean()
    assert rf.gamma == 0.05
    assert torch.allclose(out["dm"].double(), direct_dm, rtol=1e-5)
    assert torch.allclose(out["simple"].double(), direct_simple, rtol=1e-5)
    assert torch.allclose(out["total"].double(), direct_simple + 0.05 * direct_dm, rtol=1e-5)
    total, _, _ = distribution_matching_loss(out["target"], out["prediction"], 0.05)
    assert torch.allclose(out["total"], total)
    assert out["dm"] < out["simple"]  # Jensen: L_DM <= L_simple (Eq. 7)


def test_lora_training_lowers_the_loss_on_a_fixed_batch(smoke_digits, tiny_sd_path, tmp_path):
    from synthbench.generators.realfake_sd import RealFakeSD

    rf = RealFakeSD(str(tiny_sd_path), None, {**FAST, "visual_guidance": False, "mmd": False})
    rf.setup(_ctx(smoke_digits, tmp_path))
    trainable = [n for n, p in rf.pipe.unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    assert {t for t in ("to_q", "to_k", "to_v", "to_out.0") if any(f".{t}." in n for n in trainable)} == \
        {"to_q", "to_k", "to_v", "to_out.0"}
    imgs, labels = smoke_digits.train.images[:4], smoke_digits.train.labels[:4]
    opt = rf.optimizer(lr=3e-3)
    losses = []
    for _ in range(6):
        out = rf.training_loss(imgs, labels, torch_generator(1))  # same batch, noise and timesteps
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        losses.append(out["total"].item())
    assert rf.gamma == 0.0 and losses[-1] < losses[0], losses


def test_realfake_sd_killed_fine_tuning_resumes_to_the_same_lora(smoke_digits, tiny_sd_path, tmp_path, monkeypatch):
    """The LoRA fine-tuning goes on from its snapshot after a kill and ends with
    the LoRA weights of a run never stopped (``snapshots.py``)."""
    from synthbench.generators.realfake_sd import RealFakeSD

    opts = {**FAST, "visual_guidance": False, "finetune_steps": 4}

    def fit(cache):
        ctx = _ctx(smoke_digits, cache)
        ctx.snapshot_every_s = 0.0
        rf = RealFakeSD(str(tiny_sd_path), None, dict(opts))
        rf.fit(ctx)
        return rf.trainable_state()

    whole = fit(tmp_path / "whole")
    with killed_after(monkeypatch, 1):
        fit(tmp_path / "killed")
    (snapshot,) = (tmp_path / "killed" / "generators").glob("realfake-sd-*.snapshot.pt")
    steps_run = []
    loss = RealFakeSD.training_loss
    monkeypatch.setattr(RealFakeSD, "training_loss", lambda self, *a: steps_run.append(1) or loss(self, *a))
    resumed = fit(tmp_path / "killed")
    assert len(steps_run) == 2  # steps 2 and 3: it went on from the snapshot
    assert not snapshot.exists()
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_realfake_sd_lora_file_of_another_unet_is_a_clear_error(smoke_digits, tiny_sd_path, tmp_path):
    """A LoRA file whose keys do not fit the UNet (edited, or written by another
    version) stops the run with the cache's one error, naming the file once."""
    from safetensors.torch import load_file

    from synthbench.benchmark.cache import SAFETENSORS, DiskCache
    from synthbench.generators.realfake_sd import RealFakeSD

    opts = {**FAST, "visual_guidance": False}
    RealFakeSD(str(tiny_sd_path), None, dict(opts)).fit(_ctx(smoke_digits, tmp_path))
    (path,) = (tmp_path / "generators").glob("realfake-sd-*.safetensors")
    state = {f"lora.other.{k[5:]}": v for k, v in load_file(path).items() if k.startswith("lora.")}
    DiskCache.save(path, SAFETENSORS, state)  # a valid digest over the wrong keys
    with pytest.raises(UserError, match="LoRA keys do not match") as err:
        RealFakeSD(str(tiny_sd_path), None, dict(opts)).fit(_ctx(smoke_digits, tmp_path))
    assert str(err.value).count(str(path)) == 1 and "Delete that file" in str(err.value)


def test_realfake_sd_samples_deterministic_batch_independent_and_cached(realfake, smoke_digits, tiny_sd_path,
                                                                        tiny_clip_path):
    from synthbench.generators.realfake_sd import RealFakeSD

    rf, cache = realfake
    x = rf.sample(LABELS, SEEDS)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (len(SEEDS), *smoke_digits.image_shape)
    assert torch.equal(x, rf.sample(LABELS, SEEDS))
    pieces = torch.cat([rf.sample(LABELS[i:i + 3], SEEDS[i:i + 3]) for i in range(0, len(SEEDS), 3)])
    assert torch.equal(x, pieces)
    saved = sorted(p.name for p in (cache / "generators").iterdir())
    assert any(n.startswith("realfake-sd-clip-") for n in saved)
    assert any(n.startswith("realfake-sd-") and not n.startswith("realfake-sd-clip-") for n in saved)
    assert all(n.endswith(".safetensors") for n in saved)
    again = RealFakeSD(str(tiny_sd_path), str(tiny_clip_path), dict(FAST))
    ctx = _ctx(smoke_digits, cache)
    again.fit(ctx)
    assert "fit_train_s" not in ctx.cost  # loaded from the cache, not retrained
    assert again.identity() == rf.identity() and torch.equal(again.sample(LABELS, SEEDS), x)
    imgs, labels = smoke_digits.train.images[:3], smoke_digits.train.labels[:3]
    assert torch.equal(rf.reconstruct(imgs, labels, 0, SEEDS[:3]), imgs)
    assert rf.reconstruct(imgs, labels, 50, SEEDS[:3]).shape == imgs.shape


def test_prior_init_starts_from_the_class_real_images(smoke_digits, tiny_sd_path, tmp_path):
    from synthbench.generators.realfake_sd import RealFakeSD

    opts = {**FAST, "visual_guidance": False}
    labels, seeds = torch.tensor([3, 3, 5, 5]), [1, 2, 3, 4]

    def setup(prior_init: bool, train: Split | None = None) -> RealFakeSD:
        rf = RealFakeSD(str(tiny_sd_path), None, {**opts, "prior_init": prior_init})
        rf.setup(_ctx(smoke_digits, tmp_path, train=train))  # untrained LoRA: the base model
        return rf

    with_prior, from_noise = setup(True), setup(False)
    a = with_prior.sample(labels, seeds)
    assert not torch.equal(a, from_noise.sample(labels, seeds))
    picked = with_prior.prior_images(labels.tolist(), seeds)
    train = smoke_digits.train
    for img, c in zip(picked, labels.tolist()):  # a real image of the requested class
        assert any(torch.equal(img, t) for t in train.images[train.labels == c])
    # change only class 3's real images: class 3's samples change, class 5's do not
    images = train.images.clone()
    images[train.labels == 3] = 255 - images[train.labels == 3]
    b = setup(True, Split(images, train.labels)).sample(labels, seeds)
    assert not torch.equal(a[:2], b[:2]) and torch.equal(a[2:], b[2:])
