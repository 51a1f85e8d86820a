"""The MODEL loader's seam, in-process on ComfyUI 0.3.75 (CPU): our packed weights inside ComfyUI's
own Wan model.

A GGUF Q8_0 DiT loaded through ``_comfy_packed.load_diffusion_model`` must compute what ComfyUI's
own loader (``comfy.sd.load_diffusion_model``, UNETLoader's function) computes from an fp32
safetensors file holding exactly the weights gguf-py dequantizes from the same GGUF; a LoRA applied by
ComfyUI's own ``load_lora_for_models`` (LoraLoader's function) must give the same result on both,
while every packed Linear weight stays packed (uint8) through ComfyUI's load and patch.
"""

from __future__ import annotations

import gguf
import pytest
import torch
from refs import comfy, pack_module
from safetensors.torch import load_file, save_file
from tiny_models import dit_config, write_dit, write_lora

TOLERANCE = 1e-5  # relative to max|reference|: the same fp32 math on the same weight values


def _dequantized_by_gguf_py(path) -> dict:
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        shape = tuple(int(v) for v in reversed(t.shape))
        out[t.name] = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float().reshape(shape)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("native")
    packed = write_dit(d / "t2v_Q8_0.gguf", "t2v_1_3b", "gguf", seed=4)
    dense = d / "t2v_dequantized_f32.safetensors"
    save_file(_dequantized_by_gguf_py(packed), str(dense))
    lora = write_lora(d / "lora.safetensors", variant="t2v_1_3b", seed=12)
    return {"gguf": packed, "dense": dense, "lora": lora}


@pytest.fixture(scope="module")
def seam():
    return pack_module("nodes._comfy_packed")


def _inputs(cfg):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, cfg.in_dim, 2, 4, 4, generator=g)
    context = torch.randn(1, 7, cfg.text_dim, generator=g)
    return x, torch.tensor([700.0]), context


def _forward(patcher, inputs):
    mm = comfy("comfy.model_management")
    mm.load_models_gpu([patcher], force_full_load=True)
    with torch.no_grad():
        return patcher.model.diffusion_model(*inputs).float()


def _close(a, b):
    err = (a - b).abs().max().item() / b.abs().max().item()
    assert err < TOLERANCE, err


def _packed_weights(model) -> dict:
    return {n: m.weight for n, m in model.diffusion_model.named_modules() if getattr(m, "packed", None)}


def test_gguf_in_comfyui_model_equals_comfyui_loader_on_dequantized_weights(files, seam):
    sd = comfy("comfy.sd")
    cfg = dit_config("t2v_1_3b")
    ours = seam.load_diffusion_model(files["gguf"], dtype=torch.float32)
    ref = sd.load_diffusion_model(str(files["dense"]), model_options={"dtype": torch.float32})
    assert type(ours.model.diffusion_model) is type(ref.model.diffusion_model)  # ComfyUI's WanModel
    packed = _packed_weights(ours.model)
    assert packed and all(w.dtype == torch.uint8 for w in packed.values())
    # every block Linear is packed: the GGUF writer quantized them all to Q8_0
    assert len(packed) == sum(1 for k, v in load_file(str(files["dense"])).items()
                              if k.startswith("blocks.") and v.ndim == 2)
    # ComfyUI sizes the model from what it holds: the packed bytes, not a dequantized copy
    assert ours.model_size() < ref.model_size()
    inputs = _inputs(cfg)
    _close(_forward(ours, inputs), _forward(ref, inputs))


def test_comfyui_lora_patches_packed_weights_without_unpacking(files, seam):
    sd = comfy("comfy.sd")
    utils = comfy("comfy.utils")
    cfg = dit_config("t2v_1_3b")
    lora = utils.load_torch_file(str(files["lora"]), safe_load=True)
    base = seam.load_diffusion_model(files["gguf"], dtype=torch.float32)
    ref_base = sd.load_diffusion_model(str(files["dense"]), model_options={"dtype": torch.float32})
    ours, _ = sd.load_lora_for_models(base, None, lora, 0.8, 0)
    ref, _ = sd.load_lora_for_models(ref_base, None, lora, 0.8, 0)
    assert type(ours) is type(base) and len(ours.patches) == len(ref.patches) > 0
    inputs = _inputs(cfg)
    plain = _forward(ref_base, inputs)
    with_lora = _forward(ref, inputs)
    assert (with_lora - plain).abs().max() > 1e-3 * plain.abs().max()  # the LoRA changes the output
    _close(_forward(ours, inputs), with_lora)
    assert all(w.dtype == torch.uint8 for w in _packed_weights(ours.model).values())
    # back to the base patcher (same ComfyUI model): the LoRA must be gone
    _close(_forward(base, inputs), plain)
    _close(_forward(ours, inputs), with_lora)
