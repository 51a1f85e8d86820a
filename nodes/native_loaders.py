"""Loaders whose outputs are ComfyUI's own types, for native graphs (KSampler, ModelSamplingSD3,
LoraLoader, WanImageToVideo, CLIPTextEncode, ...): a Wan diffusion model as MODEL from any file we read
(GGUF of any type, fp8 plain or scaled, safetensors in every layout), and a UMT5 text encoder as CLIP
(safetensors, fp8 scaled, llama.cpp GGUF), weights kept packed. See ``_comfy_packed`` for the seam,
``_comfy_text`` for the CLIP, and the README's Architecture section for why it is this one.
"""

from __future__ import annotations

import torch

from ..wan.job.options import QUANTIZATIONS
from ._comfy_packed import load_diffusion_model
from ._comfy_text import load_text_encoder
from ._common import CATEGORY, full_path, identity_of, list_files
from .loaders import DIT_FOLDERS, TEXT_FOLDERS

# "default" lets ComfyUI pick the compute dtype for the device, as its UNETLoader does
COMPUTE_DTYPES = {"default": None, "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# fp8 on load is a storage format; the "_fast" fp8 matmul belongs to our own sampler's stack
NATIVE_QUANTIZATIONS = tuple(q for q in QUANTIZATIONS if not q.endswith("_fast"))


class WanDiffusionModelLoader:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads a Wan 2.1/2.2 diffusion model as ComfyUI's MODEL for native nodes (KSampler, "
                   "LoraLoader, ModelSamplingSD3, WanImageToVideo, ...). GGUF and fp8 weights stay packed "
                   "and are expanded one layer at a time as ComfyUI computes.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "unet_name": (list_files(*DIT_FOLDERS), {"tooltip": "From models/diffusion_models or models/unet: "
                                                     ".gguf (any quant type) or .safetensors (bf16/fp16/fp8)."}),
            "compute_dtype": (list(COMPUTE_DTYPES), {"default": "default",
                              "tooltip": "default: what ComfyUI picks for this GPU."}),
            "quantization": (list(NATIVE_QUANTIZATIONS), {"default": "disabled",
                             "tooltip": "fp8_e4m3fn: store a bf16/fp16 safetensors model's block weights as "
                                        "scaled fp8 on load (GGUF and fp8 files keep their own format)."}),
        }}

    @classmethod
    def IS_CHANGED(cls, unet_name, **_):
        return identity_of(unet_name, *DIT_FOLDERS)

    def load(self, unet_name, compute_dtype="default", quantization="disabled"):
        path = full_path(unet_name, *DIT_FOLDERS)
        name = COMPUTE_DTYPES[compute_dtype]
        return (load_diffusion_model(path, None if name is None else getattr(torch, name), quantization),)


class WanUMT5Loader:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CLIP",)
    RETURN_NAMES = ("clip",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads a UMT5-XXL text encoder as ComfyUI's CLIP (type wan) for CLIPTextEncode, LoraLoader "
                   "and every native node: safetensors (bf16/fp16/fp32), fp8 plain or scaled, or a GGUF "
                   "text encoder. GGUF and fp8 weights stay packed and are expanded one layer at a time.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip_name": (list_files(*TEXT_FOLDERS), {"tooltip": "From models/text_encoders or models/clip: "
                                                      "umt5_xxl_*.safetensors or umt5-xxl-encoder-*.gguf."}),
            "device": (["default", "cpu"], {"default": "default",
                       "tooltip": "cpu: encode prompts on the CPU, as CLIPLoader's device option."}),
        }}

    @classmethod
    def IS_CHANGED(cls, clip_name, **_):
        return identity_of(clip_name, *TEXT_FOLDERS)

    def load(self, clip_name, device="default"):
        return (load_text_encoder(full_path(clip_name, *TEXT_FOLDERS), device=device),)


NODE_CLASS_MAPPINGS = {"WanDiffusionModelLoader": WanDiffusionModelLoader, "WanUMT5Loader": WanUMT5Loader}
NODE_DISPLAY_NAME_MAPPINGS = {"WanDiffusionModelLoader": "Wan Diffusion Model Loader (MODEL)",
                              "WanUMT5Loader": "Wan UMT5 Loader (CLIP)"}
