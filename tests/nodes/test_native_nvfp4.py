"""The MODEL loader's seam on an nvfp4 comfy_quant file written by ComfyUI 0.8.0's own quantizer
(``comfy080_quant``): inside ComfyUI 0.3.75's own Wan model (CPU, in process), with the nvfp4
weights kept packed (uint8), it computes what ComfyUI's own loader computes from an fp32 file of
ComfyUI 0.8.0's dequantization of the same weights (tolerance: the fp32 one of
test_native_model_loader.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from comfy080_quant import quantize_with_comfy080
from comfy_installs import comfy_install
from dit_fixtures import random_weights, tiny_config
from refs import comfy, pack_module

TOLERANCE = 1e-5
CFG = tiny_config("t2v_1_3b")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    try:
        comfy_install("0.8.0")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    d = tmp_path_factory.mktemp("nvfp4")
    weights = random_weights(CFG)
    save_file(weights, str(d / "plain.safetensors"))
    plan = {k[: -len(".weight")]: "nvfp4" for k, w in weights.items()
            if k.startswith("blocks.") and k.endswith(".weight") and w.ndim == 2}
    quantize_with_comfy080(d / "plain.safetensors", [(d / "dit_nvfp4.safetensors", d / "ref.safetensors", plan)])
    return d / "dit_nvfp4.safetensors", d / "ref.safetensors"


def _forward(patcher):
    comfy("comfy.model_management").load_models_gpu([patcher], force_full_load=True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, CFG.in_dim, 2, 4, 4, generator=g)
    context = torch.randn(1, 7, CFG.text_dim, generator=g)
    with torch.no_grad():
        return patcher.model.diffusion_model(x, torch.tensor([700.0]), context).float()


def test_nvfp4_in_comfyui_model_equals_comfyui_loader_on_its_dequantization(files):
    path, ref_path = files
    ours = pack_module("nodes._comfy_packed").load_diffusion_model(path, dtype=torch.float32)
    ref = comfy("comfy.sd").load_diffusion_model(str(ref_path), model_options={"dtype": torch.float32})
    packed = {n: m for n, m in ours.model.diffusion_model.named_modules() if getattr(m, "packed", None)}
    assert len(packed) == 10 * CFG.num_layers
    assert all(m.packed[0] == "nvfp4" and m.weight.dtype == torch.uint8 for m in packed.values())
    got, expected = _forward(ours), _forward(ref)
    err = (got - expected).abs().max().item() / expected.abs().max().item()
    assert err < TOLERANCE, err
