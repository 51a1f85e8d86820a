"""Out of memory while sampling. A CPU run cannot exhaust GPU memory, so the error is injected:
Wan Sampler is called in-process (the pack imported as ComfyUI imports it, ComfyUI's modules from
the reference copy) with the sampling function replaced by one that raises torch.OutOfMemoryError
after a step, as CUDA does. ComfyUI 0.3.75 recognises an OOM by
``isinstance(ex, comfy.model_management.OOM_EXCEPTION)`` (then unloads models and appends its own
GPU tip), so what leaves the node must still be that type, and should carry our advice.

The same path through the running server needs a test-only node that makes the DiT raise; it is
used when the test helper nodes offer one (``WanTestFailingModel``), skipped otherwise.
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from bench.soak import job_graph, prepare
from comfy_client import execution_error
from refs import import_pack

PACK = "wan_pack_under_test"
ADVICE = ("block swap", "tiling", "quant")  # what a user can change: swap blocks out, tile the VAE, a smaller GGUF


def _sample_with_oom(monkeypatch):
    import_pack(PACK)
    sampler_mod = sys.modules[f"{PACK}.nodes.sampler"]
    loaders = sys.modules[f"{PACK}.nodes.loaders"]
    conditioning = importlib.import_module(f"{PACK}.wan.job.conditioning")
    pipeline_sampling = importlib.import_module(f"{PACK}.wan.job.sample")

    def out_of_memory(*_args, callback=None, **_kwargs):
        if callback is not None:
            callback(1, 2, torch.zeros(1, 16, 1, 4, 4))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 23.65 GiB total)")

    monkeypatch.setattr(pipeline_sampling, "sample_video", out_of_memory)

    class _TinyDiT(torch.nn.Module):
        cfg = importlib.import_module(f"{PACK}.wan.models.dit.config").DIT_PRESETS["t2v_1_3b"]

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    model = loaders.WanModel.loaded(_TinyDiT(), "tiny.gguf")
    text = conditioning.PromptEmbeds(*(torch.zeros(1, 512, 16) for _ in conditioning.PromptEmbeds._fields))
    cond = conditioning.t2v_conditioning(32, 32, 5, 16)
    node = sampler_mod.WanSampler()
    return lambda: node.sample(model, text, cond, steps=2, cfg=5.0, shift=5.0, seed=0, sampler="euler",
                               denoise_strength=1.0)


def test_oom_in_sampler_stays_comfyui_oom(monkeypatch):
    run = _sample_with_oom(monkeypatch)
    from refs import comfy

    mm = comfy("comfy.model_management")
    with pytest.raises(BaseException) as info:
        run()
    assert isinstance(info.value, mm.OOM_EXCEPTION), f"{type(info.value).__name__} is not ComfyUI's OOM type"


def test_oom_in_sampler_carries_our_advice(monkeypatch):
    run = _sample_with_oom(monkeypatch)
    with pytest.raises(BaseException) as info:
        run()
    message = str(info.value).lower()
    assert all(word in message for word in ADVICE), message


def test_oom_through_the_server_is_reported_and_the_server_keeps_serving(comfy_server):
    if "WanTestFailingModel" not in comfy_server.object_info():
        pytest.skip("needs the test-only node WanTestFailingModel in tests/server/wan_test_helpers.py")
    prepare(comfy_server)
    graph = job_graph("t2v", 0, prefix_root="oom")
    graph["30"] = {"class_type": "WanTestFailingModel", "inputs": {"model": ["1", 0], "error": "oom", "after_calls": 1}}
    graph["6"]["inputs"]["model"] = ["30", 0]
    error = execution_error(comfy_server.wait(comfy_server.queue(graph), 300))
    assert error is not None and error["node_type"] == "WanSampler", error
    assert "out of memory" in error["exception_message"].lower()
    assert all(word in error["exception_message"].lower() for word in ADVICE), error["exception_message"]
    assert "Got an OOM, unloading all loaded models." in comfy_server.log
    assert comfy_server.run(job_graph("t2v", 1, prefix_root="oom"), timeout=300)["8"]["images"]
