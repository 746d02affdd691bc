"""The cell, typed: the grid it comes from, its spec (whose digest is its key) and
its record. Every reader and writer of records goes through here, so the store,
the CLI's table, ``regress`` and the leaderboard share one shape and one
validation policy (:meth:`Record.from_json`).

A cell is generator x options x protocol x dataset x preset x seed. Its spec
holds everything that determines its numbers; ``cell_hash`` is the SHA-256 of the
spec's canonical JSON, and a finished record with that hash is a cache hit. The
spec's JSON is the record format's: changing a field's name or value changes
every key, so :meth:`CellSpec.to_json` must stay byte-identical across releases
(``tests/test_conformance.py`` recomputes the key of every committed record).

A record also carries ``record_digest``, ``sha256:<hex>`` of the canonical JSON
of everything else in it, written by :meth:`Record.to_json` and checked by
:meth:`Record.from_json` after the schema (``record_schema.py``) and the
``cell_hash``: a record whose body was edited by hand is never a cache hit and
never published.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator, Mapping

import torch

import synthbench
from synthbench.benchmark.atomic import json_default
from synthbench.benchmark.cache import canonical_json
from synthbench.benchmark.datasets import Dataset
from synthbench.benchmark.options import keyed_options, options_label, resolve_options
from synthbench.benchmark.presets import STORED_WHEN_SET, Preset
from synthbench.benchmark.record_schema import DIGEST_FIELD, SCHEMA_VERSION, SPEC_OPTIONAL, check_record, check_spec
from synthbench.errors import UserError


COST_PHASES = ("cell_s", "fit_s", "pool_s", "reference_s", "resumed_s")
"""The phases of a record's ``cost.wall_s`` that add up to what it charges: the
cell itself, the shared work that the first cell to use it pays for (a
generator's fit, a sample pool, a reference classifier), and what the cell's
killed runs computed and kept (``charges.py``). The other phases lie inside
``cell_s``."""


class Status(str, Enum):
    """A record's outcome. ``ok`` and ``unsupported`` are finished (cache hits);
    a ``failed`` cell is computed again on the next run."""

    OK = "ok"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"

    @property
    def finished(self) -> bool:
        return self is not Status.FAILED


def cell_hash(spec_json: Mapping[str, Any]) -> str:
    """The key of a cell: SHA-256 of its spec's canonical JSON."""
    return hashlib.sha256(canonical_json(spec_json).encode()).hexdigest()


def body_digest(data: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a record's body: every field but
    the digest itself."""
    body = {k: v for k, v in data.items() if k != DIGEST_FIELD}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()


def seal(data: Mapping[str, Any]) -> dict[str, Any]:
    """A record's JSON with its ``record_digest`` (re)computed."""
    return {**{k: v for k, v in data.items() if k != DIGEST_FIELD}, DIGEST_FIELD: body_digest(data)}


def check_digest(data: Mapping[str, Any]) -> None:
    """``ValueError`` unless the record's ``record_digest`` matches its body."""
    given = data.get(DIGEST_FIELD)
    if DIGEST_FIELD not in data:
        raise ValueError(f"it has no `{DIGEST_FIELD}` (it was written before records carried one); run "
                         f"`synthbench records migrate --results DIR` once on its store to add it")
    if not (isinstance(given, str) and given.startswith("sha256:") and len(given) == 71):
        raise ValueError(f"field `{DIGEST_FIELD}`: {given!r:.60} is not sha256:<64 hex digits>")
    if given != body_digest(data):
        raise ValueError(f"its body was edited after it was written (`{DIGEST_FIELD}` does not match its "
                         f"content)")


@dataclass(frozen=True)
class PluginChoice:
    """A plugin looked up once: its name, class and resolved options."""

    name: str
    cls: Any = field(repr=False, compare=False)
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, registry: Any, name: str, given: Mapping[str, Any] | None = None,
                where: str = "", preset: Preset | None = None) -> "PluginChoice":
        """Look ``name`` up in ``registry`` and check ``given`` against its options.
        ``NAME:ARGUMENT`` (``samples:PATH``) sets the option the plugin declares
        for its argument; that option given by name (``-o samples.path=PATH``,
        a suite's ``samples: {path: PATH}``) is resolved the same way, so both
        spellings make the same options, row and cell key. ``preset``: the
        run's, whose fields fill the options declared ``from_preset`` that
        ``given`` leaves unset."""
        base, colon, argument = name.partition(":")
        plugin = registry.get(base if colon else name)
        given = dict(given or {})
        if colon:
            resolve = getattr(plugin, "resolve_argument", None)
            if resolve is None:
                raise UserError(f"The {registry.kind} {base} takes no argument after its name; give it as {base}.")
            given = resolve(argument, given)
        elif given.get(getattr(plugin, "argument_option", None) or "") not in (None, ""):
            given = plugin.resolve_argument(str(given[plugin.argument_option]), given)
        owner = f"{registry.kind} {plugin.name}" + (f" {where}" if where else "")
        return cls(plugin.name, plugin, resolve_options(plugin.options, given, owner, preset))

    def instance(self) -> Any:
        return self.cls(**self.options)

    @property
    def label(self) -> str:
        """The name, with the options that differ from the defaults when any
        (``realfake (mmd=false)``): a suite may hold one plugin under several
        option sets (ablation arms), and plans, progress and tables must tell
        them apart."""
        return choice_label(self.name, getattr(self.cls, "options", {}), self.options)


def choice_label(name: str, declared: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    """``name`` or ``name (key=value, ...)``: :attr:`PluginChoice.label` for code
    that holds a spec's options rather than a choice."""
    text = options_label(dict(declared), dict(options))
    return f"{name} ({text})" if text else name


def stored_label(registry: Any, name: str, options: Mapping[str, Any]) -> str:
    """:func:`choice_label` of a plugin named in a spec or a task: the defaults
    are the installed plugin's; every option is shown when it is not installed."""
    try:
        declared = registry.get(name).options
    except UserError:
        declared = {}
    return choice_label(name, declared, options)


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines a cell's numbers (the record's ``spec``)."""

    schema_version: int
    synthbench_version: str
    dataset: str
    dataset_digest: str
    generator: str
    generator_version: int
    generator_options: dict[str, Any]
    generator_extra: dict[str, Any]
    protocol: str
    protocol_version: int
    protocol_options: dict[str, Any]
    preset: dict[str, Any]
    seed: int
    device_type: str
    protocol_extra: dict[str, Any] = field(default_factory=dict)
    """Facts beyond the protocol's options that belong in the key (``Protocol.spec_extras``,
    e.g. the digest of ``ood``'s folders); left out of the JSON when empty."""

    @classmethod
    def of(cls, dataset: Dataset, generator: PluginChoice, protocol: PluginChoice, preset: Preset, seed: int,
           device: torch.device) -> "CellSpec":
        return cls(
            schema_version=SCHEMA_VERSION, synthbench_version=synthbench.__version__, dataset=dataset.name,
            dataset_digest=dataset.digest, generator=generator.name, generator_version=generator.cls.version,
            generator_options=keyed_options(generator.cls.options, generator.options),
            generator_extra=generator.cls.spec_extras(generator.options), protocol=protocol.name,
            protocol_version=protocol.cls.version,
            protocol_options=keyed_options(protocol.cls.options, protocol.options),
            preset=preset.as_dict(), seed=int(seed), device_type=device.type,
            protocol_extra=protocol.cls.spec_extras(protocol.options, preset),
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__
                if name not in SPEC_OPTIONAL or getattr(self, name)}

    @classmethod
    def from_json(cls, data: Any) -> "CellSpec":
        """The spec of a stored record, checked by the record schema; ``ValueError``
        names the field and what is wrong."""
        check_spec(data)
        return cls(**data)

    @property
    def key(self) -> str:
        return cell_hash(self.to_json())


def current_spec(spec: CellSpec) -> CellSpec:
    """``spec`` as today's code would key that cell, for ``synthbench records
    migrate``: options left out of a cell's key (``Option.in_key``) removed, and
    options and preset fields declared since the record was written added at their
    defaults (one is added without a version bump only when its default reproduces
    the old outputs; preset fields stored only when set, ``STORED_WHEN_SET``, are
    not added). A plugin that is not installed leaves its options as they are."""
    from synthbench.plugins import GENERATORS, PROTOCOLS
    from synthbench.errors import UserError

    changes = {}
    for registry, name, field_name in ((GENERATORS, spec.generator, "generator_options"),
                                       (PROTOCOLS, spec.protocol, "protocol_options")):
        try:
            declared = registry.get(name).options
        except UserError:
            continue
        given = getattr(spec, field_name)
        added = {name: opt.default for name, opt in declared.items() if name not in given}
        changes[field_name] = keyed_options(declared, {**given, **added})
    # a preset field added since (e.g. precision) takes its default, which reproduces older records
    added = {f.name: f.default for f in dataclasses.fields(Preset)
             if f.default is not dataclasses.MISSING and f.name not in spec.preset and f.name not in STORED_WHEN_SET}
    return dataclasses.replace(spec, preset={**spec.preset, **added}, **changes)


@dataclass(frozen=True)
class Record:
    """One cell's result as stored (the README's "Result records")."""

    spec: CellSpec
    status: Status
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``{name: {value, stderr, n, higher_is_better}}`` (``metrics.metric``)."""
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    cost: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def cell_hash(self) -> str:
        return self.spec.key

    def body(self) -> dict[str, Any]:
        """The record's JSON without its digest, exactly as a reader parses it
        back (numpy scalars, tuples and paths made plain)."""
        out = {"schema_version": SCHEMA_VERSION, "cell_hash": self.cell_hash, "spec": self.spec.to_json(),
               "status": self.status.value, "error": self.error, "metrics": self.metrics, "details": self.details,
               "cost": self.cost, "provenance": self.provenance}
        if self.traceback is not None:
            out["traceback"] = self.traceback
        return json.loads(json.dumps(out, default=json_default))

    def to_json(self) -> dict[str, Any]:
        """The record as stored: its body and the body's ``record_digest``."""
        return seal(self.body())

    @classmethod
    def from_json(cls, data: Any) -> "Record":
        """A stored record, checked: the one policy of the store, the leaderboard
        and ``regress``. The schema first, then ``cell_hash`` against the spec,
        then ``record_digest`` against the body; ``ValueError`` says what is wrong."""
        record = cls.from_unsealed_json(data)
        check_digest(data)
        return record

    @classmethod
    def from_unsealed_json(cls, data: Any) -> "Record":
        """:meth:`from_json` without the digest check: only for the migration
        that adds digests to records written before they carried one."""
        check_record(data)
        spec = CellSpec.from_json(data["spec"])
        if data["cell_hash"] != spec.key:
            raise ValueError("its cell_hash does not match its spec (the spec was edited, or the hash)")
        return cls(spec=spec, status=Status(data["status"]), metrics=data["metrics"], details=data["details"],
                   error=data["error"], traceback=data.get("traceback"), cost=data["cost"],
                   provenance=data["provenance"])


@dataclass(frozen=True)
class Grid:
    """A run grid resolved once: the dataset loaded, every plugin looked up and
    its options checked, before anything is computed."""

    dataset: Dataset
    generators: tuple[PluginChoice, ...]
    protocols: tuple[PluginChoice, ...]
    preset: Preset
    seeds: tuple[int, ...]
    device: torch.device

    def specs(self, protocol: PluginChoice) -> Iterator[tuple[PluginChoice, CellSpec]]:
        """The cells of one protocol, generator by generator, seed by seed."""
        for gen in self.generators:
            for seed in self.seeds:
                yield gen, CellSpec.of(self.dataset, gen, protocol, self.preset, seed, self.device)


@dataclass
class CellOutcome:
    """A cell of a run: its spec, its record (None when not computed) and
    whether that record came from the store."""

    spec: CellSpec
    record: Record | None
    cached: bool
