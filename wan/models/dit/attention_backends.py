"""Attention modes by name: SDPA and the optional kernels (comfy-kitchen INT8, SageAttention,
flash-attn).

This module holds the table of optional kernels and what each needs; ``attention_select`` turns a
mode name into a kernel ``(q, k, v) -> out`` over [B, L, H, D] and resolves ``auto``. A mode named explicitly whose package is not installed, or
whose GPU cannot run it, is an error that says so (a user who picked a kernel wants to know it is
not the one running). Every optional kernel runs behind ``GuardedKernel``: a call of a shape or
dtype it does not take, or a first output that is not finite where SDPA's is, goes to SDPA and
says so once. Kernels are imported only when a mode is chosen.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import torch

from ...errors import WanInputError
from .attention import Kernel, in_query_chunks
from .attention_guard import GuardedKernel

_HALF = (torch.float16, torch.bfloat16)


def _half(q, k, v):
    # The fused kernels take fp16/bf16 only; fp32 inputs (tests, fp32 compute) go through bf16.
    dt = q.dtype if q.dtype in _HALF else torch.bfloat16
    return q.to(dt), k.to(dt), v.to(dt)


def _make_int8() -> Kernel:
    from comfy_kitchen import int8_attention

    def fn(q, k, v):
        # comfy-kitchen takes [B, H, L, D]; the transposes are views with a contiguous last dim
        out = int8_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return fn


def _make_flash_attn() -> Kernel:
    from flash_attn import flash_attn_func

    def fn(q, k, v):
        out = flash_attn_func(*_half(q, k, v))
        return out.to(q.dtype)
    return fn


def _make_flash_attn_3() -> Kernel:
    from flash_attn_interface import flash_attn_func

    def fn(q, k, v):
        out = flash_attn_func(*_half(q, k, v))
        if isinstance(out, tuple):  # some releases also return the log-sum-exp
            out = out[0]
        return out.to(q.dtype)
    return fn


def _make_sageattention() -> Kernel:
    from sageattention import sageattn

    def fn(q, k, v):
        out = sageattn(*_half(q, k, v), tensor_layout="NHD", is_causal=False)
        return out.to(q.dtype)
    return fn


@dataclass(frozen=True)
class OptionalKernel:
    """What an optional mode needs: the package to import, what to install, the lowest CUDA compute
    capability it runs on, the head dims, dtypes and device types it takes, and the factory of the
    kernel."""

    package: str
    install: str
    factory: Callable[[], Kernel]
    min_capability: tuple[int, int]
    head_dims: tuple[int, ...] | None = None  # None: 1..256
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
    devices: tuple[str, ...] = ("cuda",)

    def takes(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str | None:
        """Why this kernel cannot take these inputs (None: it can)."""
        d = q.shape[-1]
        if self.head_dims is None and not 1 <= d <= 256 or self.head_dims is not None and d not in self.head_dims:
            return f"head dim {d}"
        if q.dtype not in self.dtypes:
            return f"dtype {q.dtype}"
        if q.device.type not in self.devices:
            return f"device {q.device.type}"
        return None


_ANY = (torch.float32, torch.float16, torch.bfloat16)
# mode -> what it needs; read-only. "sage" and "sageattention" (the older name, kept so saved
# workflows load) are the same kernel.
OPTIONAL_KERNELS: MappingProxyType[str, OptionalKernel] = MappingProxyType({
    "int8": OptionalKernel("comfy_kitchen", "comfy-kitchen", _make_int8, (7, 5)),
    "sage": OptionalKernel("sageattention", "sageattention", _make_sageattention, (8, 0), (64, 96, 128), _ANY),
    "flash_attn": OptionalKernel("flash_attn", "flash-attn", _make_flash_attn, (8, 0), None, _ANY),
    "flash_attn_3": OptionalKernel("flash_attn_interface", "flash-attn 3 (flash_attn_interface)",
                                   _make_flash_attn_3, (9, 0), None, _ANY),
    "sageattention": OptionalKernel("sageattention", "sageattention", _make_sageattention, (8, 0),
                                    (64, 96, 128), _ANY),
})
ATTENTION_MODES = ("auto", "sdpa", *OPTIONAL_KERNELS)


def capability(device: torch.device) -> tuple[int, int] | None:
    """The CUDA compute capability of ``device`` (None: not a CUDA device, or none present)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(device))


def unavailable(mode: str, device: torch.device) -> str | None:
    """Why optional ``mode`` cannot run on ``device`` (None: it can), without importing anything."""
    need = OPTIONAL_KERNELS[mode]
    if importlib.util.find_spec(need.package) is None:
        return f"needs the {need.install} package, which is not installed"
    cap = capability(device)
    if cap is None:
        return f"needs a CUDA GPU (the model computes on {device.type})"
    if cap < need.min_capability:
        return (f"needs a GPU of compute capability {'.'.join(map(str, need.min_capability))} or newer "
                f"(this one is {'.'.join(map(str, cap))})")
    return None


def optional_kernel(mode: str) -> Kernel:
    """The kernel of optional ``mode`` behind its guard, split over long query sequences (imports
    the package; WanInputError when it is installed but cannot be imported)."""
    need = OPTIONAL_KERNELS[mode]
    try:
        kernel = need.factory()
    except ImportError as e:  # installed but broken (wrong CUDA / torch build): say which
        raise WanInputError(f"attention_mode {mode!r}: the {need.install} package is installed but cannot be "
                            f"imported ({e})") from e
    return in_query_chunks(GuardedKernel(mode, kernel, need.takes))
