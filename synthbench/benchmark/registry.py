"""One generic, lazy and loud plugin registry for datasets, generators and protocols
(the three instances, with the built-ins' names, are in ``synthbench/plugins.py``).

Built-ins are a ``name -> "module:attribute"`` map, imported only on lookup, so
``import synthbench`` never imports diffusers. Third-party plugins register under
an entry-point group per kind. An unknown name fails with the known names and a
"did you mean"; a plugin that fails to import fails loudly instead of vanishing;
two plugins with the same name are rejected; a plugin that does not subclass its
kind's base class (``synthbench.api.Generator``, ``Protocol``, ``DatasetLoader``) is
rejected with the name of that base. The bases, like the built-ins, are named as
``"module:Class"`` strings, so this module imports no plugin package.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from synthbench.errors import UserError


class Registry:
    """Name -> plugin class, built-ins first, then entry points of ``group``."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str], base: str, wrap: str | None = None):
        self.kind = kind
        self.group = group
        self.base = base
        self.wrap = wrap
        """``"module:function"`` applied to each plugin that is not built in, once
        it passes the checks: e.g. one that checks what a dataset plugin loads."""
        self._targets: dict[str, str] = dict(builtins)
        self._origin: dict[str, str] = {name: "built-in" for name in builtins}
        self._loaded: dict[str, Any] = {}
        self._scanned = False

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            if ep.name in self._targets:
                raise UserError(
                    f"Two {self.kind} plugins are named {ep.name!r}: the "
                    f"{self._origin[ep.name]} one and {ep.value!r} from the entry point "
                    f"group {self.group!r}. Rename one of them (uninstall the package "
                    f"that registers {ep.value!r}, or change its entry-point name)."
                )
            self._targets[ep.name] = ep.value
            self._origin[ep.name] = f"entry point ({ep.dist.name if ep.dist else ep.value})"

    def register(self, name: str, target: str | type) -> None:
        """Add a plugin at run time (tests, notebooks). Same-name registration fails."""
        self._scan_entry_points()
        if name in self._targets or name in self._loaded:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if isinstance(target, str):
            self._targets[name] = target
        else:
            checked = self._checked(name, target)  # before recording it: a rejected class is not listed
            self._targets[name] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[name] = self._wrapped(checked, builtin=False)
        self._origin[name] = "registered at run time"

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)
        self._loaded.pop(name, None)
        self._origin.pop(name, None)

    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(self._targets)

    def origin(self, name: str) -> str:
        self._scan_entry_points()
        return self._origin[name]

    def get(self, name: str) -> Any:
        """The plugin class for ``name``, imported now if it was not yet."""
        self._scan_entry_points()
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._targets:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            other = _kind_of(name, self)
            if other:
                hint = f" {name!r} is a {other} plugin, not a {self.kind}.{hint}"
            raise UserError(
                f"Unknown {self.kind} {name!r}.{hint} Known {self.kind}s: "
                f"{', '.join(known)}. `synthbench list {self.kind}s` describes each."
            )
        target = self._targets[name]
        try:
            obj = _import(target)
        except Exception as exc:  # loud: a broken plugin must never vanish silently
            raise UserError(
                f"The {self.kind} plugin {name!r} ({target}, {self._origin[name]}) failed "
                f"to import: {type(exc).__name__}: {exc}. {_import_hint(exc)}"
            ) from exc
        obj = self._wrapped(self._checked(name, obj), builtin=self._origin[name] == "built-in")
        self._loaded[name] = obj
        return obj

    def _wrapped(self, obj: Any, builtin: bool) -> Any:
        """``obj`` through :attr:`wrap` unless it is built in (the conformance tests check those)."""
        return obj if builtin or self.wrap is None else _import(self.wrap)(obj)

    def _checked(self, name: str, obj: Any) -> Any:
        base = _import(self.base)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            what = obj.__qualname__ if isinstance(obj, type) else type(obj).__name__
            raise UserError(
                f"The {self.kind} plugin {name!r} ({self._targets.get(name, what)}, {self._origin.get(name, '?')}) "
                f"is {what}, which does not subclass synthbench.api.{base.__name__}. A {self.kind} plugin must be a "
                f"subclass of it (examples/synthbench-classgauss shows a complete generator adapter)."
            )
        problems = declaration_problems(self.kind, obj, base)
        declared_name = getattr(obj, "name", None)
        if self.kind != "dataset" and declared_name != name:  # a run names cells and looks plugins up by cls.name
            problems.insert(0, f"name = {declared_name!r}, but it is registered as {name!r}; give the class's name "
                               f"and the entry point's the same value")
        if problems:
            raise UserError(
                f"The {self.kind} plugin {name!r} ({self._targets.get(name, obj.__qualname__)}, "
                f"{self._origin.get(name, '?')}) declares itself wrongly: {'; '.join(problems)}. Fix the class "
                f"(synthbench.api.{base.__name__}'s docstring lists what it declares) and run again."
            )
        return obj


def declaration_problems(kind: str, cls: type, base: type) -> list[str]:
    """What is wrong with a plugin class's declarations, checked when it is first
    looked up, so that every command refuses it before anything runs: an
    integer ``version`` (records key on it; a string made ``evaluate`` fail
    every cell with a message about the record schema), ``options`` a dict of
    ``Option`` whose defaults pass their own checks (a default that fails them
    ran as given, with status ``ok``), and for a protocol ``metrics`` mapping
    each name to a ranking rule, and a ``headline`` it declares that is one of
    them and ranks (an undeclared one was accepted, and the tables silently led
    with another metric)."""
    from synthbench.benchmark.metrics import Target, declared_key
    from synthbench.benchmark.options import Option

    problems = []
    version = getattr(cls, "version", None)
    if not isinstance(version, int) or isinstance(version, bool):
        problems.append(f"version = {version!r} is not an integer; declare a whole number (version = 1) and bump "
                        f"it whenever the outputs change")
    options = getattr(cls, "options", {})
    if not isinstance(options, dict) or not all(isinstance(o, Option) for o in options.values()):
        problems.append("options must be a dict of name -> synthbench.api.Option")
    else:
        for key, opt in options.items():
            if opt.name != key:
                problems.append(f"the option under the key {key!r} is named {opt.name!r}; use one name for both")
                continue
            if opt.default is None:  # unset: the preset's default, or the plugin's own None handling
                continue
            try:
                parsed = opt.parse(opt.default, f"{kind} {getattr(cls, 'name', cls.__qualname__)}")
            except UserError as exc:
                problems.append(f"the default of its option {key!r} fails the option's own check ({exc}); "
                                f"give a default that passes it")
                continue
            if parsed != opt.default:  # the default reaches opts as written, unparsed: "10" for an int option
                problems.append(f"the default of its option {key!r} is {opt.default!r}, which the option reads as "
                                f"{parsed!r}; declare the default as the value itself ({parsed!r})")
    if kind == "protocol":
        metrics = getattr(cls, "metrics", None)
        rules_ok = isinstance(metrics, dict) and metrics and all(
            rule is None or isinstance(rule, (bool, Target)) for rule in metrics.values())
        if not rules_ok:
            problems.append(f"metrics = {metrics!r} must map every metric it may emit to its ranking rule: True "
                            f"(higher is better), False (lower is better), synthbench.api.Target(value) (closest "
                            f"to value) or None (a diagnostic)")
        elif any("headline" in vars(c) for c in cls.__mro__[:cls.__mro__.index(base)]):
            # one it declares (an inherited base default, "top1", falls back to the first column)
            headline = getattr(cls, "headline", None)
            key = declared_key(metrics, headline) if isinstance(headline, str) else None
            if key is None:
                problems.append(f"headline = {headline!r} is not one of its declared metrics "
                                f"({', '.join(metrics)}); name the metric the tables lead with")
            elif metrics[key] is None:
                problems.append(f"headline = {headline!r} is declared a diagnostic (None), which ranks nothing; "
                                f"the headline must rank generators")
    return problems


def _kind_of(name: str, asking: Registry) -> str | None:
    """The kind of the catalogue's other registry that knows ``name``, if one
    does (``synthbench validate meanacc``: a protocol, not a generator)."""
    from synthbench import plugins

    for reg in (plugins.DATASETS, plugins.GENERATORS, plugins.PROTOCOLS):
        if reg is not asking and reg.kind != asking.kind and name in reg.names():
            return reg.kind
    return None


def _import_hint(exc: BaseException) -> str:
    """What to do about a plugin's failed import: a name or module of synthbench
    that is not the public interface is the plugin's to fix, anything else is a
    missing dependency."""
    missing = getattr(exc, "name", None) or ""
    if isinstance(exc, ImportError) and missing.startswith("synthbench"):
        import synthbench.api as api

        return (f"A plugin imports from synthbench.api only (the stable interface; other modules change without "
                f"notice), which holds: {', '.join(api.__all__)}.")
    return "Install what it needs or fix the package that provides it."


def _import(target: str) -> Any:
    """The object a ``"module:attribute"`` string names."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
