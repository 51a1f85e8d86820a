"""comfy_quant files written by ComfyUI 0.8.0's own code (its mixed-precision Linear quantizes with
comfy-kitchen 0.2.7 and saves: nvfp4, float8_e4m3fn, float8_e5m2; ``comfy080_quant``) load into our
DiT, packed, and its forward equals a plain DiT holding ComfyUI's own dequantization of the same
file (read back through its Linear's loader, float32 compute dtype). Tolerance: dit_fixtures' fp32
RTOL/ATOL on the forward; the weights themselves must be bit-equal (our float32 expansion of nvfp4
is computed as comfy-kitchen's is).

Also, at the level of one tensor, odd shapes that ComfyUI pads (rows to 16, block scales to 128 x 4
tiles) read back to comfy-kitchen's own dequantization (its eager quantize_nvfp4 / dequantize_nvfp4).
int8_tensorwise is not in 0.8.0 (test_comfy_quant.py builds it from the documented layout)."""

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfy080_quant import quantize_with_comfy080
from comfy_installs import comfy_install
from dit_fixtures import ATOL, RTOL, make_inputs, random_weights, tiny_config
from wan.job.load import dit_header, load_dit
from wan.job.options import LoadOptions
from wan.models.dit.model import WanDiT
from wan.models.identify import identify_file
from wan.weights.comfy_quant import unpack_comfy_quant
from wan.weights.packed import PackedLinear

CFG = tiny_config("t2v_1_3b")
FORMATS = ("nvfp4", "float8_e4m3fn", "float8_e5m2")


@pytest.fixture(scope="module")
def comfy_files(tmp_path_factory):
    """One file per format, every block Linear quantized by ComfyUI; {fmt: (file, reference)}."""
    try:
        comfy_install("0.8.0")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    tmp = tmp_path_factory.mktemp("comfy080")
    weights = random_weights(CFG)
    src = tmp / "plain.safetensors"
    save_file(weights, str(src))
    layers = [k[: -len(".weight")] for k, w in weights.items()
              if k.startswith("blocks.") and k.endswith(".weight") and w.ndim == 2]
    files = {fmt: (tmp / f"dit_{fmt}.safetensors", tmp / f"ref_{fmt}.safetensors") for fmt in FORMATS}
    quantize_with_comfy080(src, [(dst, ref, {layer: fmt for layer in layers}) for fmt, (dst, ref) in files.items()])
    return files


@pytest.mark.parametrize("fmt", FORMATS)
def test_comfyuis_file_loads_packed_and_equals_its_dequantization(comfy_files, fmt):
    path, ref_path = comfy_files[fmt]
    assert identify_file(path).detail.endswith("in ComfyUI's comfy_quant format")
    # the header check (the loader node's, before any weight is read) sees each layer's own shape,
    # so a LoRA is matched against the model it patches
    cfg, shapes = dit_header(path)
    assert cfg.dim == CFG.dim and cfg.ffn_dim == CFG.ffn_dim
    assert {k: tuple(v.shape) for k, v in random_weights(CFG).items()}.items() <= shapes.items()
    ours = load_dit(path, LoadOptions(dtype=torch.float32, device="cpu", attention="sdpa"))
    packed = {n: m for n, m in ours.named_modules() if isinstance(m, PackedLinear)}
    assert len(packed) == 10 * CFG.num_layers
    reference = load_file(str(ref_path))
    for name, module in packed.items():  # the expansion itself is ComfyUI's, bit for bit
        assert torch.equal(module.dequantized_weight(torch.float32), reference[f"{name}.weight"]), name
    ref = WanDiT(CFG)
    ref.load_state_dict(reference)
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    with torch.no_grad():
        expected = ref.eval()(inp.x, inp.t, inp.context)
        got = ours(inp.x, inp.t, inp.context)
    err = (got - expected).abs().max().item()
    assert err <= RTOL * expected.abs().max().item() + ATOL, err


_ODD = textwrap.dedent("""
    import sys, torch
    from safetensors.torch import save_file
    from comfy_kitchen.tensor import QuantizedTensor
    g = torch.Generator().manual_seed(3)
    out = {}
    for rows, cols in ((40, 24), (136, 48), (16, 16)):
        w = torch.randn(rows, cols, generator=g) * 0.05
        q = QuantizedTensor.from_float(w, "TensorCoreNVFP4Layout")
        for name, t in q.state_dict(f"l{rows}x{cols}.weight").items():
            out[name] = t
        # comfy-kitchen's dequantization of the padded storage, before ComfyUI crops it
        out[f"l{rows}x{cols}.expected"] = q.layout_cls.dequantize(q._qdata, q._params).float()
    save_file(out, sys.argv[1])
""")


def test_padded_shapes_read_back_as_comfy_kitchen_dequantizes(tmp_path):
    try:
        install = comfy_install("0.8.0")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    path = tmp_path / "odd.safetensors"
    subprocess.run([sys.executable, "-c", _ODD, str(path)], check=True, timeout=300,
                   env={"PYTHONPATH": str(install.site), "PATH": "/usr/bin:/bin"})
    sd = load_file(str(path))
    for layer in ("l40x24", "l136x48", "l16x16"):
        expected = sd.pop(f"{layer}.expected")
        sd[f"{layer}.comfy_quant"] = torch.tensor(list(b'{"format": "nvfp4"}'), dtype=torch.uint8)
        ours = unpack_comfy_quant({k: v for k, v in sd.items() if k.startswith(layer)}, None)
        weight = ours[f"{layer}.weight"]
        assert weight.qtype == "nvfp4" and tuple(weight.shape) == tuple(expected.shape)
        assert torch.equal(weight.dequantize(torch.float32), expected), layer
