"""Test-only ComfyUI nodes, loaded beside the pack by the test server (never shipped).

Core ComfyUI 0.3.75 cannot make an AUDIO value without torchaudio, nor an empty IMAGE batch;
two nodes make them so that the server tests can feed them to the pack's nodes. A third makes a
loaded Wan DiT fail as CUDA does when memory runs out, which a CPU cannot do for real.
"""

import math

import torch


class WanTestSineAudio:
    CATEGORY = "WanTest"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seconds": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 60.0}),
            "frequency": ("FLOAT", {"default": 440.0, "min": 1.0, "max": 20000.0}),
            "sample_rate": ("INT", {"default": 16000, "min": 1000, "max": 192000}),
            "channels": ("INT", {"default": 2, "min": 1, "max": 8}),
        }}

    def make(self, seconds, frequency, sample_rate, channels):
        t = torch.arange(int(seconds * sample_rate)) / sample_rate
        wave = 0.5 * torch.sin(2 * math.pi * frequency * t)
        return ({"waveform": wave.expand(1, channels, -1).contiguous(), "sample_rate": sample_rate},)


class WanTestEmptyBatch:
    CATEGORY = "WanTest"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"width": ("INT", {"default": 64}), "height": ("INT", {"default": 48})}}

    def make(self, width, height):
        return (torch.zeros(0, height, width, 3),)


class WanTestFailingModel:
    """Passes the model through; its DiT raises torch.OutOfMemoryError on forward call ``after_calls``.

    The hook removes itself when it fires, so the cached model serves the next job normally.
    """

    CATEGORY = "WanTest"
    RETURN_TYPES = ("WANMODEL",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("WANMODEL",), "error": (["oom"],),
                             "after_calls": ("INT", {"default": 1, "min": 1, "max": 1000})}}

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")  # re-arm on every run

    def make(self, model, error, after_calls):
        calls = [0]

        def pre_hook(_module, _args):
            calls[0] += 1
            if calls[0] >= after_calls:
                handle.remove()
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected by WanTestFailingModel)")

        handle = model.dit.register_forward_pre_hook(pre_hook)
        return (model,)


NODE_CLASS_MAPPINGS = {"WanTestSineAudio": WanTestSineAudio, "WanTestEmptyBatch": WanTestEmptyBatch,
                       "WanTestFailingModel": WanTestFailingModel}
