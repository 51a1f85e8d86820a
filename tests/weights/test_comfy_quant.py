"""ComfyUI comfy_quant checkpoints (its layout: ``<layer>.comfy_quant`` uint8 JSON markers, or the
``_quantization_metadata`` header entry, beside ``<layer>.weight`` and ``<layer>.weight_scale``, as
ComfyUI 0.8's MixedPrecisionOps.state_dict writes and its _load_from_state_dict reads them) load into
our DiT; its forward equals a plain model built from the same file dequantized independently here
(data x scale in float32, ComfyUI's definition), fp32 tolerance RTOL/ATOL of dit_fixtures. identify
names the format; formats this pack does not read are refused naming layer and format.

int8_tensorwise and the header form are not what ComfyUI 0.8.0 writes, so these files are built by
the documented layout; test_comfy_quant_080.py loads fp8 and nvfp4 files written by ComfyUI's own
code."""

import json

import pytest
import torch
from safetensors.torch import save_file

from dit_fixtures import ATOL, RTOL, make_inputs, random_weights, tiny_config
from wan.errors import WanFileError
from wan.job.load import load_dit
from wan.job.options import LoadOptions
from wan.models.dit.model import WanDiT
from wan.models.identify import identify_file
from wan.weights.packed import PackedLinear

CFG = tiny_config("t2v_1_3b")
FMTS = {"float8_e4m3fn": (torch.float8_e4m3fn, 448.0), "float8_e5m2": (torch.float8_e5m2, 57344.0),
        "int8_tensorwise": (torch.int8, 127.0)}


def _marker(conf: dict) -> torch.Tensor:
    return torch.tensor(list(json.dumps(conf).encode("utf-8")), dtype=torch.uint8)


def _quantize(w: torch.Tensor, fmt: str, per_row: bool = False):
    dtype, top = FMTS[fmt]
    amax = w.abs().amax(dim=1, keepdim=True) if per_row else w.abs().amax()
    scale = (amax / top).float()
    q = (w / scale).round().clamp(-127, 127) if dtype == torch.int8 else (w / scale)
    q = q.to(dtype)
    return q, (scale.reshape(-1) if per_row else scale.reshape(()))


def _write(tmp_path, fmts, header=False, prefix="model.diffusion_model."):
    """A comfy_quant file of the tiny DiT: block Linears cycle through ``fmts``; returns (path,
    the same weights dequantized as ComfyUI defines it)."""
    sd, plain, layers = {}, {}, {}
    for i, (k, w) in enumerate(random_weights(CFG).items()):
        if k.startswith("blocks.") and k.endswith(".weight") and w.ndim == 2:
            fmt, per_row = fmts[i % len(fmts)]
            q, scale = _quantize(w, fmt, per_row)
            layer = prefix + k[: -len(".weight")]
            sd[f"{layer}.weight"], sd[f"{layer}.weight_scale"] = q, scale
            conf = {"format": fmt}
            if header:
                layers[layer] = conf
            else:
                sd[f"{layer}.comfy_quant"] = _marker(conf)
            if fmt.startswith("float8"):
                sd[f"{layer}.input_scale"] = torch.tensor(1.0)  # fp8 matmul only: ignored
            plain[k] = q.float() * (scale.reshape(-1, 1) if per_row else scale)
        else:
            sd[prefix + k], plain[k] = w, w
    path = tmp_path / "dit_comfy_quant.safetensors"
    save_file(sd, str(path), metadata={"_quantization_metadata": json.dumps({"layers": layers})} if header else None)
    return path, plain


def _forward(model, inp):
    with torch.no_grad():
        return model(inp.x, inp.t, inp.context)


@pytest.mark.parametrize("fmts, header", [
    ((("float8_e4m3fn", False),), False),
    ((("float8_e5m2", False), ("int8_tensorwise", False), ("int8_tensorwise", True)), False),
    ((("float8_e4m3fn", False), ("int8_tensorwise", False)), True),
])
def test_loads_and_equals_comfyuis_dequantization(tmp_path, fmts, header):
    path, plain = _write(tmp_path, fmts, header)
    who = identify_file(path)
    assert who.role == "dit" and who.detail.endswith("in ComfyUI's comfy_quant format")
    ours = load_dit(path, LoadOptions(dtype=torch.float32, device="cpu", attention="sdpa"))
    packed = [m.qtype for m in ours.modules() if isinstance(m, PackedLinear)]
    assert packed  # fp8 and per-tensor int8 stay packed, expanded per layer
    ref = WanDiT(CFG)
    ref.load_state_dict(plain)
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    expected = _forward(ref.eval(), inp)
    got = _forward(ours, inp)
    err = (got - expected).abs().max().item()
    assert err <= RTOL * expected.abs().max().item() + ATOL, err


@pytest.mark.parametrize("conf, words", [
    ({"format": "mxfp8"}, "comfy_quant format 'mxfp8' is not one this pack reads"),
    ({"format": "int8_tensorwise", "convrot": True}, "int8_tensorwise with convrot"),
])
def test_unread_formats_are_refused(tmp_path, conf, words):
    path, _ = _write(tmp_path, (("float8_e4m3fn", False),))
    from safetensors.torch import load_file

    sd = load_file(str(path))
    layer = "model.diffusion_model.blocks.0.ffn.0"
    sd[f"{layer}.comfy_quant"] = _marker(conf)
    save_file(sd, str(path))
    with pytest.raises(WanFileError, match=words) as e:
        load_dit(path, LoadOptions(dtype=torch.float32, device="cpu"))
    assert path.name in str(e.value) and "blocks.0.ffn.0" in str(e.value)
