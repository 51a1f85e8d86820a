"""Packed weights: kept in their file's quantized bytes, expanded only inside a layer's forward.

One type serves GGUF quant types, fp8 safetensors and ComfyUI's comfy_quant formats (fp8, int8,
nvfp4: ``nvfp4.py``). A ``PackedTensor`` is deliberately a plain
object, not a ``torch.Tensor``: handing it to a torch op by mistake fails loudly instead of
computing on raw bytes. ``PackedLinear`` stores the bytes as a uint8 buffer, so ``model.to(device)``
moves them packed and ``model.to(dtype)`` leaves them alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WanFileError
from .dequant import DEQUANTIZERS, dequantize
from .nvfp4 import dequantize_nvfp4

FP8_TYPES = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
# one element per byte times one float32 scale: fp8 files, and comfy_quant's per-tensor int8
SCALED_TYPES = {**FP8_TYPES, "int8": torch.int8}
# values, block scales and a tensor scale in one buffer (the layout is nvfp4.py's)
BLOCK_SCALED_TYPES = ("nvfp4",)


class PackedTensor:
    """A quantized weight: uint8 ``data``, quant type ``qtype``, LOGICAL ``shape``, the tensor
    ``scale`` of fp8, int8 and nvfp4 weights."""

    is_packed = True

    def __init__(self, data: torch.Tensor, qtype: str, shape, scale: float | None = None):
        if qtype not in DEQUANTIZERS and qtype not in SCALED_TYPES and qtype not in BLOCK_SCALED_TYPES:
            raise ValueError(f"unknown packed type {qtype!r}")
        self.data = data if data.dtype == torch.uint8 else data.view(torch.uint8)
        self.qtype = qtype
        self.shape = torch.Size(int(s) for s in shape)
        self.scale = None if scale is None else float(scale)

    # -- the tensor-like surface that shape-based code (detection, loaders) reads
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return self.shape.numel()

    nelement = numel

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def dtype(self) -> torch.dtype:
        """The storage dtype (bytes); the compute dtype is chosen by whoever dequantizes."""
        return torch.uint8

    @property
    def nbytes(self) -> int:
        return self.data.numel()

    def __repr__(self) -> str:
        scale = "" if self.scale is None else f", scale={self.scale:g}"
        return f"PackedTensor({self.qtype}, shape={tuple(self.shape)}, {self.nbytes} bytes{scale})"

    def to(self, device=None, *args, **kwargs) -> "PackedTensor":
        """Moves the packed bytes; dtype arguments are ignored (the bytes are not a float type)."""
        if isinstance(device, torch.dtype):
            return self
        if device is None:
            return self
        return PackedTensor(self.data.to(device, non_blocking=kwargs.get("non_blocking", False)),
                            self.qtype, self.shape, self.scale)

    def dequantize(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """The plain weight, of logical shape, in ``dtype`` on ``device`` (default: where it is)."""
        return dequantize_packed(self.data, self.qtype, self.shape, self.scale, dtype, device)


def dequantize_packed(data: torch.Tensor, qtype: str, shape: torch.Size, scale: float | None,
                      dtype: torch.dtype, device=None) -> torch.Tensor:
    if device is not None and data.device != torch.device(device):
        data = data.to(device, non_blocking=True)
    if qtype in SCALED_TYPES:
        w = data.view(SCALED_TYPES[qtype]).reshape(shape)
        if scale is None:
            return w.to(dtype)
        # Scaled fp8: the same bits as ComfyUI's convert_weight (float32 multiply, one rounding),
        # since fp8 converts exactly to every compute dtype and the multiply runs in float32
        # internally; no float32 copy of the weight is written. int8 (|v| <= 128) converts exactly
        # to every compute dtype too.
        return w.to(dtype) * scale
    if qtype == "nvfp4":
        return dequantize_nvfp4(data, shape, scale, dtype)
    return dequantize(data, qtype, shape, dtype)


def is_packed(value) -> bool:
    return bool(getattr(value, "is_packed", False))


class PackedLinear(nn.Module):
    """``nn.Linear`` whose weight stays packed; it is expanded to the input's dtype per forward.

    The packed bytes are never rewritten: a LoRA on such a layer adds its product to the layer's
    output through a forward hook (``wan.weights.lora.apply``).

    ``keep_dequantized`` (``wan.runtime.dequant_cache``) holds the expanded weight where the bytes
    are, so forwards in that dtype on that device skip the expansion; any move or cast of the layer
    (``.to()``, ``.cuda()``, ComfyUI unloading the model) drops it, and ``refill`` expands it again
    where the bytes are then.
    """

    dequantized: torch.Tensor | None = None
    keep_dtype: torch.dtype | None = None  # set while the expansion is to be kept

    def __init__(self, weight: PackedTensor, bias: torch.Tensor | None = None):
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(f"PackedLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        self.out_features, self.in_features = weight.shape
        self.qtype = weight.qtype
        self.weight_shape = weight.shape
        self.scale = weight.scale
        # non-persistent: the caller's strict load_state_dict must not expect these keys, since
        # attach_packed has already consumed them from the state dict
        self.register_buffer("packed", weight.data, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    @property
    def weight(self) -> PackedTensor:
        return PackedTensor(self.packed, self.qtype, self.weight_shape, self.scale)

    def dequantized_weight(self, dtype: torch.dtype, device=None) -> torch.Tensor:
        return dequantize_packed(self.packed, self.qtype, self.weight_shape, self.scale, dtype, device)

    def keep_dequantized(self, dtype: torch.dtype) -> int:
        """Expand the weight once into ``dtype`` where the bytes are and keep it; its bytes."""
        self.keep_dtype = dtype
        self.refill()
        return self.dequantized.numel() * self.dequantized.element_size()

    def refill(self) -> None:
        """The kept expansion again after a move dropped it (nothing when none is to be kept)."""
        if self.keep_dtype is not None and self.dequantized is None:
            self.dequantized = self.dequantized_weight(self.keep_dtype)

    def drop_dequantized(self) -> None:
        self.keep_dtype = None
        self.dequantized = None

    def _apply(self, fn, recurse=True):
        self.dequantized = None  # a kept expansion would stay behind on the old device
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in_features] -> [..., out_features] in x's dtype."""
        w = self.dequantized
        if w is None or w.dtype != x.dtype or w.device != x.device:
            w = self.dequantized_weight(x.dtype, x.device)
        b = None if self.bias is None else self.bias.to(device=x.device, dtype=x.dtype)
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, qtype={self.qtype}")


def packed_storage_bytes(model: nn.Module) -> int:
    """Bytes held in packed form by a model's PackedLinear layers."""
    return sum(m.packed.numel() for m in model.modules() if isinstance(m, PackedLinear))


def attach_packed(model: nn.Module, state_dict: dict) -> set[str]:
    """Swap each ``nn.Linear`` whose weight in ``state_dict`` is packed for a ``PackedLinear``.

    The model may live on the meta device. Consumed keys (``<mod>.weight`` and ``<mod>.bias``) are
    removed from ``state_dict`` and returned. A packed value that no Linear takes (a conv kernel,
    an embedding, a 3-D modulation) is replaced in ``state_dict`` by its dequantized float32
    tensor, so the caller's ordinary load handles it.
    """
    consumed: set[str] = set()
    for key in list(state_dict):
        value = state_dict.get(key)
        if not is_packed(value):
            continue
        owner_name, _, leaf = key.rpartition(".")
        owner = _get_module(model, owner_name) if leaf == "weight" else None
        if not isinstance(owner, nn.Linear):
            state_dict[key] = value.dequantize(torch.float32)
            continue
        expected = (owner.out_features, owner.in_features)
        if tuple(value.shape) != expected:
            raise WanFileError(None, f"{key}: packed weight of shape {tuple(value.shape)} does not "
                               f"fit the model's Linear {expected}")
        bias_key = f"{owner_name}.bias"
        bias = state_dict.get(bias_key)
        if owner.bias is not None and bias is None:
            raise WanFileError(None, f"{bias_key} is missing (the model's Linear has a bias)")
        if owner.bias is None and bias is not None:
            raise WanFileError(None, f"{bias_key} is present but the model's Linear has no bias")
        if is_packed(bias):
            bias = bias.dequantize(torch.float32)
        if bias is not None:
            bias = bias.to(value.device)
            consumed.add(bias_key)
            state_dict.pop(bias_key)
        _set_module(model, owner_name, PackedLinear(value, bias))
        consumed.add(key)
        state_dict.pop(key)
    return consumed


def _get_module(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name) if name else model
    except AttributeError:
        return None


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
