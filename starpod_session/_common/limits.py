"""Size limits shared by the column types (what a column can hold) and the argument checks (what we accept)."""

from __future__ import annotations

__all__ = ["SHORT_TEXT_LENGTH"]

#: Identifiers, keys, roles and model names: MariaDB cannot index TEXT, so these
#: columns are VARCHAR(255) there, and the library rejects longer values on every backend alike.
SHORT_TEXT_LENGTH = 255
