"""Optional attention kernels (flash-attn, SageAttention) behind ``attention.attention(..., mode)``.

Each mode names the package it needs; choosing a mode whose package is not installed is an error
that says so, never a silent fall back to SDPA (a user who picked a kernel wants to know it is not
the one running). Kernels are imported only when a mode is chosen.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

import torch

from ...errors import WanInputError
from .attention import BACKENDS, register_backend

_HALF = (torch.float16, torch.bfloat16)


def _half(q, k, v):
    # The fused kernels take fp16/bf16 only; fp32 inputs (tests, fp32 compute) go through bf16.
    dt = q.dtype if q.dtype in _HALF else torch.bfloat16
    return q.to(dt), k.to(dt), v.to(dt)


def _make_flash_attn() -> Callable:
    from flash_attn import flash_attn_func

    def fn(q, k, v):
        out = flash_attn_func(*_half(q, k, v))
        return out.to(q.dtype)
    return fn


def _make_flash_attn_3() -> Callable:
    from flash_attn_interface import flash_attn_func

    def fn(q, k, v):
        out = flash_attn_func(*_half(q, k, v))
        if isinstance(out, tuple):  # some releases also return the log-sum-exp
            out = out[0]
        return out.to(q.dtype)
    return fn


def _make_sageattention() -> Callable:
    from sageattention import sageattn

    def fn(q, k, v):
        out = sageattn(*_half(q, k, v), tensor_layout="NHD", is_causal=False)
        return out.to(q.dtype)
    return fn


# mode -> (package to import, what to install, factory of fn(q, k, v) over [B, L, H, D])
OPTIONAL_BACKENDS: dict[str, tuple[str, str, Callable[[], Callable]]] = {
    "flash_attn": ("flash_attn", "flash-attn", _make_flash_attn),
    "flash_attn_3": ("flash_attn_interface", "flash-attn 3 (flash_attn_interface)", _make_flash_attn_3),
    "sageattention": ("sageattention", "sageattention", _make_sageattention),
}
ATTENTION_MODES = ("sdpa", *OPTIONAL_BACKENDS)


def available_modes() -> list[str]:
    """Modes usable in this environment (their package can be found)."""
    return ["sdpa"] + [m for m, (pkg, _, _) in OPTIONAL_BACKENDS.items() if importlib.util.find_spec(pkg)]


def ensure_backend(mode: str) -> str:
    """Register ``mode`` with ``attention`` (importing its package) or raise a WanInputError."""
    if mode in BACKENDS:
        return mode
    if mode not in OPTIONAL_BACKENDS:
        raise WanInputError(f"unknown attention_mode {mode!r}; choose one of {', '.join(ATTENTION_MODES)}")
    package, install, factory = OPTIONAL_BACKENDS[mode]
    if importlib.util.find_spec(package) is None:
        raise WanInputError(f"attention_mode {mode!r} needs the {install} package, which is not installed")
    try:
        fn = factory()
    except ImportError as e:  # installed but broken (wrong CUDA / torch build): say which
        raise WanInputError(f"attention_mode {mode!r}: the {install} package is installed but cannot be "
                            f"imported ({e})") from e
    register_backend(mode, fn)
    return mode


def set_attention_backend(dit: torch.nn.Module, mode: str) -> None:
    """Validate ``mode`` and route every attention of ``dit`` through it."""
    dit.set_attention_mode(ensure_backend(mode))
