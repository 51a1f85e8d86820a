"""Test-only ComfyUI nodes, loaded beside the pack by the test server (never shipped).

Core ComfyUI (0.3.75, 0.8.0) cannot make an AUDIO value without torchaudio, nor an empty IMAGE batch;
two nodes make them so that the server tests can feed them to the pack's nodes. A third makes a
loaded Wan DiT fail as CUDA does when memory runs out, which a CPU cannot do for real. A fourth
loads a tiny UMT5 file as ComfyUI's CLIPLoader (type wan) would a real one: ComfyUI's CLIPLoader
builds UMT5-XXL from a fixed config (24 layers, 64 heads, a 256k vocabulary: about 5.7B
parameters, no test can write such a file), so this node builds ComfyUI's own Wan text encoder and
tokenizer classes at the file's sizes instead. A fifth reports what ComfyUI's model management holds
(and can ask it to free memory as a core loader does on a GPU) for the model-management tests.
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


class WanTestTinyUMT5Loader:
    """ComfyUI's CLIPLoader for type "wan" (comfy.sd.load_text_encoder_state_dicts: WanT5Tokenizer with
    the file's ``spiece_model``, UMT5XXlModel's options) with the T5 config read from the file's
    shapes rather than umt5_config_xxl.json: every module and every computation is ComfyUI's."""

    CATEGORY = "WanTest"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {"clip_name": (folder_paths.get_filename_list("text_encoders"),)}}

    def load(self, clip_name):
        import json
        import os

        import comfy.sd
        import comfy.sd1_clip
        import comfy.supported_models_base
        import comfy.text_encoders.t5
        import comfy.text_encoders.wan
        import comfy.utils
        import folder_paths

        sd = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("text_encoders", clip_name), safe_load=True)
        wan_dir = os.path.dirname(comfy.text_encoders.wan.__file__)
        with open(os.path.join(wan_dir, "umt5_config_xxl.json")) as f:
            config = json.load(f)
        q = sd["encoder.block.0.layer.0.SelfAttention.q.weight"]
        buckets, heads = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
        config.update(d_model=q.shape[1], num_heads=heads, d_kv=q.shape[0] // heads, vocab_size=sd["shared.weight"].shape[0],
                      d_ff=sd["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0],
                      num_layers=1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.block.")),
                      relative_attention_num_buckets=buckets)

        class TinyUMT5(comfy.sd1_clip.SDClipModel):  # comfy.text_encoders.wan.UMT5XXlModel but for the config
            def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options={}):
                super().__init__(device=device, layer=layer, layer_idx=layer_idx, textmodel_json_config=dict(config),
                                 dtype=dtype, special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                                 enable_attention_masks=True, zero_out_masked=True, model_options=model_options)

        class TinyWanTE(comfy.text_encoders.wan.WanT5Model):
            def __init__(self, device="cpu", dtype=None, model_options={}):
                comfy.sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, model_options=model_options,
                                                     name="umt5xxl", clip_model=TinyUMT5)

        target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.wan.WanT5Tokenizer, TinyWanTE)
        clip = comfy.sd.CLIP(target, tokenizer_data={"spiece_model": sd.get("spiece_model")},
                             parameters=comfy.utils.calculate_parameters(sd))
        missing, _ = clip.load_sd(sd)
        if missing:
            raise ValueError(f"{clip_name}: the tiny UMT5 lacks {missing}")
        return (clip,)


class WanTestLoadedModels:
    """Output node: ComfyUI's ``current_loaded_models`` as JSON text (patcher and model class, bytes
    loaded, how many Linear weights are held packed as uint8). With ``free_memory`` on it first calls
    ``comfy.model_management.free_memory`` for more bytes than any device has, on ComfyUI's torch
    device: the call a core loader's ``load_models_gpu`` makes on a GPU before a big load (on the CPU
    ComfyUI skips it, so a real load cannot show eviction here)."""

    CATEGORY = "WanTest"
    RETURN_TYPES = ()
    FUNCTION = "report"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        # "after" inputs order the report after the samplers of the same prompt, while their models
        # are still referenced (ComfyUI drops the outputs of a previous prompt's nodes, and with them
        # its models, when it runs another graph)
        return {"required": {"free_memory": ("BOOLEAN", {"default": False})},
                "optional": {f"after_{i}": ("LATENT",) for i in range(1, 5)}}

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")  # report on every run

    def report(self, free_memory, **_after):
        import json

        import comfy.model_management as mm

        if free_memory:
            mm.free_memory(1 << 60, mm.get_torch_device())
        rows = []
        for loaded in mm.current_loaded_models:
            patcher = loaded.model
            model = getattr(patcher, "model", None)
            packed = 0 if model is None else sum(
                1 for m in model.modules() if getattr(m, "packed", None) is not None
                and getattr(m, "weight", None) is not None and m.weight.dtype == torch.uint8)
            rows.append({"patcher": type(patcher).__name__, "model": type(model).__name__,
                         "loaded_bytes": int(patcher.loaded_size()), "packed_linears": packed})
        return {"ui": {"text": [json.dumps(rows)]}}


NODE_CLASS_MAPPINGS = {"WanTestSineAudio": WanTestSineAudio, "WanTestEmptyBatch": WanTestEmptyBatch,
                       "WanTestFailingModel": WanTestFailingModel, "WanTestTinyUMT5Loader": WanTestTinyUMT5Loader,
                       "WanTestLoadedModels": WanTestLoadedModels}
