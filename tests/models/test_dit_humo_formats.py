"""The tiny HuMo DiTs in the formats a user downloads (GGUF Q8_0 by our quantizer, fp8 block weights,
fp16 safetensors as the tiny writer makes them) loaded by ``wan.job.load`` and run with audio and a
reference latent, and a LoRA on its blocks' audio cross-attention applied for a run.

References: the file's own tensors read independently (gguf-py, safetensors) and held by a plain
fp32 model: the packed model agrees within the DiT parity tolerance; against the fp32 source the
GGUF Q8_0 output stays within test_gguf_dit's bound (1% relative L2). ComfyUI's model detection names
the file "humo". LoRA: ComfyUI's LoraLoader patched weights (lora_fixtures.comfy_patched) are the
merged reference.
"""

import pytest
import torch
from safetensors.torch import load_file, save_file

from dit_fixtures import check
from lora_fixtures import comfy_patched, random_pairs, write_pairs
from refs import comfy
from native_fixtures import dequantized_state
from wan.install.tiny import dit_config, dit_state, write_dit
from wan.job.load import load_dit
from wan.job.options import LoadOptions
from wan.models.dit.model import WanDiT
from wan.models.identify import identify_file
from wan.weights.lora import apply_loras
from wan.weights.lora.parse import load_lora
from wan.weights.packed import PackedLinear

gguf = pytest.importorskip("gguf")
torch.set_num_threads(2)

FP32 = LoadOptions(dtype=torch.float32, device="cpu")


def inputs(cfg, seed=2):
    g = torch.Generator().manual_seed(seed)
    out = dict(x=torch.randn(1, 16, 2, 4, 4, generator=g), t=torch.tensor([700.0]),
               context=torch.randn(1, 6, 4096, generator=g),
               audio_embed=torch.randn(1, 2, 8, 5, 1280, generator=g),
               reference_latent=torch.randn(1, 16, 1, 4, 4, generator=g))
    if cfg.cond_channels:
        out["y"] = torch.randn(1, cfg.cond_channels, 2, 4, 4, generator=g)
    return out


def run(model, inp):
    with torch.no_grad():
        return model(**inp)


def plain(cfg, sd):
    model = WanDiT(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("variant", ["humo_1_7b", "humo_17b"])
def test_tiny_file_is_named_and_loads_in_comfyui(tmp_path, variant):
    path = write_dit(tmp_path / "humo.safetensors", variant, "fp16")
    who = identify_file(path)
    assert who.role == "dit" and "humo" in who.detail
    sd = load_file(str(path))
    detect = comfy("comfy.model_detection").detect_unet_config(sd, "")
    assert detect["model_type"] == "humo" and detect["in_dim"] == dit_config(variant).in_dim


def test_gguf_q8_0(tmp_path):
    variant = "humo_17b"
    cfg = dit_config(variant)
    path = write_dit(tmp_path / "humo_Q8_0.gguf", variant, "gguf", qtype="Q8_0")
    packed = load_dit(path, FP32)
    assert isinstance(packed.blocks[0].audio_cross_attn_wrapper.audio_cross_attn.k, PackedLinear)
    ref = dequantized_state(path)
    inp = inputs(cfg)
    out = run(packed, inp)
    check(out, run(plain(cfg, ref), inp))
    err = rel_l2(out, run(plain(cfg, dit_state(variant)), inp))
    print(f"HuMo GGUF Q8_0 vs fp32 source: rel L2 {err:.2e}")
    assert err < 0.01


def test_fp8(tmp_path):
    cfg = dit_config("humo_1_7b")
    path = write_dit(tmp_path / "humo_fp8_e4m3fn.safetensors", "humo_1_7b", "fp8")
    packed = load_dit(path, FP32)
    assert isinstance(packed.blocks[0].ffn[0], PackedLinear)
    inp = inputs(cfg)
    ref = {k: v.float() for k, v in load_file(str(path)).items()}
    check(run(packed, inp), run(plain(cfg, ref), inp))


def test_lora_on_blocks_and_audio_attention(tmp_path):
    cfg = dit_config("humo_1_7b")
    base = dit_state("humo_1_7b")
    modules = ["blocks.0.self_attn.q", "blocks.1.ffn.0", "blocks.0.audio_cross_attn_wrapper.audio_cross_attn.k",
               "blocks.1.audio_cross_attn_wrapper.audio_cross_attn.o"]
    lora_sd = write_pairs(random_pairs(base, modules, seed=9), lambda m: f"diffusion_model.{m}",
                          "lora_up.weight", "lora_down.weight")
    path = tmp_path / "humo_lora.safetensors"
    save_file(lora_sd, str(path))
    merged = comfy_patched(base, lora_sd, 0.7)
    model = plain(cfg, base)
    inp = inputs(cfg)
    before = run(model, inp)
    with apply_loras(model, load_lora(path, 0.7)):
        for m in modules:
            check(model.get_submodule(m).weight, merged[m + ".weight"])
        out = run(model, inp)
    check(out, run(plain(cfg, {k: merged[k] for k in base}), inp))
    assert (out - before).abs().max() > 1e-4
    check(run(model, inp), before, rtol=0, atol=0)  # restored after the run
