"""The library's version: the one place it is written (hatchling reads it into the package metadata)."""

__version__ = "0.2.0.dev0"
