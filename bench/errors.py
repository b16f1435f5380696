"""User-facing errors.

Every failure a user can cause or fix (bad model name, corrupt checkpoint, locked
database, ...) is raised as a :class:`BenchError`. The CLI prints it as one line,
``error: <what went wrong>. <what to do>``, and exits non-zero without a traceback
unless ``--debug`` is given. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """A problem the user can fix; ``hint`` says how."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message.rstrip(".")
        self.hint = hint

    def one_line(self) -> str:
        text = self.message
        if self.hint:
            hint = self.hint.rstrip(".")
            text += f". {hint[:1].upper()}{hint[1:]}"
        return " ".join(text.split()) + "."


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), for a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


class UnknownModelError(BenchError):
    """A model name that is not in the registry."""


class RegistryError(BenchError):
    """A registry file that does not validate."""


class WeightsError(BenchError):
    """Weights that cannot be fetched, read, or do not fit the architecture."""


class ProbeSetError(BenchError):
    """A probe set that is missing, empty or unreadable."""


class StoreError(BenchError):
    """The DuckDB file cannot be opened, is locked, or cannot be written."""


class UndefinedMeasure(Exception):
    """Raised inside a measure when its value does not exist for this model.

    The harness turns it into a row with ``status='undefined'`` and the reason,
    never into NaN in a ranking (SPEC section 1).
    """
