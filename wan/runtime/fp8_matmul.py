"""fp8_e4m3fn_fast: matrix products in fp8 on GPUs with fp8 tensor cores (compute capability >= 8.9).

A ``Fp8FastLinear`` keeps an fp8 e4m3fn weight as stored (one per-tensor scale, as scaled-fp8
files and ``quantize_fp8`` give it) and quantizes each input to e4m3fn with one per-tensor scale
(the power of two at or above amax / 448), then multiplies with ``torch._scaled_mm``, which applies both scales and the bias in
the fp32 accumulator. Faster than upcasting the weight, at the cost of rounding the activations to
3 mantissa bits: a speed option, not a lossless one.

The kernels (``choose_fp8_kernel``, once per device, said in one log line): comfy-kitchen's when
it is importable with its scaled matmul (``comfy_kitchen.scaled_mm_v2``, 0.2.40+) and a compiled
backend of its fp8 quantization for this machine (its fused CUDA kernel; on ROCm its WMMA matmul),
else ours: the input scaled by a foreach multiply and cast, and ``torch._scaled_mm``. Both get the
same operands (our per-tensor power-of-two input scale, the weight's scale), so they compute the
same product.
"""

from __future__ import annotations

import logging
from typing import Callable, NamedTuple

import torch
from torch import nn

from ..errors import WanInputError
from ..weights.packed import PackedLinear

log = logging.getLogger(__name__)

E4M3_MAX = 448.0
_HALF = (torch.float16, torch.bfloat16)
FP8_KERNELS = ("auto", "comfy_kitchen", "torch")


class Fp8Kernel(NamedTuple):
    """``quantize(x2, scale) -> e4m3fn`` of x2 / scale (None: ours, ``quantize_input``) and
    ``mm(xq, w_t, scale_a, scale_b, bias, out_dtype)``: (xq * scale_a) @ (w_t * scale_b) + bias."""

    name: str
    quantize: Callable | None
    mm: Callable


def _torch_mm(xq, w_t, scale_a, scale_b, bias, out_dtype):
    return torch._scaled_mm(xq, w_t, scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype, bias=bias)


TORCH_KERNEL = Fp8Kernel("torch", None, _torch_mm)


def _kitchen_kernel() -> tuple[Fp8Kernel | None, str]:
    """(comfy-kitchen's kernel, "") or (None, why not)."""
    try:
        import comfy_kitchen as ck
        from comfy_kitchen.scaled_mm_v2 import scaled_mm_v2
    except ImportError as e:
        return None, f"comfy-kitchen with scaled_mm_v2 is not importable ({e})"
    try:
        backends = ck.list_backends()
    except Exception as e:  # a broken install must not stop the model: ours runs instead
        return None, f"comfy-kitchen's backends could not be listed ({type(e).__name__}: {e})"
    compiled = [name for name, b in backends.items() if name != "eager" and b.get("available")
                and not b.get("disabled") and "quantize_per_tensor_fp8" in b.get("capabilities", ())]
    if not compiled:
        return None, "comfy-kitchen has no compiled fp8 quantization for this machine (only its eager one)"

    def quantize(x2, scale):
        return ck.quantize_per_tensor_fp8(x2, scale, torch.float8_e4m3fn)

    def mm(xq, w_t, scale_a, scale_b, bias, out_dtype):
        return scaled_mm_v2(xq, w_t, scale_a=scale_a, scale_b=scale_b, bias=bias, out_dtype=out_dtype)

    return Fp8Kernel("comfy_kitchen", quantize, mm), ""


_CHOSEN: dict = {}


def choose_fp8_kernel(device, mode: str = "auto") -> Fp8Kernel:
    """The fp8 matmul kernel for ``device``: "auto" comfy-kitchen's where it runs (see the module
    docstring) else ours, chosen once per device and said in one log line; "comfy_kitchen" or
    "torch" name one (WanInputError when comfy-kitchen's cannot run)."""
    if mode not in FP8_KERNELS:
        raise WanInputError(f"fp8 kernel {mode!r} is not one of {', '.join(FP8_KERNELS)}")
    if mode == "torch":
        return TORCH_KERNEL
    key = (str(torch.device(device)), mode)
    if key in _CHOSEN:
        return _CHOSEN[key]
    kernel, why = _kitchen_kernel()
    if kernel is None and mode == "comfy_kitchen":
        raise WanInputError(f"fp8 kernel comfy_kitchen cannot run: {why}")
    if kernel is None:
        log.info("Wan: fp8 matmul uses torch._scaled_mm: %s", why)
        kernel = TORCH_KERNEL
    else:
        log.info("Wan: fp8 matmul uses comfy-kitchen's fp8 quantization and scaled_mm_v2 on %s", key[0])
    _CHOSEN[key] = kernel
    return kernel


def fp8_fast_supported(device) -> tuple[bool, str]:
    """(usable, why not) for fp8 matrix products on ``device``."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False, f"the model runs on {device.type}, not on an NVIDIA GPU"
    major, minor = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    if (major, minor) < (8, 9):
        return False, f"{name} has compute capability {major}.{minor}"
    return True, ""


def quantize_input(x2: torch.Tensor, cast: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x2 / scale in e4m3fn, fp32 scale) with scale the power of two at or above amax / 448;
    ``cast(x2, scale)`` does the scaled cast instead of ours when given (comfy-kitchen's kernel).

    A power-of-two scale makes the division exact in x's own dtype, so each value is rounded once,
    into e4m3, with no fp32 copy of the input (1.8 GB for a 32k-token FFN input). A scale of
    exactly amax / 448 would need that copy or round twice (through bf16 about 4% of values land
    one e4m3 step off). It costs at most one bit of the e4m3 range, not precision. Plain tensor
    ops only, so torch.compile fuses the whole quantization.
    """
    # The scale stays a normal number of x's dtype (fp16 has little room), so it and its
    # reciprocal convert exactly. vector_norm(inf) is max|x| in one pass (abs().amax() takes two).
    amax = torch.linalg.vector_norm(x2, float("inf")).float()
    ratio = (amax / E4M3_MAX).clamp_min(torch.finfo(x2.dtype).smallest_normal)
    scale = torch.exp2(torch.ceil(torch.log2(ratio)))
    scale = torch.where(scale < ratio, scale * 2, scale)  # log2 may round one binade low
    if cast is not None:
        return cast(x2, scale), scale
    inv = scale.reciprocal().to(x2.dtype)
    if torch.compiler.is_compiling():  # inductor fuses the plain multiply with the cast
        return (x2 * inv).to(torch.float8_e4m3fn), scale
    # Eager: the foreach multiply takes the device scalar without a host sync and, unlike a
    # broadcast multiply, runs vectorized: 0.62 ms against 0.75 ms for a 32760x5120 bf16 input
    # on an H100.
    return torch._foreach_mul([x2], inv)[0].to(torch.float8_e4m3fn), scale


class Fp8FastLinear(PackedLinear):
    """A ``PackedLinear`` holding fp8_e4m3fn bytes whose forward multiplies in fp8; the plain
    (upcasting) forward remains for sizes the kernel refuses. A LoRA adds to the output through a
    forward hook, as on any packed layer, so the weight itself stays fp8."""

    def __init__(self, layer: PackedLinear, kernel: Fp8Kernel = TORCH_KERNEL):
        if layer.qtype != "fp8_e4m3fn":
            raise WanInputError(f"fp8_e4m3fn_fast needs fp8_e4m3fn weights, this layer holds {layer.qtype}")
        super().__init__(layer.weight, layer.bias)
        # A buffer, so that .to() and block swap move it with the weight (no per-call copy).
        scale_w = torch.tensor(1.0 if self.scale is None else self.scale, dtype=torch.float32)
        self.register_buffer("scale_w", scale_w.to(layer.packed.device), persistent=False)
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in_features] -> [..., out_features] in x's dtype."""
        if self.in_features % 16 or self.out_features % 16:
            return super().forward(x)  # sizes the kernel refuses
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        xq, scale_x = quantize_input(x2, self.kernel.quantize)
        w = self.packed.view(torch.float8_e4m3fn).view(self.out_features, self.in_features)
        fused_bias = self.bias is not None and x.dtype in _HALF
        out = self.kernel.mm(xq, w.t(), scale_x, self.scale_w, self.bias.to(x.dtype) if fused_bias else None,
                             x.dtype)
        if self.bias is not None and not fused_bias:
            out = out + self.bias.to(out.dtype)
        return out.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 matmul ({self.kernel.name})"


def enable_fp8_fast(dit: nn.Module, device=None, check_device: bool = True, kernel: str = "auto") -> int:
    """Replace the fp8_e4m3fn ``PackedLinear`` layers of the DiT blocks by ``Fp8FastLinear``
    computing with ``choose_fp8_kernel(device, kernel)``.

    Returns how many were replaced. WanInputError on a device without fp8 matrix products or on
    a model without fp8 e4m3fn weights (load it with quantization fp8_e4m3fn first).
    ``check_device=False`` skips the device check (tests: ``torch._scaled_mm`` also runs on CPU).
    """
    if device is None:
        device = next(dit.parameters()).device
    if check_device:
        ok, why = fp8_fast_supported(device)
        if not ok:
            raise WanInputError(f"fp8_e4m3fn_fast needs an NVIDIA GPU with compute capability 8.9 or newer "
                                f"(RTX 40xx, L4/L40, H100 and later); {why}. Use fp8_e4m3fn instead.")
    chosen = choose_fp8_kernel(device, kernel) if check_device or kernel != "auto" else TORCH_KERNEL
    count = 0
    for stack in (dit.blocks, getattr(dit, "vace_blocks", ())):
        for block in stack:
            for name, module in list(block.named_modules()):
                if type(module) is PackedLinear and module.qtype == "fp8_e4m3fn":
                    parent_name, _, child = name.rpartition(".")
                    parent = block.get_submodule(parent_name) if parent_name else block
                    setattr(parent, child, Fp8FastLinear(module, chosen))
                    count += 1
    if count == 0:
        raise WanInputError("fp8_e4m3fn_fast needs fp8 e4m3fn weights: load the model from an fp8 e4m3fn "
                            "file or with quantization fp8_e4m3fn")
    return count
