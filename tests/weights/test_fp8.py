"""fp8 safetensors (plain and ComfyUI "scaled fp8") against ComfyUI's own scaled-fp8 Linear."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from refs import comfy
from wan.weights.fp8 import pack_fp8_state_dict, quantize_fp8
from wan.weights.loader import load_state_dict
from wan.weights.packed import PackedLinear, PackedTensor, attach_packed


def comfy_scaled_linear(weight_fp8, bias, scale):
    ops = comfy("comfy.ops")
    lin = ops.scaled_fp8_ops().Linear(weight_fp8.shape[1], weight_fp8.shape[0], bias=True,
                                      dtype=torch.float8_e4m3fn)
    lin.load_state_dict({"weight": weight_fp8, "bias": bias.to(torch.float8_e4m3fn),
                         "scale_weight": torch.tensor(scale)})
    lin.bias = nn.Parameter(bias, requires_grad=False)  # ComfyUI keeps biases in the compute dtype
    return lin


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 64))])
        self.norm = nn.LayerNorm(64)


def test_scaled_fp8_file_matches_comfyui(tmp_path):
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(96, 64, generator=g) * 3).to(torch.float8_e4m3fn)
    b = torch.randn(96, generator=g)
    w2 = torch.randn(64, 96, generator=g).to(torch.float8_e4m3fn)
    b2 = torch.randn(64, generator=g)
    sd = {"blocks.0.0.weight": w, "blocks.0.0.bias": b, "blocks.0.0.scale_weight": torch.tensor(0.02),
          "blocks.0.0.scale_input": torch.tensor(1.0),
          "blocks.0.2.weight": w2, "blocks.0.2.bias": b2, "blocks.0.2.scale_weight": torch.tensor(0.5),
          "norm.weight": torch.ones(64), "norm.bias": torch.zeros(64),
          "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    path = tmp_path / "m_fp8_scaled.safetensors"
    save_file(sd, str(path))
    state = load_state_dict(path)
    assert "scaled_fp8" not in state and not any("scale_" in k for k in state)
    assert state["blocks.0.0.weight"].qtype == "fp8_e4m3fn" and state["blocks.0.0.weight"].scale == pytest.approx(0.02)
    model = Two()
    consumed = attach_packed(model, state)
    assert consumed == {"blocks.0.0.weight", "blocks.0.0.bias", "blocks.0.2.weight", "blocks.0.2.bias"}
    model.load_state_dict(state, strict=True)
    assert isinstance(model.blocks[0][0], PackedLinear)
    x = torch.randn(5, 64, generator=g)
    ref1 = comfy_scaled_linear(w, b, 0.02)
    ref2 = comfy_scaled_linear(w2, b2, 0.5)
    expected = ref2(nn.functional.gelu(ref1(x)))
    got = model.blocks[0](x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # in bf16 the weight is upcast to the input's dtype
    assert model.blocks[0](x.bfloat16()).dtype == torch.bfloat16


def test_plain_fp8_weights_upcast_exactly(tmp_path):
    w = torch.randn(32, 64).to(torch.float8_e4m3fn)
    packed = pack_fp8_state_dict({"blocks.0.ffn.0.weight": w})["blocks.0.ffn.0.weight"]
    assert packed.scale is None and packed.nbytes == w.numel()
    assert torch.equal(packed.dequantize(torch.float32), w.float())


def test_quantize_on_load():
    g = torch.Generator().manual_seed(1)
    sd = {"blocks.0.ffn.0.weight": torch.randn(128, 64, generator=g),
          "blocks.0.ffn.0.bias": torch.randn(128, generator=g),
          "blocks.0.modulation": torch.randn(1, 6, 64, generator=g),
          "head.head.weight": torch.randn(64, 64, generator=g)}
    out = quantize_fp8(sd)
    q = out["blocks.0.ffn.0.weight"]
    assert q.is_packed and q.qtype == "fp8_e4m3fn" and q.nbytes == 128 * 64
    for k in ("blocks.0.ffn.0.bias", "blocks.0.modulation", "head.head.weight"):
        assert out[k] is sd[k]
    w = sd["blocks.0.ffn.0.weight"]
    # e4m3 has 3 mantissa bits: relative rounding error at most 2^-4 per element (normal range)
    rel = (q.dequantize() - w).norm() / w.norm()
    assert rel < 0.04, rel


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_scaled_weight_has_the_bits_of_comfyui_convert_weight(dtype):
    """The packed expansion in the compute dtype equals ComfyUI's float32 convert_weight, rounded once."""
    g = torch.Generator().manual_seed(3)
    w8 = (torch.randn(64, 96, generator=g) * 40).to(torch.float8_e4m3fn)
    scale = torch.tensor(0.0173)
    ref_layer = comfy_scaled_linear(w8, torch.zeros(64), float(scale))
    expected = ref_layer.convert_weight(ref_layer.weight).to(dtype)
    packed = PackedLinear(PackedTensor(w8.view(torch.uint8), "fp8_e4m3fn", w8.shape, scale=scale))
    assert torch.equal(packed.dequantized_weight(dtype), expected)
