"""The one exception hierarchy of CNS Broadcaster.

Every error the product raises on purpose derives from :class:`CnsError`. The CLI prints ``str(error)``
as a one-line reason and exits 1; the web layer maps the classes to HTTP statuses. Messages are written
for the provincial staff who read them, and never contain secrets.
"""

from __future__ import annotations


class CnsError(Exception):
    """Base of every error raised on purpose by CNS Broadcaster."""


class InputError(CnsError):
    """The user's input (a file, an option, a value) is invalid; nothing was written."""


class CsvError(InputError):
    """A CSV file is malformed; ``line`` is the 1-based line number when one row is to blame."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class NotFound(CnsError):
    """A named object (unit, account, group, user, content, dispatch) does not exist."""


class Conflict(CnsError):
    """The object already exists or the change contradicts stored data."""


class PermissionDenied(CnsError):
    """The acting user may not do this (role or unit scope)."""


class WorkflowError(CnsError):
    """The change is not allowed in the object's current state (e.g. approving a draft)."""


class ConfigError(CnsError):
    """Configuration is missing or invalid (settings, secrets, account settings)."""


class StorageError(CnsError):
    """The database cannot be reached, is not initialised, or is at an unknown schema version."""
