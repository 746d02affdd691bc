"""The Real-Fake recipe on the in-suite backbone (Yuan et al. 2024, Sec. 3): each
component switchable, each one changing what it should and nothing else."""

import pytest
import torch

from synthbench.benchmark.presets import PRESETS
from synthbench.plugins import GENERATORS
from synthbench.generators.realfake import GuidedClassEmbedding

from conftest import fit_generator

BASE = {"base_train_steps": "400", "eval_batch": "32"}  # the base EDM the conformance suite also fits
LABELS = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
SEEDS = list(range(100, 108))


def _fit(smoke_digits, cache, **opts):
    return fit_generator("realfake", smoke_digits, cache, **{**BASE, "finetune_steps": "20", **opts})


def test_spec_names_the_backbone():
    cls = GENERATORS.get("realfake")
    assert cls.spec_extras({"sd_model": ""}) == {"backbone": "in-suite-edm"}
    from synthbench.generators.realfake_sd import VERSION

    assert cls.spec_extras({"sd_model": "/models/sd15"}) == {"backbone": "stable-diffusion",
                                                             "sd_backbone_version": VERSION}


def test_guided_embedding_starts_as_the_base_embedding():
    base = torch.nn.Embedding(10, 6)
    guided = GuidedClassEmbedding(base, feature_dim=4)
    guided.set_rows(torch.tensor([3, 7]), torch.randn(2, 4))
    assert torch.equal(guided(torch.tensor([1, 0])), base(torch.tensor([7, 3])))


def test_components_switch_independently(smoke_digits, session_cache):
    full = _fit(smoke_digits, session_cache)
    assert full.fit_identity()["backbone"] == "in-suite-edm"
    assert isinstance(full.net.unet.class_embedding, GuidedClassEmbedding)
    a = full.sample(LABELS, SEEDS)
    assert torch.equal(a, full.sample(LABELS, SEEDS))

    # prior init: the samples start from real images of the class, so they sit
    # closer to them than samples from noise (a 20-step fine-tune of a 400-step
    # EDM draws blobs from noise)
    no_prior = _fit(smoke_digits, session_cache, prior_init="false")
    assert no_prior.fit_identity()["weights"] == full.fit_identity()["weights"]  # sampling-only switch
    b = no_prior.sample(LABELS, SEEDS)
    train = smoke_digits.train

    def nearest_same_class(x):
        d = []
        for img, label in zip(x.float(), LABELS):
            pool = train.images[train.labels == label].float()
            d.append((pool - img).flatten(1).norm(dim=1).min())
        return torch.stack(d).mean()

    assert nearest_same_class(a) < nearest_same_class(b)

    # the MMD term and the guidance change the fine-tuned weights
    no_mmd = _fit(smoke_digits, session_cache, mmd="false")
    no_guid = _fit(smoke_digits, session_cache, visual_guidance="false")
    keys = {full.fit_identity()["weights"], no_mmd.fit_identity()["weights"], no_guid.fit_identity()["weights"]}
    assert len(keys) == 3
    assert not isinstance(no_guid.net.unet.class_embedding, GuidedClassEmbedding)
    assert not torch.equal(no_mmd.sample(LABELS, SEEDS), a)


def test_guidance_vector_depends_on_the_seed_only(smoke_digits, session_cache):
    gen = _fit(smoke_digits, session_cache)
    one = gen.sample(LABELS[2:3], SEEDS[2:3])
    batch = gen.sample(LABELS, SEEDS)
    assert torch.equal(one[0], batch[2])
    emb = gen.net.unet.class_embedding
    gen._denoiser(torch.tensor([4, 4]), [1, 2])  # sets the embedding rows for these labels and seeds
    v1, v2 = emb._vectors.clone()
    assert not torch.equal(v1, v2)  # two handfuls of real 4s
    gen._denoiser(torch.tensor([4]), [2])  # sets the embedding rows for these labels and seeds
    assert torch.equal(emb._vectors[0], v2)


def test_no_fine_tuning_is_the_base_edm(smoke_digits, session_cache):
    """Table 2's first row: finetune_steps = 0, prior init off, is the edm adapter."""
    plain = _fit(smoke_digits, session_cache, finetune_steps="0", prior_init="false")
    edm = fit_generator("edm", smoke_digits, session_cache, train_steps="400", eval_batch="32")
    assert torch.equal(plain.sample(LABELS, SEEDS), edm.sample(LABELS, SEEDS))


def test_fine_tuning_is_cached(smoke_digits, session_cache):
    _fit(smoke_digits, session_cache, finetune_steps="7")
    files = sorted(p.name for p in (session_cache / "generators").glob("realfake-*.pt"))
    again = _fit(smoke_digits, session_cache, finetune_steps="7")
    assert sorted(p.name for p in (session_cache / "generators").glob("realfake-*.pt")) == files
    assert again.fit_identity()["weights"] in "".join(files)


def test_reconstruct_on_the_fine_tuned_network(smoke_digits, session_cache):
    gen = _fit(smoke_digits, session_cache)
    imgs, labels = smoke_digits.train.images[:6], smoke_digits.train.labels[:6]
    assert torch.equal(gen.reconstruct(imgs, labels, 0, list(range(6))), imgs)
    out = gen.reconstruct(imgs, labels, 40, list(range(6)))
    assert out.shape == imgs.shape and out.dtype == torch.uint8 and not torch.equal(out, imgs)


def test_smoke_preset_default_budget(smoke_digits, session_cache):
    gen = fit_generator("realfake", smoke_digits, session_cache, eval_batch="32")
    assert gen.fit_identity()["sampler_steps"] == PRESETS["smoke"].gen_sampler_steps


def test_prior_init_starts_at_stable_diffusions_noise_level():
    """strength keeps SD's meaning: 0.75 starts where SD v1 img2img starts (t = 750
    of its scaled-linear schedule, sigma / sigma_data = 4.08), not 75% down EDM's
    grid (sigma = 19, which drowns the real image)."""
    from synthbench.generators.realfake import prior_init_sigmas

    s = prior_init_sigmas(0.75, 18)
    assert len(s) == round(0.75 * 18) + 1 and s[-1] == 0 and float(s[-2]) == pytest.approx(0.002)
    assert float(s[0]) == pytest.approx(0.5 * 4.0817, rel=1e-3)
    assert torch.all(s[:-1] > s[1:])
    assert float(prior_init_sigmas(0.25, 18)[0]) < float(prior_init_sigmas(0.5, 18)[0]) < float(s[0])
