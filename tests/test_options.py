import pytest

from synthbench.benchmark.options import Option, parse_int_list, resolve_options, split_cli_options
from synthbench.errors import UserError

SPEC = {
    "ratio": Option("ratio", 1.0, "How much.", float, check=lambda v: 0 <= v <= 10, check_help="0..10"),
    "flag": Option("flag", False, "On or off.", bool),
    "mode": Option("mode", "a", "Which.", str, choices=("a", "b")),
    "steps": Option("steps", (0,), "Steps.", parse_int_list),
}


def test_defaults_and_parsing():
    assert resolve_options(SPEC, {}, "p") == {"ratio": 1.0, "flag": False, "mode": "a", "steps": (0,)}
    got = resolve_options(SPEC, {"ratio": "2.5", "flag": "yes", "mode": "b"}, "p")
    assert got == {"ratio": 2.5, "flag": True, "mode": "b", "steps": (0,)}


@pytest.mark.parametrize("given, words", [
    ({"ratio": "lots"}, "not a valid float"),
    ({"ratio": "11"}, "0..10"),
    ({"mode": "c"}, "must be one of a, b"),
    ({"flag": "maybe"}, "not a valid"),
    ({"nope": "1"}, "has no option nope"),
    ({"steps": "a,b"}, r"steps='a,b' of p is not a valid value \("),  # not the parse function's name
])
def test_bad_values_say_what_is_wrong(given, words):
    with pytest.raises(UserError, match=words):
        resolve_options(SPEC, given, "p")


def test_routing_by_key_and_prefix():
    targets = {"edm": {"churn": None, "seed": None}, "augment": {"ratio": None, "seed": None}}
    assert split_cli_options(["churn=1", "ratio=2"], targets) == {"edm": {"churn": "1"}, "augment": {"ratio": "2"}}
    assert split_cli_options(["augment.seed=3"], targets)["augment"] == {"seed": "3"}
    with pytest.raises(UserError, match="prefix it"):
        split_cli_options(["seed=3"], targets)
    with pytest.raises(UserError, match="KEY=VALUE"):
        split_cli_options(["churn"], targets)
    with pytest.raises(UserError, match="No plugin"):
        split_cli_options(["zzz=1"], targets)


def test_int_list():
    assert parse_int_list("0, 30,50") == (0, 30, 50)
    with pytest.raises(ValueError):
        parse_int_list("")


def test_an_option_declared_from_preset_follows_the_run_unless_given():
    """A generator's sampler ``precision`` follows the run's (``--precision``, else
    the preset's), and is written into the resolved options, so the spec names
    it; a given value wins, and without a preset the declared default holds."""
    from synthbench.benchmark.presets import get_preset

    spec = {"precision": Option("precision", "fp32", "Arithmetic.", str, choices=("fp32", "bf16"),
                                from_preset="precision"), **SPEC}
    assert resolve_options(spec, {}, "p")["precision"] == "fp32"
    assert resolve_options(spec, {}, "p", get_preset("fast"))["precision"] == "fp32"
    assert resolve_options(spec, {}, "p", get_preset("fast", "bf16"))["precision"] == "bf16"
    assert resolve_options(spec, {}, "p", get_preset("paper"))["precision"] == "bf16"
    assert resolve_options(spec, {"precision": "fp32"}, "p", get_preset("paper"))["precision"] == "fp32"
    assert resolve_options(spec, {}, "p", get_preset("paper"))["mode"] == "a"  # others keep their defaults


def test_the_runs_precision_reaches_the_diffusion_samplers_and_keeps_fast_keys(smoke_digits):
    """``--precision bf16`` makes edm, ddpm and realfake sample in bf16 (a
    different cell); at the preset's fp32 their options, and so the keys of the
    published records, are what they were; ``real`` declares no precision."""
    from synthbench.benchmark.presets import get_preset
    from synthbench.benchmark.runner import resolve_grid

    names = {"real": {}, "edm": {}, "ddpm": {}, "realfake": {}}
    fp32 = resolve_grid(smoke_digits, names, ["replace"], "fast", (0,))
    bf16 = resolve_grid(smoke_digits, names, ["replace"], get_preset("fast", "bf16"), (0,))
    mixed = resolve_grid(smoke_digits, {"edm": {"precision": "fp32"}}, ["replace"], get_preset("fast", "bf16"),
                         (0,))
    assert [g.options.get("precision") for g in fp32.generators] == [None, "fp32", "fp32", "fp32"]
    assert [g.options.get("precision") for g in bf16.generators] == [None, "bf16", "bf16", "bf16"]
    # their in-suite training follows the run's precision too
    assert [g.options.get("train_precision") for g in fp32.generators] == [None, "fp32", "fp32", "fp32"]
    assert [g.options.get("train_precision") for g in bf16.generators] == [None, "bf16", "bf16", "bf16"]
    assert mixed.generators[0].options["precision"] == "fp32"
    assert [g.label for g in fp32.generators] == ["real", "edm", "ddpm", "realfake"]
    keys = {name: [spec.key for gen, spec in grid.specs(grid.protocols[0]) if gen.name == "edm"]
            for name, grid in (("fp32", fp32), ("bf16", bf16), ("mixed", mixed))}
    assert keys["fp32"] != keys["bf16"] != keys["mixed"] != keys["fp32"]
    spec = next(spec for gen, spec in fp32.specs(fp32.protocols[0]) if gen.name == "edm")
    assert spec.generator_options["precision"] == "fp32" and spec.preset["precision"] == "fp32"


def test_compile_keys_classifiers_apart_and_leaves_every_other_key_alone(smoke_digits):
    """``--compile`` (the preset's ``compile``) keys the cells apart; without it
    no spec changes: the preset keeps no ``compile`` field, ``records migrate``
    adds none, and the diffusion networks keep their own ``compile`` option."""
    from synthbench.benchmark.cell import current_spec
    from synthbench.benchmark.presets import get_preset
    from synthbench.benchmark.runner import resolve_grid

    names = {"edm": {}, "ddpm": {}}
    plain = resolve_grid(smoke_digits, names, ["replace"], "fast", (0,))
    off = resolve_grid(smoke_digits, names, ["replace"], get_preset("fast", None, False), (0,))
    on = resolve_grid(smoke_digits, names, ["replace"], get_preset("fast", None, True), (0,))
    assert [g.options["compile"] for g in on.generators] == [False, False]
    specs = {name: [spec for _, spec in grid.specs(grid.protocols[0])] for name, grid in
             (("plain", plain), ("off", off), ("on", on))}
    assert [s.key for s in specs["plain"]] == [s.key for s in specs["off"]]
    assert all("compile" not in s.preset and current_spec(s) == s for s in specs["plain"])
    assert all(s.preset["compile"] is True and current_spec(s) == s for s in specs["on"])
    assert not {s.key for s in specs["on"]} & {s.key for s in specs["plain"]}


@pytest.mark.parametrize("avx512_bf16, amx, warned", [(False, False, True), (True, False, False),
                                                     (False, True, False)])
def test_bf16_on_a_cpu_that_emulates_it_is_warned(monkeypatch, capsys, avx512_bf16, amx, warned):
    """A run asking for bf16 classifiers on a CPU with neither AVX512-BF16 nor
    AMX says that torch emulates bf16 there (10x slower), and still runs."""
    import torch

    from synthbench.benchmark import progress
    from synthbench.benchmark.runner import make_grid

    monkeypatch.setattr(progress, "_enabled", True)  # status lines, off in the tests
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    grid = make_grid({"real": {}}, ["replace"], "digits", "smoke", (0,), "cpu", precision="bf16")
    assert grid.preset.precision == "bf16"
    assert ("emulates" in capsys.readouterr().err) == warned


def test_precision_auto_is_decided_for_the_device_before_any_cell_is_keyed(monkeypatch, smoke_digits):
    """``--precision auto``: bf16 on a CPU with AMX, fp32 on one without (or with
    a torch that has no AMX probe); the spec never holds "auto"."""
    import torch

    from synthbench.benchmark.presets import get_preset, run_precision
    from synthbench.benchmark.runner import resolve_grid

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert run_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert run_precision("auto", "cpu") == "fp32"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert run_precision("auto", "cpu") == "fp32"
    assert [run_precision(p, "cpu") for p in (None, "fp32", "bf16")] == [None, "fp32", "bf16"]
    with pytest.raises(UserError, match="choose one of fp32, bf16, auto"):
        run_precision("fp16", "cpu")
    grid = resolve_grid(smoke_digits, {"edm": {}}, ["replace"], get_preset("smoke", run_precision("auto", "cpu")),
                        (0,))
    spec = next(spec for _, spec in grid.specs(grid.protocols[0]))
    assert spec.preset["precision"] == spec.generator_options["precision"] == "fp32"
