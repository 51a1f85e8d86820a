"""Notices a user must see: the library changed or ignored part of what was asked and goes on
(a prompt cut to 512 tokens, a frame count or size rounded, a LoRA that only partly matches).

The one channel for them: ``notify`` logs the text as a warning under the calling module's logger
(a server console shows every one; Python shows a warning only once per place), issues a
``WanNotice`` warning (for code that uses the library: ``warnings`` filters, pytest.warns) and hands
the text to every listener the calling context registered with ``listen`` (the nodes show it in
ComfyUI's UI). Listeners live in
a context variable, so two jobs in two threads never hear each other's notices.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from contextvars import ContextVar
from typing import Callable, Iterator


class WanNotice(UserWarning):
    """A change the library made to what was asked (see the module docstring)."""


_LISTENERS: ContextVar[tuple[Callable[[str], None], ...]] = ContextVar("wan_notice_listeners", default=())


def notify(message: str, stacklevel: int = 2) -> None:
    """Tell the user ``message``: a log line, a WanNotice warning, and each listener of this context."""
    caller = sys._getframe(1).f_globals.get("__name__", __name__)
    logging.getLogger(caller).warning("%s", message)
    warnings.warn(message, WanNotice, stacklevel=stacklevel + 1)
    for listener in _LISTENERS.get():
        listener(message)


@contextlib.contextmanager
def listen(listener: Callable[[str], None]) -> Iterator[None]:
    """Within the block, ``listener(message)`` is called for each notice of this context."""
    token = _LISTENERS.set(_LISTENERS.get() + (listener,))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


@contextlib.contextmanager
def collected() -> Iterator[list[str]]:
    """The notices of the block, in order (a list filled while it runs)."""
    seen: list[str] = []
    with listen(seen.append):
        yield seen
