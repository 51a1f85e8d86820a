"""fp8_e4m3fn_fast: a clear error off fp8-capable GPUs (here: the CPU) and on models without fp8
weights; the layer's arithmetic (torch._scaled_mm also runs on the CPU) equals the exact product of
the fp8-rounded input and weight computed here in float64, and stays within a few percent of the
unrounded-input product (PackedLinear's dequantized path)."""

import pytest
import torch

from dit_fixtures import make_inputs, random_weights
from wan.models.dit.config import DIT_PRESETS
from wan.errors import WanInputError
from wan.models.dit.model import WanDiT
from wan.models.dit.loading import load_dit
from wan.runtime.fp8_matmul import Fp8FastLinear, enable_fp8_fast
from wan.weights.fp8 import quantize_fp8
from wan.weights.packed import PackedLinear, PackedTensor

CFG = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=1)


def _fp8_linear(out_f=64, in_f=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g) / in_f**0.5
    scale = float(w.abs().max()) / 448.0
    q = (w / scale).to(torch.float8_e4m3fn)
    return PackedLinear(PackedTensor(q.view(torch.uint8), "fp8_e4m3fn", w.shape, scale),
                        0.1 * torch.randn(out_f, generator=g))


def test_cpu_is_refused_with_a_clear_error():
    model = load_dit(quantize_fp8(random_weights(CFG)), dtype=torch.float32)
    with pytest.raises(WanInputError, match="compute capability 8.9 or newer.*runs on cpu"):
        enable_fp8_fast(model)


def test_model_without_fp8_weights_is_refused():
    with pytest.raises(WanInputError, match="needs fp8 e4m3fn weights"):
        enable_fp8_fast(WanDiT(CFG), check_device=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scaled_matmul_arithmetic(dtype):
    layer = _fp8_linear()
    fast = Fp8FastLinear(layer)
    x = torch.randn(2, 24, 128, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = fast(x)
    assert out.dtype == dtype and out.shape == (2, 24, 64)
    # exact reference: e4m3-rounded input (per-tensor amax/448 scale) times fp8 weight, float64
    sx = torch.tensor(2.0) ** torch.ceil(torch.log2(x.float().abs().max() / 448.0))  # power-of-two scale
    xq = (x.float() / sx).to(torch.float8_e4m3fn).double() * sx.double()
    w = layer.packed.view(torch.float8_e4m3fn).double().view(64, 128) * layer.scale
    exact = xq @ w.T + layer.bias.double()
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert (out.double() - exact).abs().max() <= tol * exact.abs().max()
    plain = layer(x.float())
    rel = ((out.float() - plain).norm() / plain.norm()).item()
    assert rel < 0.05, rel  # measured ~0.02: the input's 3 mantissa bits


def test_whole_model_with_fast_layers():
    sd = quantize_fp8(random_weights(CFG))
    model = load_dit(sd, dtype=torch.float32)
    inp = make_inputs(CFG, frames=1, height=2, width=4)
    with torch.no_grad():
        ref = model(inp.x, inp.t, inp.context)
        n = enable_fp8_fast(model, check_device=False)
        out = model(inp.x, inp.t, inp.context)
    assert n == 10  # one block: q, k, v, o of self- and cross-attention, two FFN Linears
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < 0.05, rel



@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_input_rounded_once_into_full_range(dtype):
    from wan.runtime.fp8_matmul import quantize_input

    g = torch.Generator().manual_seed(2)
    for amp in (1e-3, 1.0, 300.0):
        x = (torch.randn(37, 128, generator=g) * amp).to(dtype)
        xq, scale = quantize_input(x)
        s = scale.item()
        assert s == 2.0 ** round(torch.log2(scale).item())  # a power of two
        amax = x.float().abs().max().item()
        assert amax / s <= 448
        if amax / 448 >= torch.finfo(dtype).smallest_normal:  # else the scale is held at that floor
            assert amax / s > 224  # the top binade of e4m3 is used
        once = (x.double() / s).float().to(torch.float8_e4m3fn)  # exact quotient, one rounding
        assert torch.equal(xq.view(torch.uint8), once.view(torch.uint8))


def test_sizes_the_kernel_refuses_upcast_like_packed_linear():
    # _scaled_mm needs both sizes divisible by 16: other layers use the dequantized product.
    layer = _fp8_linear(out_f=24, in_f=40)
    fast = Fp8FastLinear(layer)
    x = torch.randn(2, 24, 40, generator=torch.Generator().manual_seed(4))
    expected = x @ layer.weight.dequantize(torch.float32).T + layer.bias
    assert torch.equal(fast(x), layer(x))
    assert torch.allclose(fast(x), expected, rtol=0, atol=1e-5)
