"""Notices the user must see (issue 23 item 7): the library's ``wan.notices`` (a prompt cut to 512
tokens, a size or frame count rounded, a LoRA that partly matches) shown in ComfyUI's UI, not only
on the console. Not a node module (the leading underscore keeps the registry from scanning it);
ComfyUI's modules are imported inside functions so that unit tests can import it without ComfyUI.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from ..wan import notices

log = logging.getLogger(__name__)


@contextlib.contextmanager
def shown_notices():
    """Collect the library's notices (a prompt cut to 512 tokens, a size or frame count rounded, a
    LoRA that partly matches) while a node works, and show them on the node as they come: ComfyUI's
    progress text (``PromptServer.send_progress_text``, in 0.3.75 and 0.8.0) for the node ComfyUI is
    executing. Yields the list; ``with_notices`` puts it in the node's UI output (kept in /history)."""
    seen: list[str] = []
    node_id = _executing_node()

    def show(message: str) -> None:
        seen.append(message)
        _progress_text("\n".join(seen), node_id)

    with notices.listen(show):
        yield seen


def with_notices(result: tuple, seen: list[str]):
    """A node's return value: ``result``, with the notices as UI text when there are any."""
    return {"ui": {"text": list(seen)}, "result": result} if seen else result


def showing_notices(function):
    """Decorates a node's function: its notices are shown as they come (``shown_notices``) and
    returned as the node's UI text (``with_notices``); without notices it returns as before."""
    @functools.wraps(function)
    def run(*args, **kwargs):
        with shown_notices() as seen:
            result = function(*args, **kwargs)
        return with_notices(result, seen)

    return run


def _executing_node() -> str | None:
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:  # outside ComfyUI
        return None
    context = get_executing_context()
    return None if context is None else context.node_id


def _progress_text(text: str, node_id: str | None) -> None:
    if node_id is None:
        return
    try:
        from server import PromptServer

        PromptServer.instance.send_progress_text(text, node_id)
    except Exception:  # the console has it (a WanNotice warning); never fail a job over the UI
        log.debug("Wan: progress text not sent", exc_info=True)
