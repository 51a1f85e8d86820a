"""The sampler's progress bridge in-process: each step reaches ComfyUI's progress hook with a
latent preview made by ComfyUI's own Latent2RGB previewer, and a pending interrupt stops the run."""

from __future__ import annotations

import sys

import pytest
import torch
from refs import import_pack


@pytest.fixture(scope="module")
def pack():
    return import_pack("wan_pack_progress_test")


def test_steps_reach_the_progress_hook_with_previews(pack, monkeypatch):
    from refs import comfy

    utils = comfy("comfy.utils")
    args = comfy("comfy.cli_args")
    monkeypatch.setattr(args.args, "preview_method", args.LatentPreviewMethod.Latent2RGB)
    seen = []
    monkeypatch.setattr(utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None: seen.append((value, total, preview)))
    sampler = sys.modules[pack.__name__ + ".nodes.sampler"]
    callback = sampler._progress(3, 16)
    raw = torch.randn(1, 16, 2, 4, 6)
    for step in (1, 2, 3):
        callback(step, 3, raw)
    assert [(v, t) for v, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    kind, image, _ = seen[-1][2]
    assert kind == "JPEG" and image.size == (6, 4)  # one latent frame, RGB per latent pixel


def test_cancel_check_raises_comfyui_interrupt(pack):
    from refs import comfy

    mm = comfy("comfy.model_management")
    common = sys.modules[pack.__name__ + ".nodes._common"]
    cancel = common.cancel_check()
    assert cancel() is False
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        cancel()
    assert not mm.processing_interrupted()  # ComfyUI clears the flag when it raises
