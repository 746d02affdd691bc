"""Official network pickles are unpickled only with an explicit opt-in
(``synthbench/generators/pickles.py``), and ``stylegan3`` samples from one the
way NVlabs' ``gen_images.py`` does. The pickles here are tiny fakes that mimic the
``{'G_ema': module}`` dict of NVlabs StyleGAN3 pickles."""

from __future__ import annotations

import pickle
import sys
import textwrap

import pytest
import torch
from torch import nn

from synthbench.errors import UserError
from synthbench.benchmark.cache import file_digest as file_sha256
from synthbench.generators.pickles import load_network_pickle

from conftest import fit_generator

UNPICKLED: list[str] = []


class Tripwire:
    """Records that it was unpickled: a refused pickle must never get this far."""

    def __setstate__(self, state):
        UNPICKLED.append("tripwire")


class FakeG(nn.Module):
    """Mimics NVlabs' G_ema: attributes z_dim, c_dim, img_resolution,
    img_channels, and ``G(z, c, truncation_psi, noise_mode)`` -> NCHW in [-1, 1],
    here 16x16 RGB (so the adapter must convert and resize to digits' 8x8x1)."""

    def __init__(self, c_dim: int = 10):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, c_dim, 16, 3
        gen = torch.Generator().manual_seed(0)
        self.pattern = nn.Parameter(torch.randn(max(c_dim, 1), 3 * 16 * 16, generator=gen))
        self.zmix = nn.Parameter(torch.randn(4, 3 * 16 * 16, generator=gen))
        self.calls: list[tuple[float, str]] = []

    def forward(self, z, c, truncation_psi=1.0, noise_mode="random"):
        self.calls.append((truncation_psi, noise_mode))
        base = c @ self.pattern if self.c_dim else self.pattern.expand(z.shape[0], -1)
        return torch.tanh(base + truncation_psi * z @ self.zmix).view(-1, 3, 16, 16)


def write_pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def test_refuses_without_opt_in_and_names_the_options(tmp_path):
    path = write_pickle(tmp_path / "net.pkl", {"G_ema": Tripwire()})
    UNPICKLED.clear()
    with pytest.raises(UserError) as err:
        load_network_pickle(path, trust=False, owner="stylegan3")
    msg = str(err.value)
    assert "arbitrary code" in msg
    assert "--option stylegan3.network_pkl=" in msg and "--option stylegan3.trust_pickle=true" in msg
    assert UNPICKLED == []  # refused before reading a byte of it


def test_loads_with_opt_in(tmp_path):
    path = write_pickle(tmp_path / "net.pkl", {"G_ema": FakeG(), "D": None})
    G = load_network_pickle(path, trust=True, key="G_ema")
    assert isinstance(G, FakeG) and G.c_dim == 10
    assert set(load_network_pickle(path, trust=True)) == {"G_ema", "D"}


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist.*network_pkl=PATH"):
        load_network_pickle(tmp_path / "nope.pkl", trust=True)


def test_missing_key_and_garbage_are_clear_errors(tmp_path):
    path = write_pickle(tmp_path / "net.pkl", {"ema": FakeG()})
    with pytest.raises(UserError, match="holds no 'G_ema'.*'ema'"):
        load_network_pickle(path, trust=True, key="G_ema")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04 not really a pickle")
    with pytest.raises(UserError, match="could not be read"):
        load_network_pickle(junk, trust=True)


def test_missing_module_names_code_dir(tmp_path, monkeypatch):
    """NVlabs pickles import dnnlib/torch_utils; without them the error says
    which module and how to provide it (code_dir); with code_dir it loads."""
    code = tmp_path / "checkout"
    code.mkdir()
    (code / "fake_torch_utils_sb.py").write_text(textwrap.dedent("""
        class Net:
            def __init__(self):
                self.z_dim = 7
    """))
    monkeypatch.setattr(sys, "path", [str(code), *sys.path])
    import fake_torch_utils_sb

    path = write_pickle(tmp_path / "net.pkl", {"G_ema": fake_torch_utils_sb.Net()})
    sys.path.remove(str(code))
    monkeypatch.delitem(sys.modules, "fake_torch_utils_sb")
    with pytest.raises(UserError, match="'fake_torch_utils_sb'.*code_dir=PATH_TO_CHECKOUT"):
        load_network_pickle(path, trust=True)
    assert load_network_pickle(path, trust=True, code_dir=code, key="G_ema").z_dim == 7
    with pytest.raises(UserError, match="not a folder"):
        load_network_pickle(path, trust=True, code_dir=tmp_path / "missing")


@pytest.fixture()
def fake_pkl(tmp_path):
    return write_pickle(tmp_path / "stylegan3-fake.pkl", {"G": FakeG(), "D": None, "G_ema": FakeG()})


def test_stylegan3_refuses_pickle_without_opt_in(fake_pkl, smoke_digits, tmp_path):
    with pytest.raises(UserError, match="trust_pickle=true"):
        fit_generator("stylegan3", smoke_digits, tmp_path, network_pkl=str(fake_pkl))


def test_stylegan3_samples_from_an_official_pickle(fake_pkl, smoke_digits, tmp_path, monkeypatch):
    """fit trains nothing; sample calls G_ema(z, c, truncation_psi, noise_mode='const'),
    converts [-1, 1] RGB 16x16 to the dataset's uint8 8x8x1; same seeds same bytes,
    batch-independent, labels change the image, psi reaches G."""
    from synthbench.generators import stylegan3 as sg3

    monkeypatch.setattr(sg3.StyleGAN3Generator, "_train", lambda *a: pytest.fail("must not train"))
    gen = fit_generator("stylegan3", smoke_digits, tmp_path, network_pkl=str(fake_pkl), trust_pickle="true",
                        psi="0.7", eval_batch="4")
    labels, seeds = torch.tensor([0, 1, 2, 3, 4, 5]), [10, 11, 12, 13, 14, 15]
    x = gen.sample(labels, seeds)
    assert x.dtype == torch.uint8 and x.shape == (6, 1, 8, 8)
    assert torch.equal(x, gen.sample(labels, seeds))
    assert torch.equal(x[2:3], gen.sample(labels[2:3], seeds[2:3]))
    assert not torch.equal(gen.sample(torch.tensor([0]), [10]), gen.sample(torch.tensor([1]), [10]))
    assert set(gen.net.calls) == {(0.7, "const")}
    assert gen.fit_identity()["network_pkl_sha256"] == file_sha256(fake_pkl)
    assert not list((tmp_path / "generators").glob("*"))


def test_stylegan3_rejects_a_pickle_for_other_classes(tmp_path, smoke_digits):
    path = write_pickle(tmp_path / "net.pkl", {"G_ema": FakeG(c_dim=1000)})
    with pytest.raises(UserError, match="1000 classes"):
        fit_generator("stylegan3", smoke_digits, tmp_path, network_pkl=str(path), trust_pickle="true")


def test_unconditional_pickle_is_pseudo_labelled(tmp_path, smoke_digits):
    path = write_pickle(tmp_path / "net.pkl", {"G_ema": FakeG(c_dim=0)})
    gen = fit_generator("stylegan3", smoke_digits, tmp_path, network_pkl=str(path), trust_pickle="true")
    assert gen.conditional is False
    assert gen.sample(torch.tensor([3, 3]), [1, 2]).shape == (2, 1, 8, 8)
