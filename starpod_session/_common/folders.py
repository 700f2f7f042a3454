"""Creating the folders the library writes to, with errors that name the path."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInput, StorageError

__all__ = ["ensure_folder"]


def ensure_folder(path: Path, field: str) -> Path:
    """Create ``path`` and its parents if missing; returns ``path``.

    :class:`InvalidInput` naming ``field`` when ``path`` or one of its parents is
    a file; :class:`StorageError` when the file system refuses (permissions, a
    read-only or full disk).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise InvalidInput(field, f"cannot create the folder {path}: {blocker} is a file") from None
    except OSError as error:
        raise StorageError(f"cannot create the folder {path}: {error.strerror or error}") from error
    return path
