"""Loaders whose outputs are ComfyUI's own types, for native graphs (KSampler, ModelSamplingSD3,
LoraLoader, WanImageToVideo, ...): a Wan diffusion model as MODEL from any file we read (GGUF of any
type, fp8 plain or scaled, safetensors in every layout), weights kept packed. See ``_comfy_packed``
for the seam and the README's Architecture section for why it is this one.
"""

from __future__ import annotations

import torch

from ..wan.job.options import QUANTIZATIONS
from ._comfy_packed import load_diffusion_model
from ._common import CATEGORY, full_path, identity_of, list_files
from .loaders import DIT_FOLDERS

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


NODE_CLASS_MAPPINGS = {"WanDiffusionModelLoader": WanDiffusionModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"WanDiffusionModelLoader": "Wan Diffusion Model Loader (MODEL)"}
