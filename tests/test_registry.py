import sys
import textwrap

import pytest

from synthbench.plugins import GENERATORS, PROTOCOLS, Registry
from synthbench.errors import UserError


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError) as err:
        GENERATORS.get("edn")
    msg = str(err.value)
    assert "Did you mean 'edm'" in msg and "real" in msg


def test_builtins_are_lazy():
    reg = Registry("widget", "synthbench.test-widgets", {"a": "no.such.module:Thing"})
    assert reg.names() == ["a"]  # listed without importing
    with pytest.raises(UserError, match="failed to import"):
        reg.get("a")  # and loud when the import fails


def test_duplicate_names_are_rejected():
    reg = Registry("widget", "synthbench.test-widgets", {"a": "x:y"})
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
    """))
    dist = tmp_path / "sb_extra_proto-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sb-extra-proto\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[synthbench.protocols]\nextra = sb_extra_proto:Extra\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("protocol", "synthbench.protocols", {"replace": "synthbench.protocols.replace:ReplaceProtocol"})
    assert "extra" in reg.names()
    assert reg.get("extra").metrics == {"x": True}
    assert "entry point" in reg.origin("extra")
    sys.modules.pop("sb_extra_proto", None)


def test_every_builtin_imports():
    for reg in (GENERATORS, PROTOCOLS):
        for name in reg.names():
            assert reg.get(name).name == name
