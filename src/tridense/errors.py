"""Exceptions that carry enough context (file, key, value) for a user to fix the input."""

from __future__ import annotations

from pathlib import Path


class TridenseError(Exception):
    """Base class of every error tridense raises on purpose."""


class DataError(TridenseError, ValueError):
    """A file or array does not match what a dataset or the sample contract expects.

    Args:
        message: what is wrong and what was expected.
        path: the offending file, if there is one; it is put in front of the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class ConfigError(TridenseError, ValueError):
    """A configuration key, value, model or dataset name is not valid; the message lists valid ones."""
