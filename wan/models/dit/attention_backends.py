"""Attention modes by name: SDPA and the optional kernels (flash-attn, SageAttention).

``attention_kernel(mode)`` turns a mode name into a kernel ``(q, k, v) -> out`` over [B, L, H, D]
through a fixed table of factories; ``WanDiT.set_attention`` puts it on the model's attention
modules. Nothing is registered anywhere: two models may run different kernels side by side.

Each optional mode names the package it needs; choosing a mode whose package is not installed is an
error that says so, never a silent fall back to SDPA (a user who picked a kernel wants to know it is
not the one running). Kernels are imported only when a mode is chosen.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from types import MappingProxyType

import torch

from ...errors import WanInputError
from .attention import Kernel, in_query_chunks, sdpa

_HALF = (torch.float16, torch.bfloat16)


def _half(q, k, v):
    # The fused kernels take fp16/bf16 only; fp32 inputs (tests, fp32 compute) go through bf16.
    dt = q.dtype if q.dtype in _HALF else torch.bfloat16
    return q.to(dt), k.to(dt), v.to(dt)


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


# mode -> (package to import, what to install, factory of the kernel); read-only
OPTIONAL_KERNELS: MappingProxyType[str, tuple[str, str, Callable[[], Kernel]]] = MappingProxyType({
    "flash_attn": ("flash_attn", "flash-attn", _make_flash_attn),
    "flash_attn_3": ("flash_attn_interface", "flash-attn 3 (flash_attn_interface)", _make_flash_attn_3),
    "sageattention": ("sageattention", "sageattention", _make_sageattention),
})
ATTENTION_MODES = ("sdpa", *OPTIONAL_KERNELS)


def attention_kernel(mode: str) -> Kernel:
    """The kernel of attention mode ``mode`` (importing its package), or a WanInputError."""
    if mode == "sdpa":
        return sdpa
    if mode not in OPTIONAL_KERNELS:
        raise WanInputError(f"unknown attention_mode {mode!r}; choose one of {', '.join(ATTENTION_MODES)}")
    package, install, factory = OPTIONAL_KERNELS[mode]
    if importlib.util.find_spec(package) is None:
        raise WanInputError(f"attention_mode {mode!r} needs the {install} package, which is not installed")
    try:
        return in_query_chunks(factory())
    except ImportError as e:  # installed but broken (wrong CUDA / torch build): say which
        raise WanInputError(f"attention_mode {mode!r}: the {install} package is installed but cannot be "
                            f"imported ({e})") from e
