import pytest
import torch

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.presets import PRESETS
from synthbench.plugins import GENERATORS, PROTOCOLS
from synthbench.benchmark.runner import PluginChoice, run_grid
from synthbench.benchmark.store import ResultStore
from synthbench.errors import UserError

CPU = torch.device("cpu")


def _choice(kind, name, **given):
    reg = GENERATORS if kind == "g" else PROTOCOLS
    return PluginChoice(name, resolve_options(reg.get(name).options, given, name))


def test_scaleup_curve_and_reference(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_grid(smoke_digits, [_choice("g", "edm", eval_batch="64")],
                     _choice("p", "scaleup", multiples="1,3"), PRESETS["smoke"], [0], CPU, store)
    rec = cells[0].record
    assert rec["status"] == "ok", rec.get("error")
    curve = rec["details"]["curve"]
    assert curve["multiples"] == [1, 3] and len(curve["top1"]) == 2
    n = len(smoke_digits.train)
    assert rec["details"]["train_sizes"] == [n, 3 * n]
    assert rec["metrics"]["top1"]["value"] == rec["metrics"]["top1_x3"]["value"]
    reached = rec["details"]["reached_real_at"]
    assert (reached == "not reached") == ("multiple_reaching_real" not in rec["metrics"])
    # the x3 pool was generated once; x1 is its prefix
    pools = list((tmp_path / "cache" / "samples").glob("edm-*.npz"))
    assert len(pools) == 1


def test_scaleup_real_reaches_itself(smoke_digits, tmp_path):
    cells = run_grid(smoke_digits, [_choice("g", "real")], _choice("p", "scaleup", multiples="1", budget="steps"),
                     PRESETS["smoke"], [0], CPU, ResultStore(tmp_path))
    rec = cells[0].record
    assert rec["metrics"]["top1_x1"]["value"] == rec["metrics"]["real_top1"]["value"]
    assert rec["details"]["reached_real_at"] == 1 and rec["details"]["budget"] == "steps"


@pytest.mark.parametrize("bad", ["0,2", "1,11", "1,1", "a"])
def test_bad_multiples(bad):
    with pytest.raises(UserError):
        resolve_options(PROTOCOLS.get("scaleup").options, {"multiples": bad}, "scaleup")
