"""The exceptions this library raises: all derive from :class:`StarpodSessionError`."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DumpInvalid",
    "ExportError",
    "InvalidInput",
    "SchemaOutdated",
    "SchemaTooNew",
    "SessionNotFound",
    "StarpodSessionError",
    "StorageBusy",
    "StorageError",
    "TargetNotEmpty",
    "VerificationFailed",
]


class StarpodSessionError(Exception):
    """Base class of every exception raised by ``starpod_session``."""


class SessionNotFound(StarpodSessionError, LookupError):
    """A write named a session id that does not exist."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session not found: {session_id!r}")
        self.session_id = session_id


class InvalidInput(StarpodSessionError, ValueError):
    """An argument was rejected before anything was written; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid {field}: {reason}")
        self.field = field
        self.reason = reason


class ConfigError(StarpodSessionError, ValueError):
    """The agent configuration was rejected; ``path``, ``section`` and ``key`` say where.

    ``section`` and ``key`` are ``None`` when the whole file is at fault (missing,
    unreadable, not TOML).
    """

    def __init__(self, path: str, section: str | None, key: str | None, reason: str) -> None:
        where = path if section is None else f"{path}: [{section}]"
        if key is not None:
            where += f" {key}"
        super().__init__(f"invalid configuration in {where}: {reason}")
        self.path = path
        self.section = section
        self.key = key
        self.reason = reason


class ExportError(StarpodSessionError):
    """A transcript cannot be exported: the session is still open, or no ``sessions_dir`` was given."""


class StorageBusy(StarpodSessionError):
    """The database stayed locked or kept aborting the transaction after every retry."""


class StorageError(StarpodSessionError):
    """The database failed in a way the library cannot recover from (the driver error is chained)."""


class SchemaOutdated(StarpodSessionError):
    """The database schema is older than this library and automatic upgrade is off."""


class SchemaTooNew(StarpodSessionError):
    """The database was migrated by a newer release of this library than the one installed."""


class TargetNotEmpty(StarpodSessionError):
    """A copy or restore was pointed at a database that holds other rows (it writes only into an empty one,
    or continues its own unfinished run); nothing was written."""


class VerificationFailed(StarpodSessionError):
    """After a copy or restore the two sides differ; the message lists what differs."""


class DumpInvalid(StarpodSessionError, ValueError):
    """A file given to restore is not a complete dump: truncated, altered (its checksum), or not a dump at all."""
