import sys
import textwrap

import pytest

from synthbench.plugins import GENERATORS, PROTOCOLS, Registry
from synthbench.errors import UserError

GENERATOR_BASE = "synthbench.generators.base:Generator"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError) as err:
        GENERATORS.get("edn")
    msg = str(err.value)
    assert "Did you mean 'edm'" in msg and "real" in msg


def test_builtins_are_lazy():
    reg = Registry("widget", "synthbench.test-widgets", {"a": "no.such.module:Thing"}, base=GENERATOR_BASE)
    assert reg.names() == ["a"]  # listed without importing
    with pytest.raises(UserError, match="failed to import"):
        reg.get("a")  # and loud when the import fails


def test_duplicate_names_are_rejected():
    reg = Registry("widget", "synthbench.test-widgets", {"a": "x:y"}, base=GENERATOR_BASE)
    with pytest.raises(ValueError):
        reg.register("a", "x:z")


def test_entry_point_plugins_are_found(tmp_path, monkeypatch):
    """A package that declares an entry point in `synthbench.protocols` is found."""
    pkg = tmp_path / "sb_extra_proto"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from synthbench.protocols.base import Protocol
        class Extra(Protocol):
            name = "extra"
            metrics = {"x": True}
            headline = "x"
    """))
    dist = tmp_path / "sb_extra_proto-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sb-extra-proto\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[synthbench.protocols]\nextra = sb_extra_proto:Extra\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("protocol", "synthbench.protocols", {"replace": "synthbench.protocols.replace:ReplaceProtocol"},
                   base="synthbench.protocols.base:Protocol")
    assert "extra" in reg.names()
    assert reg.get("extra").metrics == {"x": True}
    assert "entry point" in reg.origin("extra")
    sys.modules.pop("sb_extra_proto", None)


def test_every_builtin_imports():
    for reg in (GENERATORS, PROTOCOLS):
        for name in reg.names():
            assert reg.get(name).name == name


class NotAGenerator:
    """Looks like an adapter (name, options, sample) but does not subclass the base."""

    name = "impostor"
    options: dict = {}

    def sample(self, labels, seeds):
        raise AssertionError("never called")


def test_a_plugin_that_does_not_subclass_its_base_is_rejected_with_the_base_named():
    with pytest.raises(UserError, match="does not subclass synthbench.api.Generator"):
        GENERATORS.register("impostor", NotAGenerator)
    assert "impostor" not in GENERATORS.names()
    reg = Registry("generator", "synthbench.test-widgets", {"proto": "synthbench.protocols.replace:ReplaceProtocol"},
                   base=GENERATOR_BASE)
    with pytest.raises(UserError, match="'proto'.*does not subclass synthbench.api.Generator"):
        reg.get("proto")  # a protocol is not a generator, even built in
    from synthbench.generators.real import RealGenerator

    class RealAgain(RealGenerator):
        name = "real-again"

    GENERATORS.register("real-again", RealAgain)
    try:
        assert GENERATORS.get("real-again") is RealAgain
    finally:
        GENERATORS.unregister("real-again")
