"""The one exception type that reaches users as a message instead of a traceback.

Anything raised as :class:`UserError` is printed by the CLI as a single paragraph
and the process exits with status 2. Raise it at the boundary (names, options,
files, folders) with a sentence that says what to do; deep code may then trust
its inputs.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad name, bad option, missing or corrupt file."""

    exit_code = 2
