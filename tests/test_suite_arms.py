"""Ablation arms in suite files: a generator (or a protocol) mapped to a list of
option mappings is one row per mapping, through the whole path (suite file,
grid, plan, labels, tables, status), and a suite without lists plans exactly as
before. Nothing here trains: grids are resolved on the loaded digits data and
plans built, never run."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthbench.benchmark.cell import CellOutcome, Record, Status, choice_label
from synthbench.benchmark.options import Option, options_label
from synthbench.benchmark.plan import Setting, build_plan
from synthbench.benchmark.runner import resolve_grid
from synthbench.benchmark.suite import load_suite
from synthbench.errors import UserError
from test_cli import run_cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

ARMS = """
name: arms
dataset: digits
preset: smoke
seeds: [0, 1]
device: cpu
threads: 1
generators:
  real: {}
  realfake:
    - {}
    - {mmd: false}
    - {visual_guidance: false, mmd: false}
protocols: {protocols}
"""


def write(tmp_path: Path, text: str, name: str = "arms.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def arms_suite(tmp_path: Path, protocols: str = "{replace: {}}") -> Path:
    return write(tmp_path, ARMS.replace("{protocols}", protocols))


def test_options_label_names_what_differs_from_the_defaults_as_a_suite_writes_it():
    declared = {"mmd": Option("mmd", True, "", bool), "steps": Option("steps", None, "", int),
                "multiples": Option("multiples", (1, 2), "", str),
                "batch": Option("batch", 256, "", int, in_key=False)}
    assert options_label(declared, {"mmd": True, "steps": None, "multiples": [1, 2], "batch": 64}) == ""
    assert options_label(declared, {"mmd": False, "steps": 0, "multiples": (1, 5)}) == \
        "mmd=false, multiples=1,5, steps=0"
    assert options_label(declared, {"other": 1}) == "other=1"  # not declared (another version): shown
    assert choice_label("realfake", declared, {"mmd": False}) == "realfake (mmd=false)"
    assert choice_label("realfake", declared, {}) == "realfake"


def test_the_list_form_parses_one_mapping_per_row(tmp_path):
    suite = load_suite(arms_suite(tmp_path, "{replace: {}, scaleup: [{}, {multiples: '1,2'}]}"))
    assert suite.generators == {"real": {}, "realfake": [{}, {"mmd": False},
                                                         {"visual_guidance": False, "mmd": False}]}
    assert suite.protocols == {"replace": {}, "scaleup": [{}, {"multiples": "1,2"}]}
    assert "realfake" in suite.generators and list(suite.generators) == ["real", "realfake"]


@pytest.mark.parametrize("generators, protocols, message", [
    ("{real: {}, realfake: []}", "{replace: {}}", "generators.realfake is an empty list"),
    ("{real: {}, realfake: [{mmd: false}, {prior_init: false}, {mmd: false}]}", "{replace: {}}",
     r"generators.realfake\[2\] repeats generators.realfake\[0\]"),
    ("{real: {}, realfake: [{}, {}]}", "{replace: {}}", r"generators.realfake\[1\] repeats"),
    ("{real: {}, realfake: [{}, mmd]}", "{replace: {}}", r"generators.realfake\[1\] must be a mapping"),
    ("{real: {}}", "{scaleup: [{multiples: '1,2'}, {multiples: '1,2'}]}", r"protocols.scaleup\[1\] repeats"),
    ("{real: {}}", "{scaleup: []}", "protocols.scaleup is an empty list"),
])
def test_empty_lists_and_repeated_rows_are_errors_naming_the_file_and_key(tmp_path, generators, protocols,
                                                                           message):
    path = write(tmp_path, f"dataset: digits\ngenerators: {generators}\nprotocols: {protocols}\n", "bad.yaml")
    with pytest.raises(UserError, match=message) as info:
        load_suite(path)
    assert str(path) in str(info.value)


def test_rows_that_resolve_to_the_same_options_are_an_error(smoke_digits):
    """{} and {mmd: true} are one row (mmd is on by default): the parser cannot
    know the defaults, the grid can."""
    with pytest.raises(UserError, match="realfake .*same row"):
        resolve_grid(smoke_digits, {"realfake": [{}, {"mmd": True}]}, "replace", "smoke", (0,))
    with pytest.raises(UserError, match="same row"):  # stylegan3's eval_batch does not change outputs: not in the key
        resolve_grid(smoke_digits, {"stylegan3": [{}, {"eval_batch": 8}]}, "replace", "smoke", (0,))
    # the diffusion samplers' eval_batch can move an image in the last bits: set, it is another row
    grid = resolve_grid(smoke_digits, {"realfake": [{}, {"eval_batch": 8}]}, "replace", "smoke", (0,))
    assert len(grid.generators) == 2
    with pytest.raises(UserError, match="empty list"):
        resolve_grid(smoke_digits, {"realfake": []}, "replace", "smoke", (0,))


def test_real_stays_first_and_exact_repeats_are_one_row(smoke_digits):
    grid = resolve_grid(smoke_digits, {"edm": {}, "real": {}}, "replace", "smoke", (0,), with_real=True)
    assert [g.name for g in grid.generators] == ["real", "edm"]
    grid = resolve_grid(smoke_digits, ["edm", "edm"], "replace", "smoke", (0,), with_real=True)
    assert [g.name for g in grid.generators] == ["real", "edm"]
    grid = resolve_grid(smoke_digits, {"edm": {}, "real": {}}, "replace", "smoke", (0,))
    assert [g.name for g in grid.generators] == ["edm", "real"]  # without with_real: the order given


def test_a_grid_from_the_list_form_has_one_row_per_arm_with_distinct_cells(tmp_path, smoke_digits):
    suite = load_suite(arms_suite(tmp_path, "{replace: {}, scaleup: [{}, {multiples: '1,2'}]}"))
    grid = resolve_grid(smoke_digits, suite.generators, suite.protocols, suite.preset, suite.seeds)
    assert [g.label for g in grid.generators] == [
        "real", "realfake", "realfake (mmd=false)", "realfake (mmd=false, visual_guidance=false)"]
    assert [p.label for p in grid.protocols] == ["replace", "scaleup", "scaleup (multiples=1,2)"]
    keys = [spec.key for proto in grid.protocols for _, spec in grid.specs(proto)]
    assert len(keys) == 4 * 3 * 2 and len(set(keys)) == len(keys)


def test_a_list_of_one_mapping_keys_the_cells_as_the_mapping_does(smoke_digits):
    """A suite without lists plans exactly as before, and `realfake: [{}]` is
    `realfake: {}`: the same cells, the same keys."""
    one = resolve_grid(smoke_digits, {"realfake": {"mmd": False}}, "replace", "smoke", (0, 1))
    listed = resolve_grid(smoke_digits, {"realfake": [{"mmd": False}]}, {"replace": [{}]}, "smoke", (0, 1))
    assert [s.to_json() for _, s in one.specs(one.protocols[0])] == \
        [s.to_json() for _, s in listed.specs(listed.protocols[0])]


def test_the_plan_labels_every_arm_apart(tmp_path, smoke_digits):
    suite = load_suite(arms_suite(tmp_path))
    grid = resolve_grid(smoke_digits, suite.generators, suite.protocols, suite.preset, suite.seeds)
    setting = Setting(dataset="digits", preset="smoke", results=str(tmp_path / "r"), device="cpu", threads=1)
    plan = build_plan([(setting, grid)])
    for kind in ("fit", "pool", "cell"):
        labels = [t.label for t in plan.by_kind(kind)]
        assert len(set(labels)) == len(labels), (kind, labels)
    cells = {t.label for t in plan.by_kind("cell")}
    assert "realfake x replace x digits seed 0" in cells  # the default row reads as before
    assert "realfake (mmd=false) x replace x digits seed 1" in cells
    assert "fit realfake (mmd=false, visual_guidance=false) on digits" in {t.label for t in plan.by_kind("fit")}
    assert len(plan.by_kind("cell")) == 4 * 2


def test_run_dry_run_and_status_show_each_arm(tmp_path, capsys):
    path = arms_suite(tmp_path)
    code, out, err = run_cli(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run"], capsys)
    assert code == 0, err
    assert "realfake (mmd=false) x replace x digits seed 0" in out
    assert "realfake (mmd=false, visual_guidance=false) samples seed 1 on digits" in out
    code, out, err = run_cli(["status", str(path), "--results", str(tmp_path / "r")], capsys)
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| digits")]
    assert len(rows) == 4 and any("realfake (mmd=false) " in r for r in rows), out
    assert "of 8" in out


def test_tables_give_each_generator_and_protocol_arm_its_own_row(tmp_path, smoke_digits, capsys):
    """What `synthbench run` prints after a suite: one table per protocol arm, one
    row per generator arm (records made up here; nothing is computed)."""
    from synthbench.suite_cli import _print_tables

    suite = load_suite(arms_suite(tmp_path, "{scaleup: [{}, {multiples: '1,2'}]}"))
    grid = resolve_grid(smoke_digits, suite.generators, suite.protocols, suite.preset, suite.seeds)
    cells = [CellOutcome(spec, Record(spec=spec, status=Status.OK, cost={"wall_s": {"cell_s": 1.0}}), True)
             for proto in grid.protocols for _, spec in grid.specs(proto)]
    setting = Setting(dataset="digits", preset="smoke", results=str(tmp_path / "r"), device="cpu")
    _print_tables([(setting, grid)], cells)
    out = capsys.readouterr().out
    assert "\nscaleup on digits" in out and "\nscaleup (multiples=1,2) on digits" in out
    rows = [line for line in out.splitlines() if line.startswith("| real")]
    assert len(rows) == 2 * 4  # two tables of four rows each: arms are never pooled
    assert sum("| realfake (mmd=false) " in r for r in rows) == 2
    assert all("2/2" in r for r in rows)  # each row holds its own two seeds, not another arm's


# --------------------------------------------------------------------------- the shipped ablation

TABLE_2 = [  # (fine-tuned, visual guidance, mmd, prior init), Yuan et al. 2024 (arXiv 2310.10402), Table 2
    (False, False, False, False), (True, False, False, False), (True, True, False, False),
    (True, False, True, False), (True, True, True, False), (False, False, False, True),
    (True, True, False, True), (True, False, True, True), (True, True, True, True),
]


def test_the_shipped_ablation_suite_resolves_to_table_2s_nine_rows(smoke_digits):
    """Loaded from configs/, resolved against the installed realfake options (on
    the digits data, so fashion-mnist need not be there): Table 2's nine rows,
    then one beyond it (the full recipe with a stronger MMD term)."""
    from synthbench.benchmark.presets import get_preset

    suite = load_suite(CONFIGS / "fashion-realfake-ablation.yaml")
    assert suite.datasets == ("fashion-mnist",) and suite.preset == "fast" and suite.seeds == (0, 1, 2)
    assert suite.device == "cpu" and suite.threads == 1
    assert set(suite.protocols) == {"replace", "fidelity", "detect"}
    assert suite.generators["real"] == {} and len(suite.generators["realfake"]) == 10
    grid = resolve_grid(smoke_digits, suite.generators, suite.protocols, suite.preset, suite.seeds)
    assert grid.generators[0].name == "real"
    arms, extra = grid.generators[1:-1], grid.generators[-1]
    assert len({a.label for a in arms}) == 9 and arms[-1].label == "realfake"  # row 9: the defaults
    assert extra.label == "realfake (mmd_weight=1.0)" and extra.options["mmd_weight"] == 1.0
    preset = get_preset(suite.preset)
    rows = []
    for arm, given in zip(arms, suite.generators["realfake"]):
        steps = arm.instance().setting("finetune_steps", preset)
        tuned = steps != 0
        if not tuned:  # no fine-tuning: mmd and visual guidance do nothing, so they are not set
            assert not {"mmd", "visual_guidance"} & set(given), given
        rows.append((tuned, tuned and arm.options["visual_guidance"], tuned and arm.options["mmd"],
                     arm.options["prior_init"]))
    assert rows == TABLE_2
    keys = [spec.key for proto in grid.protocols for _, spec in grid.specs(proto)]
    assert len(set(keys)) == len(keys) == 11 * 3 * 3
