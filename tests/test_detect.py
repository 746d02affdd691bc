"""The ``detect`` protocol: chance level for real vs real, near-perfect detection
of noise, the DCT features, the split, and smoke runs through the grid."""

import numpy as np
import scipy.fft
import torch

from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.store import ResultStore
from synthbench.protocols.detect import balanced_split, dct_log_spectrum, detect_accuracy

from conftest import run_cells

CPU = torch.device("cpu")


def test_real_vs_real_is_chance_and_noise_is_caught(digits):
    images = digits.train.images
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))
    half = len(images) // 2  # 719 a side, 288 test images: stderr of chance ~0.03
    a, b = images[perm[:half]], images[perm[half:2 * half]]
    same = detect_accuracy(a, b, PRESETS["smoke"], 0, CPU)
    assert same["n_test"] == 2 * round(0.2 * half) and same["n_train"] == 2 * (half - round(0.2 * half))
    assert abs(same["pixel_acc"] - 0.5) < 0.15 and abs(same["dct_acc"] - 0.5) < 0.15

    g = torch.Generator().manual_seed(1)
    noise = (torch.randn(a.shape, generator=g) * 40 + 60).clamp(0, 255).to(torch.uint8)
    fake = detect_accuracy(a, noise, PRESETS["smoke"], 0, CPU)
    assert fake["pixel_acc"] > 0.9 and fake["dct_acc"] > 0.9


def test_dct_features_and_split():
    x = torch.randint(0, 256, (4, 2, 8, 8), dtype=torch.uint8)
    spec = dct_log_spectrum(x)
    want = np.log(np.abs(scipy.fft.dctn(x[1, 1].double().numpy(), norm="ortho")) + 1e-12)
    assert spec.shape == x.shape and np.allclose(spec[1, 1].numpy(), want, atol=1e-5)
    r_tr, r_te, f_tr, f_te = balanced_split(50, 80, seed=3)
    assert len(r_tr) == len(f_tr) == 40 and len(r_te) == len(f_te) == 10
    assert not set(r_tr) & set(r_te) and not set(f_tr) & set(f_te) and max(r_tr.max(), r_te.max()) < 50
    again = balanced_split(50, 80, seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(again, (r_tr, r_te, f_tr, f_te)))


def test_detect_end_to_end_with_edm_and_real(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_cells(smoke_digits, {"edm": {"eval_batch": "64"}, "real": {}}, "detect", [0], store)
    by_gen = {c.spec.generator: c.record for c in cells}
    for gen, rec in by_gen.items():
        assert rec.status == "ok", (gen, rec.error)
        for name in ("pixel_acc", "dct_acc"):
            m = rec.metrics[name]
            assert 0 <= m["value"] <= 1 and m["higher_is_better"] is False and m["n"] == rec.details["n_test"]
    n = len(smoke_digits.train)
    assert by_gen["edm"].details["n_train"] + by_gen["edm"].details["n_test"] == 2 * n
    assert by_gen["real"].details["n_train"] + by_gen["real"].details["n_test"] == 2 * (n // 2)
    assert "halves" in by_gen["real"].details["pairing"]
    again = run_cells(smoke_digits, ["real"], "detect", [0], store)
    assert again[0].cached
