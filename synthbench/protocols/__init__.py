"""Protocols: one file per protocol, each versioned, each declaring for every
metric whether higher is better. A new protocol subclasses
:class:`synthbench.protocols.base.Protocol` and is registered by name in
``benchmark/registry.py`` or under the entry-point group ``synthbench.protocols``."""
