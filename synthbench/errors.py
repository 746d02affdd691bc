"""The exceptions the harness owns: what reaches a user as a message, and what a
protocol raises when a generator cannot take part.

Anything raised as :class:`UserError` is printed by the CLI as a single paragraph
and the process exits with status 2. Raise it at the boundary (names, options,
files, folders) with a sentence that says what to do; deep code may then trust
its inputs.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad name, bad option, missing or corrupt file."""

    exit_code = 2


class Unsupported(Exception):
    """Raised by a protocol's ``run`` when the generator cannot take part (e.g.
    ``recon`` on a generator that cannot reconstruct). The cell is recorded with
    status ``unsupported`` and the reason, which counts as finished."""


def corrupt_cache(what: str, path, exc: BaseException) -> UserError:
    """The error for a cached file that cannot be read: name it and say how to recover."""
    return UserError(
        f"The cached {what} {path} is unreadable or damaged ({type(exc).__name__}: {exc}). Delete that file "
        f"and run again to recompute it; finished records are kept."
    )
