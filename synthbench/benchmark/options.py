"""Declared plugin options and the parsing of ``--option KEY=VALUE``.

Every plugin declares its options as :class:`Option` objects (name, default,
type, help, choices), so ``synthbench list`` can document them and a bad value is
rejected at the boundary with a message naming the valid ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from synthbench.errors import UserError

if TYPE_CHECKING:
    from synthbench.benchmark.presets import Preset


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def parse_int_list(text: str) -> tuple[int, ...]:
    """``"0,30,50"`` -> ``(0, 30, 50)``; used by list-valued options."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    if not parts:
        raise ValueError("expected a comma-separated list of integers")
    return tuple(int(p) for p in parts)


def parse_float_list(text: str) -> tuple[int | float, ...]:
    """``"1,1.5,2.5"`` -> ``(1, 1.5, 2.5)``: a comma-separated list of numbers,
    integral ones kept as ``int`` so that ``1,2,5,10`` parses (and keys a cell)
    exactly as :func:`parse_int_list` does; NaN and infinities are rejected."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    if not parts:
        raise ValueError("expected a comma-separated list of numbers")
    values = [float(p) for p in parts]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("expected finite numbers")
    return tuple(int(v) if v.is_integer() else v for v in values)


def number_text(value: float) -> str:
    """A number as it reads in a metric name: ``1`` (never ``1.0``), ``2.5``,
    ``0.02`` (shortest round-trip text, so distinct values give distinct names)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


_PARSERS: dict[type, Callable[[str], Any]] = {int: int, float: float, str: str, bool: _parse_bool}


@dataclass(frozen=True)
class Option:
    """One documented plugin option."""

    name: str
    default: Any
    help: str
    type: Any = str
    """A Python type (int, float, str, bool) or a parse function ``str -> value``."""
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    """Extra validity test on the parsed value; ``check_help`` says what it wants."""
    check_help: str = ""
    per_preset: Callable[["Preset"], Any] | None = None
    """The value a ``None`` setting takes under a preset (see :func:`by_preset`):
    the option stays ``None`` in the cell's spec, so the spec names the choice
    "the preset's default" rather than a number."""
    from_preset: str | None = None
    """A :class:`Preset` field whose value the option takes when a run resolves
    it unset (``precision``: a generator's sampler follows the run's
    ``--precision``, else the preset's). Unlike ``per_preset`` the value is
    written into the cell's spec, as if given: a spec names the arithmetic it
    used, and a preset whose field equals ``default`` keys its cells as before."""
    in_key: bool = True
    """False for an option that does not change outputs (a fixed network batch
    the adapter pads to): it is left out of the cell's key and the generator's
    fingerprint, so changing it reuses records and caches. The conformance tests
    check that each such option leaves the samples bit-identical."""
    keyed_when_set: bool = False
    """With ``in_key=False``: left out of the key at its default only, and in
    it at any other value. For a setting whose default keys as it always did
    but whose other values can change outputs in the last bits (the diffusion
    samplers' network batch: a convolution rounds differently at batch 16 than
    at 64 on an AMX CPU, so 3 of 4,000 smoke EDM images moved by one level)."""

    def keys(self, value: Any) -> bool:
        """Whether ``value`` of this option belongs in a cell's key."""
        return self.in_key or (self.keyed_when_set and not _same(value, self.default))

    @classmethod
    def positive_int(cls, name: str, help: str, default: int | None = None,
                     per_preset: Callable[["Preset"], Any] | None = None, in_key: bool = True,
                     keyed_when_set: bool = False) -> "Option":
        """An integer option that must be > 0 (``None``: the preset's value)."""
        return cls(name, default, help, int, check=lambda v: v is None or v > 0,
                   check_help="must be a positive integer", per_preset=per_preset, in_key=in_key,
                   keyed_when_set=keyed_when_set)

    def effective(self, value: Any, preset: "Preset") -> Any:
        """``value``, or the preset's default when it is ``None`` and one is declared."""
        if value is None and self.per_preset is not None:
            return self.per_preset(preset)
        return value

    def parse(self, raw: Any, owner: str) -> Any:
        if raw is None and self.default is None:  # "unset": the preset's default (a YAML null)
            return None
        parser = _PARSERS.get(self.type, self.type)
        try:
            value = parser(raw) if isinstance(raw, str) else raw
            if self.type in (int, float):  # YAML may give 1 for a float option
                value = self.type(value)
        except (TypeError, ValueError) as exc:
            kind = self.type.__name__ if isinstance(self.type, type) else "value"  # not "_count_or_all"
            raise UserError(
                f"Option {self.name}={raw!r} of {owner} is not a valid {kind} ({exc}). "
                f"{self.help} Default: {self.default!r}."
            ) from None
        if _too_large(value):  # torch and numpy take 64-bit integers: the cell would fail with an OverflowError
            raise UserError(f"Option {self.name}={raw!r} of {owner} is too large (a whole number must lie within "
                            f"+-2**63). {self.help} Default: {self.default!r}.")
        if self.choices is not None and value not in self.choices:
            raise UserError(
                f"Option {self.name}={raw!r} of {owner} must be one of "
                f"{', '.join(map(str, self.choices))}."
            )
        if self.check is not None and not self.check(value):
            raise UserError(f"Option {self.name}={raw!r} of {owner}: {self.check_help}")
        return value


def _too_large(value: Any) -> bool:
    """A whole number (or one in a list) outside what a 64-bit integer holds."""
    values = value if isinstance(value, (list, tuple)) else (value,)
    return any(isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**63 for v in values)


def by_preset(**values: Any) -> Callable[["Preset"], Any]:
    """A ``per_preset`` default from a value per preset name, e.g.
    ``by_preset(smoke=4, fast=50, paper=250)``; a variant of a named preset
    (``paper-r50``) gets its base's value, and a preset not named (a custom one)
    gets ``fast``'s. For a value a :class:`Preset` field already holds, pass
    ``lambda p: p.gen_sampler_steps`` instead."""
    return lambda preset: values.get(preset.name, values.get(preset.name.split("-")[0], values["fast"]))


class Configurable:
    """What generators and protocols share: declared options, resolved values in
    ``opts`` and :meth:`setting` for a value that may default per preset."""

    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, **options: Any):
        self.opts = dict(options)

    def setting(self, name: str, preset: "Preset") -> Any:
        """The option's value, or its preset-dependent default when it is ``None``."""
        opt = self.options[name]
        return opt.effective(self.opts.get(name, opt.default), preset)


def keyed_options(declared: dict[str, Option], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the options declared ``in_key=False`` (those
    ``keyed_when_set`` only at their default): what a cell's key and a fitted
    generator's fingerprint hold."""
    return {name: value for name, value in values.items() if name not in declared or declared[name].keys(value)}


def _value_text(value: Any) -> str:
    """An option's value as a suite file or ``--option`` writes it: ``false``
    (never ``False``), ``1,2,5`` for a list, ``null`` for unset."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return ",".join(_value_text(v) for v in value)
    return str(value)


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _same(a: Any, b: Any) -> bool:
    """Equal as stored: a tuple default and the list a record holds are the same
    value; ``1`` and ``True`` are not (Python says they are)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return _plain(a) == _plain(b)


def options_label(declared: dict[str, Option], values: dict[str, Any]) -> str:
    """The options of ``values`` that differ from their declared defaults, as
    ``key=value, ...`` (sorted): what tells two rows of one plugin apart in a plan,
    a progress line or a table (``realfake (mmd=false)``). Options that do not
    change outputs (``in_key=False``) are left out, as the cell's key leaves them
    out; an option the plugin does not declare (a record of another version) is
    always shown. Empty for the default row."""
    shown = [(name, value) for name, value in sorted(values.items())
             if name not in declared or (declared[name].keys(value) and not _same(value, declared[name].default))]
    return ", ".join(f"{name}={_value_text(value)}" for name, value in shown)


def resolve_options(spec: dict[str, Option], given: dict[str, Any], owner: str,
                    preset: "Preset | None" = None) -> dict[str, Any]:
    """Defaults overlaid with ``given``; unknown keys are an error naming the known ones.
    With ``preset``, an option declared ``from_preset`` and not given takes that
    preset field's value instead of its default."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "(none)"
        raise UserError(
            f"{owner} has no option {', '.join(unknown)}. Its options: {known}. "
            f"`synthbench list` shows each with its default."
        )
    out = {name: opt.default for name, opt in spec.items()}
    if preset is not None:
        out.update({name: getattr(preset, opt.from_preset) for name, opt in spec.items()
                    if opt.from_preset is not None and name not in given})
    for key, raw in given.items():
        out[key] = spec[key].parse(raw, owner)
    return out


def split_cli_options(
    pairs: tuple[str, ...] | list[str], targets: dict[str, dict[str, Option]]
) -> dict[str, dict[str, str]]:
    """Route ``KEY=VALUE`` (or ``PLUGIN.KEY=VALUE``) to the plugin that declares KEY.

    ``targets`` maps a plugin's name to its option spec. An unprefixed key goes to
    the single plugin that declares it; if none or several do, the error says how
    to prefix it.
    """
    routed: dict[str, dict[str, str]] = {name: {} for name in targets}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--option {pair!r} is not KEY=VALUE, e.g. --option ratio=1.0.")
        key, value = pair.split("=", 1)
        key = key.strip()
        if "." in key and key.split(".", 1)[0] in targets:
            owner, key = key.split(".", 1)
            routed[owner][key] = value
            continue
        owners = [name for name, spec in targets.items() if key in spec]
        if len(owners) == 1:
            routed[owners[0]][key] = value
        elif not owners:
            listing = "; ".join(
                f"{name}: {', '.join(sorted(spec)) or '(none)'}" for name, spec in targets.items()
            )
            raise UserError(f"No plugin in this run has an option {key!r}. Options by plugin: {listing}.")
        else:
            raise UserError(
                f"Option {key!r} is declared by {' and '.join(owners)}; prefix it, e.g. "
                f"--option {owners[0]}.{key}={value}."
            )
    return routed
