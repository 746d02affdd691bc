import re

import pytest

from synthbench.benchmark.options import resolve_options
from synthbench.benchmark.store import ResultStore
from synthbench.errors import UserError
from synthbench.plugins import PROTOCOLS

from conftest import run_cells


def test_scaleup_curve_and_reference(smoke_digits, tmp_path):
    store = ResultStore(tmp_path)
    cells = run_cells(smoke_digits, {"edm": {"eval_batch": "64"}}, {"scaleup": {"multiples": "1,3"}}, [0], store)
    rec = cells[0].record
    assert rec.status == "ok", rec.error
    curve = rec.details["curve"]
    assert curve["multiples"] == [1, 3] and len(curve["top1"]) == 2
    n = len(smoke_digits.train)
    assert rec.details["train_sizes"] == [n, 3 * n]
    assert rec.metrics["top1"]["value"] == rec.metrics["top1_x3"]["value"]
    reached = rec.details["reached_real_at"]
    assert (reached == "not reached") == ("multiple_reaching_real" not in rec.metrics)
    # the x3 pool was generated once; x1 is its prefix
    pools = list((tmp_path / "cache" / "samples").glob("edm-*.npz"))
    assert len(pools) == 1 and re.fullmatch(r"edm-[0-9a-f]{24}\.npz", pools[0].name)


def test_scaleup_real_reaches_itself(smoke_digits, tmp_path):
    cells = run_cells(smoke_digits, ["real"], {"scaleup": {"multiples": "1", "budget": "steps"}}, [0],
                      ResultStore(tmp_path))
    rec = cells[0].record
    assert rec.metrics["top1_x1"]["value"] == rec.metrics["real_top1"]["value"]
    assert rec.details["reached_real_at"] == 1 and rec.details["budget"] == "steps"


@pytest.mark.parametrize("bad", ["0,2", "1,11", "1,1", "a"])
def test_bad_multiples(bad):
    with pytest.raises(UserError):
        resolve_options(PROTOCOLS.get("scaleup").options, {"multiples": bad}, "scaleup")
