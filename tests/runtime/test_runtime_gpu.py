"""The runtime options on a real GPU (skipped without CUDA; CPU tests cover the same code with a
simulated device): block swap through pinned memory and a side stream gives the unswapped output bit
for bit, fp8 matrix products stay near the upcast result, and an installed SageAttention stays near
SDPA. Tolerances are stated per test."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dit_fixtures import make_inputs, random_weights
from wan.job.load import build_dit
from wan.job.options import LoadOptions
from wan.models.dit.config import DIT_PRESETS
from wan.runtime.blockswap import BlockSwapArgs
from wan.runtime.fp8_matmul import fp8_fast_supported
from wan.weights.fp8 import quantize_fp8

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
CFG = DIT_PRESETS["t2v_14b"].tiny(num_layers=4)


def _step(sd, inp, **options):
    model = build_dit(dict(sd), LoadOptions(dtype=torch.bfloat16, device="cuda", **options))
    with torch.inference_mode():
        out = [model(inp.x.cuda().bfloat16(), t.cuda(), inp.context.cuda().bfloat16()).float().cpu()
               for t in (torch.tensor([900.0]), torch.tensor([300.0]))]  # two steps: blocks go and come back
    return torch.stack(out)


@pytest.mark.parametrize("fmt", ["bf16", "fp8"])
@pytest.mark.parametrize("prefetch", [True, False])
def test_block_swap_is_bit_identical_on_cuda(fmt, prefetch):
    sd = random_weights(CFG)
    if fmt == "fp8":
        sd = quantize_fp8(sd)
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    plain = _step(sd, inp)
    swapped = _step(sd, inp, block_swap=BlockSwapArgs(3, prefetch=prefetch, offload_embeddings=True))
    assert torch.equal(plain, swapped)


def test_fp8_matmul_near_upcast_on_cuda():
    if not fp8_fast_supported("cuda")[0]:
        pytest.skip(fp8_fast_supported("cuda")[1])
    sd = quantize_fp8(random_weights(CFG))
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    upcast = _step(sd, inp)
    fast = _step(sd, inp, quantization="fp8_e4m3fn_fast")
    swapped = _step(sd, inp, quantization="fp8_e4m3fn_fast", block_swap=BlockSwapArgs(3))
    rel = ((fast - upcast).norm() / upcast.norm()).item()
    assert rel < 0.05, rel  # the inputs' 3 mantissa bits; CPU measures about 0.02
    assert torch.equal(fast, swapped)


def test_sageattention_near_sdpa():
    if importlib.util.find_spec("sageattention") is None:
        pytest.skip("sageattention is not installed")
    from wan.models.dit.attention import attention
    from wan.models.dit.attention_select import attention_kernel

    # The kernel alone on random [B, L, H, D] inputs: SageAttention 1.0.6 measured 1.3% on an H100.
    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(1, n, 12, 128, device="cuda", dtype=torch.bfloat16, generator=g) for n in (1024, 512, 512))
    ref = attention(q, k, v).float()
    out = attention(q, k, v, attention_kernel("sageattention")).float()
    assert ((out - ref).norm() / ref.norm()).item() < 0.03
    # A whole model at 512 video tokens (sage 1.0.6 is far off on sequences of a few tokens).
    sd = random_weights(CFG)
    inp = make_inputs(CFG, frames=2, height=32, width=32)
    sdpa = _step(sd, inp)
    sage = _step(sd, inp, attention="sageattention")
    rel = ((sage - sdpa).norm() / sdpa.norm()).item()
    assert rel < 0.05, rel  # int8 q/k inside the kernel


def test_int8_attention_near_sdpa():
    if importlib.util.find_spec("comfy_kitchen") is None:
        pytest.skip("comfy-kitchen is not installed")
    from wan.models.dit.attention import attention
    from wan.models.dit.attention_select import attention_kernel

    # one call on random [B, L, H, D] inputs; the bound is a guess until measured on a GPU
    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(1, n, 12, 128, device="cuda", dtype=torch.bfloat16, generator=g) for n in (1024, 512, 512))
    ref = attention(q, k, v).float()
    out = attention(q, k, v, attention_kernel("int8", "cuda")).float()
    rel = ((out - ref).norm() / ref.norm()).item()
    print(f"int8 attention: relative error {rel:.4f} against SDPA")
    assert rel < 0.05, rel
