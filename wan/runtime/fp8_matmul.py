"""fp8_e4m3fn_fast: matrix products in fp8 on GPUs with fp8 tensor cores (compute capability >= 8.9).

A ``Fp8FastLinear`` keeps an fp8 e4m3fn weight as stored (one per-tensor scale, as scaled-fp8
files and ``quantize_fp8`` give it) and quantizes each input to e4m3fn with one per-tensor scale
(the power of two at or above amax / 448), then multiplies with ``torch._scaled_mm``, which applies both scales and the bias in
the fp32 accumulator. Faster than upcasting the weight, at the cost of rounding the activations to
3 mantissa bits: a speed option, not a lossless one.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import WanInputError
from ..weights.packed import PackedLinear

E4M3_MAX = 448.0
_HALF = (torch.float16, torch.bfloat16)


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


def quantize_input(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x2 / scale in e4m3fn, fp32 scale) with scale the power of two at or above amax / 448.

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

    def __init__(self, layer: PackedLinear):
        if layer.qtype != "fp8_e4m3fn":
            raise WanInputError(f"fp8_e4m3fn_fast needs fp8_e4m3fn weights, this layer holds {layer.qtype}")
        super().__init__(layer.weight, layer.bias)
        # A buffer, so that .to() and block swap move it with the weight (no per-call copy).
        scale_w = torch.tensor(1.0 if self.scale is None else self.scale, dtype=torch.float32)
        self.register_buffer("scale_w", scale_w.to(layer.packed.device), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in_features] -> [..., out_features] in x's dtype."""
        if self.in_features % 16 or self.out_features % 16:
            return super().forward(x)  # sizes the kernel refuses
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        xq, scale_x = quantize_input(x2)
        w = self.packed.view(torch.float8_e4m3fn).view(self.out_features, self.in_features)
        fused_bias = self.bias is not None and x.dtype in _HALF
        out = torch._scaled_mm(
            xq, w.t(), scale_a=scale_x, scale_b=self.scale_w, out_dtype=x.dtype,
            bias=self.bias.to(x.dtype) if fused_bias else None,
        )
        if self.bias is not None and not fused_bias:
            out = out + self.bias.to(out.dtype)
        return out.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 matmul"


def enable_fp8_fast(dit: nn.Module, device=None, check_device: bool = True) -> int:
    """Replace the fp8_e4m3fn ``PackedLinear`` layers of the DiT blocks by ``Fp8FastLinear``.

    Returns how many were replaced. WanInputError on a device without fp8 matrix products or on
    a model without fp8 e4m3fn weights (load it with quantization fp8_e4m3fn first).
    ``check_device=False`` skips the device check (tests: ``torch._scaled_mm`` also runs on CPU).
    """
    if check_device:
        if device is None:
            device = next(dit.parameters()).device
        ok, why = fp8_fast_supported(device)
        if not ok:
            raise WanInputError(f"fp8_e4m3fn_fast needs an NVIDIA GPU with compute capability 8.9 or newer "
                                f"(RTX 40xx, L4/L40, H100 and later); {why}. Use fp8_e4m3fn instead.")
    count = 0
    for stack in (dit.blocks, getattr(dit, "vace_blocks", ())):
        for block in stack:
            for name, module in list(block.named_modules()):
                if type(module) is PackedLinear and module.qtype == "fp8_e4m3fn":
                    parent_name, _, child = name.rpartition(".")
                    parent = block.get_submodule(parent_name) if parent_name else block
                    setattr(parent, child, Fp8FastLinear(module))
                    count += 1
    if count == 0:
        raise WanInputError("fp8_e4m3fn_fast needs fp8 e4m3fn weights: load the model from an fp8 e4m3fn "
                            "file or with quantization fp8_e4m3fn")
    return count
