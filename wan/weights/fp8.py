"""fp8 weights: ComfyUI's ``*_fp8_e4m3fn`` and "scaled fp8" safetensors, and fp8 on load.

Scaled fp8 files (ComfyUI's model_detection / ops.scaled_fp8_ops) carry an empty ``scaled_fp8``
marker tensor whose dtype names the fp8 type, and beside each fp8 Linear weight a float32 scalar
``<module>.scale_weight`` (real weight = fp8 value x scale); ``<module>.scale_input`` only serves
fp8 matrix multiplication and is dropped here. Weights stay fp8 in memory as ``PackedTensor``
(qtype "fp8_e4m3fn"/"fp8_e5m2", optional scale) and are upcast per layer by ``PackedLinear``.
"""

from __future__ import annotations

import torch

from ..errors import WanFileError
from .names import DIT, find_prefix
from .packed import FP8_TYPES, PackedTensor
from .quantize import choose_type

_FP8_NAMES = {v: k for k, v in FP8_TYPES.items()}
FP8_MAX = {"fp8_e4m3fn": 448.0, "fp8_e5m2": 57344.0}


def has_fp8(state_dict: dict) -> bool:
    return any(getattr(v, "dtype", None) in _FP8_NAMES for v in state_dict.values())


def is_scaled_fp8_extra(key: str) -> bool:
    """The ``scaled_fp8`` marker (under any wrapper) and the per-weight scales: not weights."""
    return key == "scaled_fp8" or key.endswith((".scaled_fp8", ".scale_weight", ".scale_input"))


def weight_scale(state_dict: dict, key: str, path=None):
    """The ``scale_weight`` tensor of weight ``key`` (None when unscaled); one scalar per tensor."""
    if not key.endswith(".weight"):
        return None
    s = state_dict.get(key[: -len("weight")] + "scale_weight")
    if s is not None and s.numel() != 1:
        raise WanFileError(path, f"{key}: scale_weight of shape {tuple(s.shape)}; only one scale per "
                           "tensor is supported")
    return s


def fold_fp8_scales(state_dict: dict, path=None) -> dict:
    """Scaled fp8 weights -> float32 (value x scale); markers and scales left out; others unchanged.

    For models that hold plain weights only; ``pack_fp8_state_dict`` keeps fp8 in memory instead.
    """
    out = {}
    for key, value in state_dict.items():
        if is_scaled_fp8_extra(key):
            continue
        scale = weight_scale(state_dict, key, path)
        out[key] = value if scale is None else value.to(torch.float32) * scale.to(torch.float32)
    return out


def pack_fp8_state_dict(state_dict: dict, path=None) -> dict:
    """fp8 2-D weights -> ``PackedTensor`` (with their ``scale_weight``); other fp8 tensors upcast.

    Returns a new dict without the ``scaled_fp8`` marker and the ``scale_weight``/``scale_input``
    entries. Non-fp8 tensors pass through unchanged.
    """
    out: dict = {}
    for key, value in state_dict.items():
        if is_scaled_fp8_extra(key):
            continue
        dtype = getattr(value, "dtype", None)
        if dtype not in _FP8_NAMES:
            out[key] = value
            continue
        s = weight_scale(state_dict, key, path)
        scale = None if s is None else float(s.float().item())
        packed = PackedTensor(value.contiguous().view(torch.uint8), _FP8_NAMES[dtype], value.shape, scale)
        out[key] = packed if value.ndim == 2 else packed.dequantize(torch.float32)
    return out


def quantize_fp8(state_dict: dict, qtype: str = "fp8_e4m3fn") -> dict:
    """Block Linear weights (2-D, as the GGUF writer would quantize them) -> scaled fp8 packed.

    Each weight gets one float32 scale, amax / fp8 max, so no value saturates; everything else
    is returned unchanged. For the loader's ``quantization=fp8_e4m3fn`` option.
    """
    if qtype not in FP8_TYPES:
        raise ValueError(f"unknown fp8 type {qtype!r}; choose one of {', '.join(FP8_TYPES)}")
    prefix = find_prefix(state_dict, DIT)
    out: dict = {}
    for key, value in state_dict.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if (not isinstance(value, torch.Tensor) or not value.is_floating_point()
                or choose_type(name, tuple(value.shape), value.dtype, "Q8_0") != "Q8_0"):
            out[key] = value
            continue
        w = value.detach().to(torch.float32)
        amax = float(w.abs().max()) if w.numel() else 0.0
        scale = amax / FP8_MAX[qtype] if amax > 0 else 1.0
        q = (w / scale).to(FP8_TYPES[qtype])
        out[key] = PackedTensor(q.view(torch.uint8), qtype, w.shape, scale)
    return out
