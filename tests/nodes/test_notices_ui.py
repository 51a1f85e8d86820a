"""Notices a user must see (frames rounded, a size rounded, a prompt cut) reach ComfyUI's UI: the
node's progress text while it runs and its UI text (kept in /history), not only the console."""

import importlib
import sys
import types

import pytest

from refs import comfy, import_pack


@pytest.fixture(scope="module")
def pack():
    return import_pack().__name__


def test_rounding_reaches_progress_text_and_ui(pack, monkeypatch):
    notices_ui = importlib.import_module(f"{pack}.nodes._notices")
    conditioning = importlib.import_module(f"{pack}.wan.job.conditioning")
    sent = []
    server = types.SimpleNamespace(PromptServer=types.SimpleNamespace(
        instance=types.SimpleNamespace(send_progress_text=lambda text, node: sent.append((node, text)))))
    monkeypatch.setitem(sys.modules, "server", server)
    CurrentNodeContext = comfy("comfy_execution.utils").CurrentNodeContext

    @notices_ui.showing_notices
    def node_function():
        return (conditioning.check_size(48, 64, 10, 32),)

    with CurrentNodeContext("prompt", "17", 0), pytest.warns(UserWarning):
        out = node_function()
    assert out["result"] == ((32, 64, 9),)
    assert out["ui"]["text"] == ["48x64 is not a multiple of 32; using 32x64",
                                 "num_frames must be 1 + 4k; using 9 instead of 10"]
    assert sent[-1] == ("17", "\n".join(out["ui"]["text"]))


def test_no_notice_keeps_the_plain_result(pack):
    notices_ui = importlib.import_module(f"{pack}.nodes._notices")
    assert notices_ui.showing_notices(lambda: (1,))() == (1,)
