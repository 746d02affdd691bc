"""Generator adapters: one file per adapter, plus the networks and samplers they share.

A new adapter subclasses :class:`synthbench.generators.base.Generator` and is
registered by name in ``benchmark/registry.py`` (built-in) or under the entry-point
group ``synthbench.generators`` (third party)."""
