"""The leaderboard and the regression check (DESIGN.md section 6).

- :mod:`.aggregate` groups the store's records into tables (mean and 95%
  interval over seeds, best and ties marked, failed cells kept);
- :mod:`.plots` draws the figures the records' ``details`` hold (matplotlib, Agg);
- :mod:`.site` renders the static site with jinja2 (autoescape on) from the
  templates and assets that ship in this package;
- :mod:`.findings` tests the source papers' findings on the tables, and
  :mod:`.validity` correlates the cheap metrics with utility across generators;
- :mod:`.audit` checks each table's provenance (one thread count, one
  precision, every seed) and sums its cost; :mod:`.readme` writes the README's
  results section from the same computation;
- :mod:`.regress` recomputes a small fixed suite and compares it with a baseline;
- :mod:`.commands` holds the ``leaderboard`` and ``regress`` click commands.

The tables know no protocol by name: columns come from each record's
``metrics`` and, where the protocol is registered, its ``headline`` and
``table_metrics()``, so a protocol added later renders without template
changes. Only :mod:`.findings` and :mod:`.validity` name protocols and
metrics, because the papers' claims are about particular ones; a finding whose
records are absent is reported as not measured.
"""
