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
