"""ComfyUI's "comfy_quant" checkpoints: per-layer quantized weights with their metadata.

ComfyUI core (0.8+, ``comfy/ops.py`` mixed-precision ops, ``comfy/utils.py``) marks each quantized
Linear ``<layer>`` with a uint8 tensor ``<layer>.comfy_quant`` holding JSON ``{"format": ...}``
(or the whole file with a ``_quantization_metadata`` header entry ``{"layers": {layer: {...}}}``)
beside ``<layer>.weight`` and its scales:

- ``float8_e4m3fn`` / ``float8_e5m2``: fp8 weight, ``weight_scale`` one float32 per tensor
  (real weight = fp8 value x scale), optional ``input_scale`` (fp8 matmul only; dropped);
- ``int8_tensorwise``: int8 weight, ``weight_scale`` one float32 per tensor or one per output row;
- ``nvfp4``: uint8 weight of packed E2M1 pairs, ``weight_scale`` float8_e4m3fn block scales in
  cuBLAS's tiled layout, ``weight_scale_2`` the float32 tensor scale (``nvfp4.py``).

fp8, per-tensor int8 and nvfp4 weights stay packed (``PackedTensor``) and are expanded per layer by
the one dequantizer; per-row int8 is expanded here. Formats whose layout this pack does not read
(``mxfp8``, int8 with ``convrot`` rotation, ...) are refused naming the layer and the format,
never guessed.
"""

from __future__ import annotations

import json

import torch

from ..errors import WanFileError
from .nvfp4 import BLOCK, pack_nvfp4
from .packed import PackedTensor

MARK = ".comfy_quant"
META = "_quantization_metadata"
_FP8 = {"float8_e4m3fn": ("fp8_e4m3fn", torch.float8_e4m3fn), "float8_e5m2": ("fp8_e5m2", torch.float8_e5m2)}
FORMATS = (*_FP8, "int8_tensorwise", "nvfp4")


def has_comfy_quant(names, metadata: dict | None) -> bool:
    """Whether a file with tensors ``names`` and header ``metadata`` is in comfy_quant form."""
    return bool(metadata and META in metadata) or any(k.endswith(MARK) for k in names)


def layer_formats(state_dict: dict, metadata: dict | None, path=None) -> dict[str, dict]:
    """{layer: its comfy_quant config} from the per-layer markers and the header entry."""
    layers: dict[str, dict] = {}
    if metadata and META in metadata:
        try:
            layers.update(json.loads(metadata[META])["layers"])
        except (ValueError, KeyError, TypeError) as e:
            raise WanFileError(path, f"header entry {META} is not comfy_quant JSON with 'layers' ({e})") from e
    for key, value in state_dict.items():
        if key.endswith(MARK):
            try:
                layers[key[: -len(MARK)]] = json.loads(value.numpy().tobytes())
            except (ValueError, AttributeError) as e:
                raise WanFileError(path, f"{key} is not a comfy_quant JSON marker ({e})") from e
    return layers


def logical_shapes(shapes: dict) -> dict:
    """Header shapes with each nvfp4 weight at its logical shape (two values per stored byte). From
    the header alone the format is not readable (it is in the marker's bytes), but nvfp4 is the one
    format with a ``weight_scale_2``."""
    out = dict(shapes)
    for key in shapes:
        weight = key[: -len("_scale_2")] if key.endswith(".weight_scale_2") else None
        if weight in out and len(out[weight]) == 2:
            out[weight] = (out[weight][0], 2 * out[weight][1])
    return out


def unpack_comfy_quant(state_dict: dict, metadata: dict | None, path=None) -> dict:
    """The tensors of a comfy_quant file with each quantized weight as our form (see the module
    docstring); markers and scales consumed, everything else unchanged."""
    layers = layer_formats(state_dict, metadata, path)
    out = {k: v for k, v in state_dict.items() if not k.endswith(MARK)}
    for layer, conf in layers.items():
        fmt = conf.get("format") if isinstance(conf, dict) else None
        key = f"{layer}.weight"
        if key not in out:
            raise WanFileError(path, f"{layer}: comfy_quant marks it {fmt!r} but {key} is missing")
        if fmt not in FORMATS or conf.get("convrot"):
            what = f"{fmt} with convrot" if conf.get("convrot") else repr(fmt)
            raise WanFileError(path, f"{layer}: comfy_quant format {what} is not one this pack reads "
                                     f"(it reads {', '.join(FORMATS)})")
        weight, scale = out.pop(key), out.pop(f"{layer}.weight_scale", None)
        out.pop(f"{layer}.input_scale", None)
        if fmt == "nvfp4":
            out[key] = _nvfp4(key, weight, scale, out.pop(f"{layer}.weight_scale_2", None), path)
            continue
        scale = torch.ones(()) if scale is None else scale.float()
        if fmt in _FP8:
            qtype, dtype = _FP8[fmt]
            if weight.dtype != dtype or scale.numel() != 1:
                raise WanFileError(path, f"{key}: {fmt} needs {dtype} data and one weight_scale, got "
                                         f"{weight.dtype} and {scale.numel()} scales")
            out[key] = PackedTensor(weight.contiguous().view(torch.uint8), qtype, weight.shape, float(scale))
            continue
        if weight.dtype != torch.int8 or weight.ndim != 2 or scale.numel() not in (1, weight.shape[0]):
            raise WanFileError(path, f"{key}: int8_tensorwise needs a 2-D int8 weight and 1 or {weight.shape[0]} "
                                     f"scales, got {weight.dtype} {tuple(weight.shape)} and {scale.numel()}")
        if scale.numel() == 1:
            out[key] = PackedTensor(weight.contiguous().view(torch.uint8), "int8", weight.shape, float(scale))
        else:
            out[key] = weight.float() * scale.reshape(-1, 1)
    return out


def _nvfp4(key: str, weight, block_scale, tensor_scale, path) -> PackedTensor:
    """ComfyUI's nvfp4 tensors -> our packed form; the logical shape is the stored (16-padded) one,
    which for every Wan layer is the layer's own (all its widths are multiples of 16)."""
    if weight.dtype != torch.uint8 or weight.ndim != 2 or (2 * weight.shape[1]) % BLOCK:
        raise WanFileError(path, f"{key}: nvfp4 needs a 2-D uint8 weight of packed pairs, whole blocks of "
                                 f"{BLOCK} per row, got {weight.dtype} {tuple(weight.shape)}")
    if block_scale is None or tensor_scale is None or tensor_scale.numel() != 1:
        raise WanFileError(path, f"{key}: nvfp4 needs weight_scale (block scales) and one weight_scale_2")
    rows, cols = weight.shape[0], 2 * weight.shape[1]
    try:
        data = pack_nvfp4(weight, block_scale)
    except (ValueError, RuntimeError) as e:
        raise WanFileError(path, f"{key}: nvfp4 block scales {tuple(block_scale.shape)} do not fit the "
                                 f"weight ({e})") from e
    return PackedTensor(data, "nvfp4", (rows, cols), float(tensor_scale.float()))
