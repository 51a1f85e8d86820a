"""fp8 matmul through comfy-kitchen: with a fake ``comfy_kitchen`` (its fp8 quantization and
``scaled_mm_v2`` recording their calls and computing with torch), an fp8 layer passes it the 2-D
input, the per-tensor power-of-two input scale (checked against amax / 448 here) and e4m3fn, then
the quantized input, the transposed fp8 weight, both scales, the bias and the output dtype; the
result equals our own kernel's. The choice is made once per device and said in one log line:
comfy-kitchen when importable with a compiled fp8 quantization, else ours, with the reason."""

import logging
import sys
import types

import pytest
import torch

from wan.errors import WanInputError
from wan.runtime import fp8_matmul
from wan.runtime.fp8_matmul import Fp8FastLinear, choose_fp8_kernel
from wan.weights.packed import PackedLinear, PackedTensor


def _fp8_layer(out_f=64, in_f=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g) / in_f**0.5
    scale = float(w.abs().max()) / 448.0
    q = (w / scale).to(torch.float8_e4m3fn)
    return PackedLinear(PackedTensor(q.view(torch.uint8), "fp8_e4m3fn", w.shape, scale),
                        0.1 * torch.randn(out_f, generator=g))


def _fake_kitchen(monkeypatch, backends=None):
    calls = []
    ck = types.ModuleType("comfy_kitchen")
    mm_mod = types.ModuleType("comfy_kitchen.scaled_mm_v2")

    def quantize_per_tensor_fp8(x, scale, output_type=torch.float8_e4m3fn):
        calls.append(("quantize", x, scale, output_type))
        return (x * (1.0 / scale).to(x.dtype)).clamp(-448, 448).to(output_type)

    def scaled_mm_v2(input, weight, scale_a, scale_b, bias=None, out_dtype=None, **kw):
        calls.append(("mm", input, weight, scale_a, scale_b, bias, out_dtype, kw))
        return torch._scaled_mm(input, weight, scale_a=scale_a, scale_b=scale_b, bias=bias, out_dtype=out_dtype)

    ck.quantize_per_tensor_fp8 = quantize_per_tensor_fp8
    ck.list_backends = lambda: backends if backends is not None else {
        "eager": {"available": True, "disabled": False, "capabilities": ["quantize_per_tensor_fp8"]},
        "cuda": {"available": True, "disabled": False, "capabilities": ["quantize_per_tensor_fp8"]}}
    mm_mod.scaled_mm_v2 = scaled_mm_v2
    ck.scaled_mm_v2 = mm_mod
    monkeypatch.setitem(sys.modules, "comfy_kitchen", ck)
    monkeypatch.setitem(sys.modules, "comfy_kitchen.scaled_mm_v2", mm_mod)
    monkeypatch.setattr(fp8_matmul, "_CHOSEN", {})
    return calls


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_kitchen_gets_the_operands_and_equals_ours(monkeypatch, dtype):
    calls = _fake_kitchen(monkeypatch)
    layer = _fp8_layer()
    kitchen = Fp8FastLinear(layer, choose_fp8_kernel("cpu", "comfy_kitchen"))
    ours = Fp8FastLinear(layer)
    x = torch.randn(2, 24, 128, generator=torch.Generator().manual_seed(1)).to(dtype)
    got = kitchen(x)
    assert torch.equal(got, ours(x)) and got.dtype == dtype and got.shape == (2, 24, 64)
    (_, qx, qscale, qtype), (_, a, b, sa, sb, bias, out_dtype, _) = calls
    assert qx.shape == (48, 128) and torch.equal(qx, x.reshape(48, 128)) and qtype == torch.float8_e4m3fn
    amax = x.float().abs().max() / 448.0
    assert qscale.dtype == torch.float32 and qscale >= amax and qscale / 2 < amax
    assert float(torch.log2(qscale)).is_integer()  # a power of two
    assert a.dtype == torch.float8_e4m3fn and a.shape == (48, 128) and sa is qscale
    w = layer.packed.view(torch.float8_e4m3fn).view(64, 128)
    assert b.shape == (128, 64) and torch.equal(b.view(torch.uint8), w.t().view(torch.uint8))
    assert sb.dtype == torch.float32 and float(sb) == float(torch.tensor(layer.scale, dtype=torch.float32))
    assert out_dtype == dtype
    if dtype == torch.bfloat16:  # fused where the kernel takes a half-precision bias
        assert torch.equal(bias, layer.bias.to(dtype))
    else:
        assert bias is None


def test_auto_chooses_kitchen_once_and_says_so(monkeypatch, caplog):
    calls = _fake_kitchen(monkeypatch)
    with caplog.at_level(logging.INFO, logger="wan.runtime.fp8_matmul"):
        first = choose_fp8_kernel("cuda:0")
        assert choose_fp8_kernel("cuda:0") is first and first.name == "comfy_kitchen"
    lines = [r.getMessage() for r in caplog.records if "fp8 matmul" in r.getMessage()]
    assert lines == ["Wan: fp8 matmul uses comfy-kitchen's fp8 quantization and scaled_mm_v2 on cuda:0"]
    assert calls == []


@pytest.mark.parametrize("setup, why", [
    ("missing", "comfy-kitchen with scaled_mm_v2 is not importable"),
    ("eager_only", "no compiled fp8 quantization"),
])
def test_auto_falls_back_to_ours_with_one_line(monkeypatch, caplog, setup, why):
    if setup == "missing":
        monkeypatch.setitem(sys.modules, "comfy_kitchen", None)  # import fails
        monkeypatch.setattr(fp8_matmul, "_CHOSEN", {})
    else:
        _fake_kitchen(monkeypatch, {"eager": {"available": True, "disabled": False,
                                              "capabilities": ["quantize_per_tensor_fp8"]},
                                    "cuda": {"available": False, "disabled": False, "capabilities": []}})
    with caplog.at_level(logging.INFO, logger="wan.runtime.fp8_matmul"):
        assert choose_fp8_kernel("cuda:0").name == "torch"
        assert choose_fp8_kernel("cuda:0").name == "torch"
    lines = [r.getMessage() for r in caplog.records if "fp8 matmul" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("Wan: fp8 matmul uses torch._scaled_mm") and why in lines[0]
    with pytest.raises(WanInputError, match="fp8 kernel comfy_kitchen cannot run"):
        choose_fp8_kernel("cuda:0", "comfy_kitchen")
