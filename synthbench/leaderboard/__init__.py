"""The leaderboard and the regression check (DESIGN.md section 6).

- :mod:`.aggregate` groups the store's records into tables (mean and 95%
  interval over seeds, best and ties marked, failed cells kept);
- :mod:`.plots` draws the figures the records' ``details`` hold (matplotlib, Agg);
- :mod:`.site` renders the static site with jinja2 (autoescape on) from the
  templates and assets that ship in this package;
- :mod:`.regress` recomputes a small fixed suite and compares it with a baseline;
- :mod:`.commands` holds the ``leaderboard`` and ``regress`` click commands.

Nothing here knows a protocol by name: columns come from each record's
``metrics`` and, where the protocol is registered, its ``headline`` and
``table_metrics()``, so a protocol added later renders without template changes.
"""
