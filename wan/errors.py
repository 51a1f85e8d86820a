"""Error types shared across the library.

Every error a user can meet names the file (when there is one), the offending value and what was
expected, so that a ComfyUI error dialog alone is enough to fix the problem.
"""

from __future__ import annotations

import os


class WanError(Exception):
    """Base of every error this library raises on purpose."""


class WanFileError(WanError, ValueError):
    """A model or data file that cannot be used: missing, truncated, corrupt or the wrong kind."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        where = os.path.basename(self.path) if self.path else "<in-memory weights>"
        super().__init__(f"{where}: {problem}")


class WanInputError(WanError, ValueError):
    """A parameter outside what the operation accepts."""


def brief(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message names what a file claims (a tensor name,
    a shape) without copying a hostile header's megabytes into the UI."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
