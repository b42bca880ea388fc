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


class DatabaseUnavailable(StorageError):
    """The database does not answer: connection refused, dropped or timed out, server shutting down.
    Worth waiting for (the worker retries, the web answers 503), unlike a statement the database
    refuses. ``where`` names the database (host:port/name or the SQLite file, never a password)."""

    def __init__(self, where: str, reason: str, message: str | None = None) -> None:
        self.where = where
        self.reason = reason
        super().__init__(message or f"database {where} unavailable: {reason}")


class DeliveryError(CnsError):
    """A send to a platform did not succeed. The dispatcher decides from the subclass alone.

    ``reason`` is a short, secret-free explanation for the delivery's ``last_error``.
    """

    retryable = False
    # The ids of the messages of this send that went out before the error (a post of several messages
    # failing at part k): kept with the delivery so the retry resumes at part k.
    sent_ids: tuple[str, ...] = ()
    gone_admins: tuple[str, ...] = ()  # relay: admins (``channel:address``) their channel says are gone
    # The failing request may have reached the platform all the same (a timeout, a connection dropped
    # after it was sent): the retry may show that message twice, and is counted as a possible duplicate.
    maybe_sent: bool = False

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def after(self, sent_ids: tuple[str, ...]) -> DeliveryError:
        """This error, noting the messages already sent before it."""
        self.sent_ids = sent_ids
        return self


class TransientError(DeliveryError):
    """Worth retrying later with backoff: timeouts, 5xx, dropped connections, malformed responses."""

    retryable = True


class RateLimited(TransientError):
    """The platform asked us to wait ``retry_after`` seconds before sending again."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Retrying will not help: content the platform refuses, a bad target id, missing rights."""


class NotSupported(PermanentError):
    """The platform cannot do this at all (Zalo OA cannot delete or edit a group message)."""


class TargetGone(PermanentError):
    """The group/page/endpoint no longer accepts our posts (bot kicked, group deleted, 410)."""


class TargetMigrated(DeliveryError):
    """The target moved to ``new_id`` (Telegram group -> supergroup); re-send there."""

    retryable = True

    def __init__(self, reason: str, new_id: str) -> None:
        super().__init__(reason)
        self.new_id = new_id


class AuthFailed(DeliveryError):
    """The account's credentials were refused: pause the account and hold its deliveries."""


class HookRejected(CnsError):
    """An inbound webhook request that is not accepted; ``status`` is the HTTP answer (never 5xx)."""

    status = 400


class BadSignature(HookRejected):
    """Not signed by the account's secret, or outside the replay window: 401, nothing stored."""

    status = 401


class BadPayload(HookRejected):
    """Not the JSON the platform sends: 400, nothing stored."""

    status = 400
