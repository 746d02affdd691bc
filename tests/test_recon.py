import torch

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.benchmark.registry import GENERATORS, PROTOCOLS
from synthbench.benchmark.runner import PluginChoice, run_grid
from synthbench.benchmark.store import ResultStore

CPU = torch.device("cpu")


def _choice(reg, name, **given):
    return PluginChoice(name, resolve_options(reg.get(name).options, given, name))


def test_recon_sweep_gives_accuracy_and_entropy_per_t_re(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_grid(smoke_digits, [_choice(GENERATORS, "edm", eval_batch="64")],
                     _choice(PROTOCOLS, "recon", t_re="0,20,100"), PRESETS["smoke"], [0], CPU, store)
    rec = cells[0].record
    assert rec["status"] == "ok", rec.get("error")
    for t in (0, 20, 100):
        assert 0 <= rec["metrics"][f"top1_t{t}"]["value"] <= 1
        assert rec["metrics"][f"entropy_train_t{t}"]["value"] >= 0
        assert len(rec["details"]["pca"]["reconstructed"][f"t{t}"]) == len(rec["details"]["pca"]["real"])
    assert rec["details"]["curve"]["t_re"] == [0, 20, 100]
    # t_re = 0 is the real split: its projection is the real one, and its
    # feature-space distance to the real split is nil (seed 000 Fig. 3b's start)
    assert rec["details"]["pca"]["reconstructed"]["t0"] == rec["details"]["pca"]["real"]
    assert abs(rec["metrics"]["fid_t0"]["value"]) < 1e-6
    assert rec["metrics"]["precision_t0"]["value"] == rec["metrics"]["recall_t0"]["value"] == 1.0
    # full reconstruction (pure samples of a smoke-trained EDM) moves away from the real split
    assert rec["metrics"]["fid_t100"]["value"] > 10 * max(rec["metrics"]["fid_t0"]["value"], 1e-3)
    assert rec["details"]["curve"]["fid"][0] == rec["metrics"]["fid_t0"]["value"]
    cams = rec["details"]["gradcam"]
    assert set(cams) == {"t0", "t20", "t100"}
    assert cams["t0"]["labels"] == list(range(10))
    # a second seed reuses the cached reconstructions
    before = sorted(p.name for p in (tmp_path / "cache" / "recon").iterdir())
    run_grid(smoke_digits, [_choice(GENERATORS, "edm", eval_batch="64")],
             _choice(PROTOCOLS, "recon", t_re="0,20,100"), PRESETS["smoke"], [1], CPU, store)
    assert sorted(p.name for p in (tmp_path / "cache" / "recon").iterdir()) == before


def test_recon_on_a_generator_that_cannot_reconstruct(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_grid(smoke_digits, [_choice(GENERATORS, "real")], _choice(PROTOCOLS, "recon"),
                     PRESETS["smoke"], [0], CPU, store)
    rec = cells[0].record
    assert rec["status"] == "unsupported" and "cannot reconstruct" in rec["error"]
    again = run_grid(smoke_digits, [_choice(GENERATORS, "real")], _choice(PROTOCOLS, "recon"),
                     PRESETS["smoke"], [0], CPU, store)
    assert again[0].cached
