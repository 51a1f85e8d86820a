"""Loader nodes: Wan DiT, UMT5 text encoder, CLIP vision and VAE files from ComfyUI's model folders.

Each loader reads through ``wan`` and keeps the result in the shared cache (see ``_common``), so a
second graph naming the same unchanged file with the same options reuses the loaded model. The DiT
loader's LoRA input never touches the cached base: it returns a light ``WanModel`` that pairs the
base with the LoRA chain, applied only while the sampler runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

import torch

from ..wan.job.load import dit_header, load_clip_vision, load_dit, load_text_encoder, load_vae
from ..wan.job.options import PRECISIONS, QUANTIZATIONS, LoadOptions
from ..wan.job.options import precision as dtype_of
from ..wan.models.dit.attention_backends import ATTENTION_MODES  # each is checked when the model loads
from ..wan.models.dit.config import DiTConfig
from ..wan.weights.lora import refuse_unmatched
from ._common import (
    CATEGORY, MODEL_CACHE, WANCLIPVISION, WANLORA, WANMODEL, WANTEXTENCODER, WANVAE,
    full_path, identity_of, register_gguf_extension, list_files, main_device, make_room, offload_device,
)

log = logging.getLogger(__name__)

DIT_FOLDERS = ("diffusion_models",)  # ComfyUI maps the legacy "unet" folder into this one
TEXT_FOLDERS = ("text_encoders",)  # includes models/clip
LOAD_DEVICES = ("main_device", "offload_device")

# At import, before any listing: ComfyUI caches folder listings (for the length of a whole
# /object_info call, and then until the folder changes), so an extension added later, after a core
# loader has listed the same folder, would not show until the folder is next modified.
try:
    register_gguf_extension()
except ImportError:  # imported outside ComfyUI (unit tests)
    pass


@dataclasses.dataclass(frozen=True)
class WanModel:
    """What a WANMODEL socket carries: the shared base DiT plus the LoRAs to apply while sampling.

    The base is read when first used (``dit``, through the shared cache), not by the loader node:
    the loader checks the file and its LoRAs from the header alone, so a graph whose other expert
    has a LoRA for another model fails before any model is read. ``cfg`` comes from the header.
    ``block_swap``: some blocks live on the offload device and are streamed in by the model itself,
    so the sampler must not move the whole model.
    """

    name: str
    cfg: DiTConfig
    load: Callable[[], torch.nn.Module] = dataclasses.field(repr=False, compare=False)
    loras: tuple = ()
    block_swap: bool = False
    path: str | None = None  # the file and how it loads: what each rank of Wan Multi-GPU loads
    options: LoadOptions | None = dataclasses.field(default=None, compare=False)
    sdpa_edge_steps: int = 0  # from Wan Speed Options: a run option the sampler takes from its model

    @property
    def dit(self) -> torch.nn.Module:
        return self.load()

    @classmethod
    def loaded(cls, dit: torch.nn.Module, name: str, loras=(), block_swap: bool = False) -> "WanModel":
        """Around a DiT already in memory (tests and other callers)."""
        return cls(name, getattr(dit, "cfg", None), lambda: dit, tuple(loras), block_swap)


def _home(load_device: str) -> torch.device:
    """Where the model lives between runs (it always computes on the main device)."""
    return main_device() if load_device == "main_device" else offload_device()


class WanModelLoader:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANMODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = "Loads a Wan 2.1/2.2 diffusion model (GGUF or safetensors, any variant; detected from the file)."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (list_files(*DIT_FOLDERS), {"tooltip": "From models/diffusion_models or models/unet."}),
                "base_precision": (list(PRECISIONS), {"default": "bf16",
                                   "tooltip": "Dtype of the weights that are not quantized, and of the compute."}),
                "quantization": (list(QUANTIZATIONS), {"default": "disabled",
                                 "tooltip": "fp8_e4m3fn: store a safetensors model's block weights as fp8 on "
                                            "load (GGUF and fp8 files keep their own format). _fast: also "
                                            "multiply in fp8 (GPUs of compute capability 8.9+)."}),
                "load_device": (list(LOAD_DEVICES), {"default": "main_device",
                                "tooltip": "offload_device keeps the model in RAM between runs."}),
                "attention_mode": (list(ATTENTION_MODES), {"default": "auto",
                                   "tooltip": "auto: the fastest kernel this GPU runs (int8 with comfy-kitchen, "
                                              "sage with SageAttention 2), else sdpa, said once. Other modes "
                                              "need their package installed."}),
            },
            "optional": {
                "lora": (WANLORA, {"tooltip": "LoRAs from Wan LoRA Select, applied while sampling."}),
                "block_swap_args": ("WANBLOCKSWAPARGS", {"tooltip": "From Wan Block Swap Args."}),
                "compile_args": ("WANCOMPILEARGS", {"tooltip": "From Wan Torch Compile Args."}),
                "speed_args": ("WANSPEEDARGS", {"tooltip": "From Wan Speed Options."}),
                "fp16_accumulation": ("BOOLEAN", {"default": False,
                                      "tooltip": "fp16 compute only: matrix products accumulate in fp16, about "
                                                 "2x the matmul rate on GeForce GPUs (none on A100/H100), "
                                                 "less precise."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, model, **_):
        return identity_of(model, *DIT_FOLDERS)

    def load(self, model, base_precision, quantization, load_device, attention_mode, lora=None,
             block_swap_args=None, compile_args=None, fp16_accumulation=False, speed_args=None):
        path = full_path(model, *DIT_FOLDERS)
        home = _home(load_device)
        options = LoadOptions(dtype=dtype_of(base_precision), device=home, offload_device=offload_device(),
                              quantization=quantization, attention=attention_mode, block_swap=block_swap_args,
                              compile=compile_args, fp16_accumulation=bool(fp16_accumulation),
                              dequant_cache="off" if speed_args is None else speed_args.dequant_cache)
        # A swapping model computes on the main device from blocks kept on the offload device; any
        # other lives at its home between runs and the sampler moves it to the main device.
        swap = options.swaps
        if swap:
            options = dataclasses.replace(options, device=main_device())

        # the file and every LoRA are checked from the header: a wrong file or a LoRA for another
        # model fails here, before this or any other model in the graph is read
        cfg, shapes = dit_header(path)
        loras = tuple(lora or ())
        if loras:
            refuse_unmatched(shapes, loras)

        def load():
            make_room(os.path.getsize(path), options.build_device)
            dit = load_dit(path, options)
            log.info("Wan: loaded %s (%s) on %s", model, dit.cfg.variant, home)
            return dit

        def cached():  # the sampler reports how each LoRA matches, per expert
            return MODEL_CACHE.get("dit", path, options, load, offload=None if swap else offload_device())

        edges = 0 if speed_args is None else speed_args.sdpa_edge_steps
        return (WanModel(model, cfg, cached, loras, swap, path, options, sdpa_edge_steps=edges),)


class WanTextEncoderLoader:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANTEXTENCODER,)
    RETURN_NAMES = ("text_encoder",)
    FUNCTION = "load"
    DESCRIPTION = "Loads the UMT5-XXL text encoder (safetensors, fp8 scaled included, or GGUF); the tokenizer comes from the file."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text_encoder": (list_files(*TEXT_FOLDERS), {"tooltip": "From models/text_encoders or models/clip."}),
            "precision": (list(PRECISIONS), {"default": "bf16"}),
            "load_device": (list(LOAD_DEVICES), {"default": "offload_device",
                            "tooltip": "Where the encoder lives; it computes on the main device."}),
        }}

    @classmethod
    def IS_CHANGED(cls, text_encoder, **_):
        return identity_of(text_encoder, *TEXT_FOLDERS)

    def load(self, text_encoder, precision, load_device):
        path = full_path(text_encoder, *TEXT_FOLDERS)
        options = LoadOptions(dtype=dtype_of(precision), device=_home(load_device))
        return (MODEL_CACHE.get("text_encoder", path, options, lambda: load_text_encoder(path, options),
                                offload=offload_device()),)


class WanCLIPVisionLoader:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANCLIPVISION,)
    RETURN_NAMES = ("clip_vision",)
    FUNCTION = "load"
    DESCRIPTION = "Loads the CLIP ViT-H/14 vision encoder (clip_vision_h) used by Wan image-to-video."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip_vision": (list_files("clip_vision"),),
            "precision": (list(PRECISIONS), {"default": "fp16"}),
        }}

    @classmethod
    def IS_CHANGED(cls, clip_vision, **_):
        return identity_of(clip_vision, "clip_vision")

    def load(self, clip_vision, precision):
        path = full_path(clip_vision, "clip_vision")
        options = LoadOptions(dtype=dtype_of(precision), device=offload_device())
        return (MODEL_CACHE.get("clip_vision", path, options, lambda: load_clip_vision(path, options),
                                offload=offload_device()),)


class WanVAELoader:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANVAE,)
    RETURN_NAMES = ("vae",)
    FUNCTION = "load"
    DESCRIPTION = "Loads a Wan 2.1 or 2.2 VAE (original/ComfyUI or diffusers layout, detected from the file)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": (list_files("vae"),),
            "precision": (list(PRECISIONS), {"default": "bf16"}),
        }}

    @classmethod
    def IS_CHANGED(cls, vae, **_):
        return identity_of(vae, "vae")

    def load(self, vae, precision):
        path = full_path(vae, "vae")
        options = LoadOptions(dtype=dtype_of(precision), device=offload_device())
        return (MODEL_CACHE.get("vae", path, options, lambda: load_vae(path, options), offload=offload_device()),)


NODE_CLASS_MAPPINGS = {
    "WanModelLoader": WanModelLoader,
    "WanTextEncoderLoader": WanTextEncoderLoader,
    "WanCLIPVisionLoader": WanCLIPVisionLoader,
    "WanVAELoader": WanVAELoader,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "WanModelLoader": "Wan Model Loader",
    "WanTextEncoderLoader": "Wan Text Encoder Loader",
    "WanCLIPVisionLoader": "Wan CLIP Vision Loader",
    "WanVAELoader": "Wan VAE Loader",
}
