"""The ``fidelity`` protocol: feature-space metrics move the right way on images
whose answer is known, density/coverage match a brute-force count, torch-fidelity
runs offline on the registered classifier extractor, and a smoke run records."""

import itertools
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import pytest
import torch
import torch.nn.functional as F

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.store import ResultStore
from synthbench.errors import UserError
from synthbench.protocols import fidelity
from synthbench.benchmark.feature_metrics import (
    CLASSIFIER_EXTRACTOR,
    INCEPTION_FILE,
    classifier_features,
    density_coverage,
    feature_metrics,
    find_inception_weights,
    per_class_metrics,
)
from synthbench.protocols.fidelity import FidelityProtocol

from conftest import run_cells

CPU = torch.device("cpu")


def _blur(images: torch.Tensor, times: int = 1) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    x = images.float()
    for _ in range(times):
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel[None, None])
    return x.round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def feats(digits, reference_classifier):
    train = classifier_features(reference_classifier, digits.train.images, CPU)
    test = classifier_features(reference_classifier, digits.test.images, CPU)
    return train, test


def test_real_test_is_far_closer_than_noise_or_blur(digits, reference_classifier, feats):
    train, test = feats
    g = torch.Generator().manual_seed(0)
    noise = (torch.randn(digits.test.images.shape, generator=g) * 40 + 60).clamp(0, 255).to(torch.uint8)
    floor = feature_metrics(train, test, k=5)
    vs_noise = feature_metrics(train, classifier_features(reference_classifier, noise, CPU), k=5)
    vs_blur = feature_metrics(train, classifier_features(reference_classifier, _blur(digits.test.images), CPU), k=5)
    assert floor["fid"] * 10 < vs_blur["fid"] < vs_noise["fid"]
    assert floor["kid"] * 10 < vs_blur["kid"] and floor["kid"] * 10 < vs_noise["kid"]
    assert floor["recall"] > 0.8 and vs_noise["recall"] < 0.1 and vs_blur["recall"] < 0.2
    assert floor["coverage"] > 3 * max(vs_noise["coverage"], vs_blur["coverage"])
    assert floor["density"] > 0.7 > vs_blur["density"]


def test_missing_classes_lower_recall_and_coverage_not_precision(digits, feats):
    train, test = feats
    full = feature_metrics(train, test, k=5)
    half = feature_metrics(train, test[digits.test.labels < 5], k=5)
    assert half["recall"] < full["recall"] - 0.25
    assert half["coverage"] < full["coverage"] - 0.2
    assert half["precision"] > full["precision"] - 0.05  # what is there is still realistic
    per_class = per_class_metrics(train, digits.train.labels, test[digits.test.labels < 5],
                                  digits.test.labels[digits.test.labels < 5], 10, k=5)
    assert all(v is not None for v in per_class["coverage"][:5])
    assert per_class["coverage"][5:] == [None] * 5 and per_class["n_fake"][5:] == [0] * 5


def test_density_coverage_match_brute_force():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(9, 3)), rng.normal(size=(6, 3)) + 0.3
    k = 2

    def dist(a, b):
        return float(np.sqrt(((a - b) ** 2).sum()))

    radius = [sorted(dist(x, y) for j, y in enumerate(real) if j != i)[k - 1] for i, x in enumerate(real)]
    hits = [[dist(real[i], f) < radius[i] for f in fake] for i in range(len(real))]
    density = sum(itertools.chain.from_iterable(hits)) / (k * len(fake))
    coverage = sum(any(row) for row in hits) / len(real)
    got = density_coverage(torch.from_numpy(real), torch.from_numpy(fake), k)
    assert got == pytest.approx((density, coverage), abs=1e-12)
    assert density_coverage(torch.from_numpy(real), torch.from_numpy(fake), k, chunk=4) == got
    assert 0 < coverage < 1 and density > 0  # the example is not degenerate


def test_torch_fidelity_calculate_metrics_runs_offline_in_classifier_space(digits, reference_classifier,
                                                                          monkeypatch):
    """torch-fidelity's own pipeline, with the registered extractor for all of
    FID, KID and PRC, agrees with this module's feature-level calls (and never
    touches VGG16 or Inception, whose constructors would download)."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    def no_download(*args, **kwargs):
        raise AssertionError("a downloading feature extractor was built")

    for name in ("vgg16", "inception-v3-compat"):
        monkeypatch.setitem(FEATURE_EXTRACTORS_REGISTRY, name, no_download)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    fake, real = digits.test.images[:200], digits.train.images[:300]
    out = torch_fidelity.calculate_metrics(
        input1=Images(fake), input2=Images(real), fid=True, kid=True, prc=True,
        feature_extractor=CLASSIFIER_EXTRACTOR, synthbench_classifier=reference_classifier,
        cuda=False, cache=False, save_cpu_ram=True, verbose=False, batch_size=128,
        kid_subset_size=200, kid_subsets=100, prc_neighborhood=5, rng_seed=7)
    mine = feature_metrics(classifier_features(reference_classifier, real, CPU),
                           classifier_features(reference_classifier, fake, CPU), k=5, kid_seed=7)
    assert mine["fid"] == pytest.approx(out[torch_fidelity.KEY_METRIC_FID], rel=1e-3)
    assert mine["kid"] == pytest.approx(out[torch_fidelity.KEY_METRIC_KID_MEAN], rel=1e-3, abs=1e-5)
    assert mine["precision"] == pytest.approx(out[torch_fidelity.KEY_METRIC_PRECISION], abs=1e-6)
    assert mine["recall"] == pytest.approx(out[torch_fidelity.KEY_METRIC_RECALL], abs=1e-6)
    assert reference_classifier.fc.weight.requires_grad  # the shared model was left alone


def test_inception_weights_are_found_only_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    assert find_inception_weights("") is None
    cached = tmp_path / "hub" / "checkpoints" / INCEPTION_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_inception_weights("") == cached
    with pytest.raises(UserError, match="inception_weights"):
        resolve_options(FidelityProtocol.options, {"inception_weights": str(tmp_path / "nope.pth")}, "fidelity")


def test_inception_features_use_the_given_file_and_never_download(digits, tmp_path, monkeypatch):
    """Feature space (b) with stand-in (randomly initialised) Inception weights
    on disk: grey images go in, 2048-d features come out, no URL is opened."""
    from torch_fidelity import feature_extractor_inceptionv3 as inc

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(inc, "load_state_dict_from_url", no_download)
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    with monkeypatch.context() as m:
        m.setattr(inc.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, **kw: None)
        torch.manual_seed(0)
        net = inc.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                              feature_extractor_weights_path=str(empty))
    weights = tmp_path / INCEPTION_FILE
    torch.save(net.state_dict(), weights)
    del net
    handed = []
    original_init = inc.FeatureExtractorInceptionV3.__init__

    def spy(self, *args, feature_extractor_weights_path=None, **kwargs):
        handed.append(feature_extractor_weights_path)
        original_init(self, *args, feature_extractor_weights_path=feature_extractor_weights_path, **kwargs)

    monkeypatch.setattr(inc.FeatureExtractorInceptionV3, "__init__", spy)
    out = fidelity.inception_features(digits.test.images[:3], weights, CPU)
    assert out.shape == (3, 2048) and torch.isfinite(out).all()
    # torch-fidelity (which unpickles without weights_only) gets a private copy of
    # the checked bytes, never the user's file, which could change after the check
    assert len(handed) == 1 and handed[0] != str(weights) and not Path(handed[0]).exists()


def test_real_feature_cache_and_corrupt_file(smoke_digits, tmp_path):
    proto = FidelityProtocol(**resolve_options(FidelityProtocol.options, {}, "fidelity"))
    ctx = SimpleNamespace(dataset=smoke_digits, cache_dir=tmp_path, phase=lambda name: nullcontext())
    calls = []

    def extract(x):
        calls.append(len(x))
        return x.flatten(1).float()

    split = smoke_digits.train
    a = proto._real_features(ctx, "train", split, "pixels", "id", extract)
    b = proto._real_features(ctx, "train", split, "pixels", "id", extract)
    assert calls == [len(split)] and torch.equal(a, b)
    (path,) = (tmp_path / "features").iterdir()
    path.write_bytes(b"not an npz")
    with pytest.raises(UserError, match="unreadable"):
        proto._real_features(ctx, "train", split, "pixels", "id", extract)


def test_fidelity_end_to_end_with_edm(smoke_digits, tmp_path, monkeypatch):
    # Inception is looked for in an empty hub folder; a stand-in weights file
    # and a stand-in extractor exercise the second feature space's plumbing
    # without the network (real Inception on a CPU is minutes).
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    store = ResultStore(tmp_path)
    cells = run_cells(smoke_digits, {"edm": {"eval_batch": "64"}}, "fidelity", [0], store)
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    names = FidelityProtocol().table_metrics()
    assert names == ["fid", "precision", "recall", "density", "coverage", "floor_fid"]
    for name in (*names, "kid", "floor_precision", "floor_recall", "floor_density", "floor_coverage", "floor_kid"):
        assert name in rec.metrics, name
    m = rec.metrics
    assert m["fid"]["higher_is_better"] is False and m["coverage"]["higher_is_better"] is True
    assert m["floor_fid"]["value"] < m["fid"]["value"]  # a 30-step EDM is worse than real test images
    assert rec.details["feature_spaces"] == ["classifier"]
    per_class = rec.details["classifier"]["per_class"]
    assert len(per_class["precision"]) == 10 and sum(per_class["n_fake"]) == len(smoke_digits.train)
    assert len(list((tmp_path / "cache" / "features").glob("*.npz"))) == 2
    pca = rec.details["pca"]
    n = min(500, len(smoke_digits.train))
    assert len(pca["real"]) == len(pca["synthetic"]) == len(pca["synthetic_labels"]) == n
    assert all(len(xy) == 2 for xy in pca["synthetic"])

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"stand-in")
    monkeypatch.setattr(fidelity, "inception_features", lambda x, w, d: x.flatten(1).float())
    cells = run_cells(smoke_digits, {"edm": {"eval_batch": "64"}}, {"fidelity": {"inception_weights": str(weights)}},
                      [0], store)
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    assert rec.details["feature_spaces"] == ["classifier", "inception"]
    assert "inception_fid" in rec.metrics and "floor_inception_coverage" in rec.metrics
