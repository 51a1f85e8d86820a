"""Phantom and ATI on the formats a user downloads: a tiny T2V 14B GGUF Q8_0 (Phantom-Wan is
published as GGUF of a T2V 14B) through Phantom's subject frames and dual CFG, a tiny I2V 14B GGUF
Q8_0 through the ATI conditioning (the track-patched ``y``), and a LoRA applied for a run on each.

References: the GGUF file's own tensors read by gguf-py and held by a plain fp32 model (the packed
model agrees within the DiT parity tolerance); against the fp32 source the Q8_0 result stays within
test_gguf_dit's bound (1% relative L2). LoRA: ComfyUI's LoraLoader patched weights
(tests/support/lora_fixtures.comfy_patched) are the merged reference; a run through
``sample_video`` with the LoRA equals the run on the merged model.
"""

import json

import pytest
import torch
from safetensors.torch import save_file

from dit_fixtures import check
from lora_fixtures import comfy_patched, random_pairs, write_pairs
from vae_fixtures import TINY21, random_weights
from native_fixtures import dequantized_state
from wan.install.tiny import dit_config, dit_state, write_dit
from wan.job.conditioning import PromptEmbeds, t2v_conditioning
from wan.job.conditioning_ati import ati_conditioning
from wan.job.load import load_dit
from wan.job.options import LoadOptions, RunOptions, SamplingOptions
from wan.job.dit_conds import dit_conds
from wan.job.sample import make_dit_call, sample_video
from wan.models.dit.model import WanDiT
from wan.models.vae.wan21 import WanVAE
from wan.sampling.dual_cfg import make_dual_cfg_denoiser
from wan.sampling.step import Step
from wan.weights.lora.parse import load_lora
from wan.weights.packed import PackedLinear

gguf = pytest.importorskip("gguf")
torch.set_num_threads(2)

FP32 = LoadOptions(dtype=torch.float32, device="cpu")
W, H, FRAMES = 32, 32, 5
# on a 32x32 video the 4x4 latent grid sits at pixels 0, 10.67, 21.33, 32: tracks that end on it
# patch y visibly (the patch weight falls as exp(-temperature * squared distance))
TRACKS = [[{"x": 32 * i / 360, "y": 64 / 3} for i in range(121)], [{"x": 64 / 3, "y": 32 / 3} for _ in range(121)]]


def plain(variant, sd):
    model = WanDiT(dit_config(variant))
    model.load_state_dict(sd, strict=True)
    return model.eval()



def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


def text(seed=3):
    g = torch.Generator().manual_seed(seed)
    return PromptEmbeds(torch.randn(1, 7, 4096, generator=g), torch.randn(1, 5, 4096, generator=g))


def phantom_cond(subject_cfg=4.0):
    cond = t2v_conditioning(W, H, FRAMES)
    subject = torch.randn(1, 16, 2, H // 8, W // 8, generator=torch.Generator().manual_seed(4))
    return cond.replace(subject=subject, subject_cfg=subject_cfg)


@torch.no_grad()
def dual_step(model, cond, text_embeds=None):
    """One step of Phantom's dual CFG (three passes) as the sampler builds it: the velocity."""
    pos, neg = dit_conds(text() if text_embeds is None else text_embeds, cond, torch.device("cpu"))
    x = torch.randn(cond.latent_shape(), generator=torch.Generator().manual_seed(5))
    denoise = make_dual_cfg_denoiser(make_dit_call(lambda step, *a, **k: model(*a, **k), x.shape[2]), pos, neg,
                                     6.0, cond.subject_cfg)
    sigma = torch.tensor(0.8)
    return denoise(x, Step(0, 1, sigma, sigma * 1000))


@pytest.fixture(scope="module")
def vae():
    model = WanVAE(TINY21).eval()
    model.load_state_dict(random_weights(model.state_dict(), seed=3))
    return model


def ati_cond(vae):
    image = torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(6))
    cond = ati_conditioning(vae, None, image, json.dumps(TRACKS), W, H, FRAMES, temperature=20.0, topk=2)
    clip = torch.randn(1, 257, 1280, generator=torch.Generator().manual_seed(7))
    return cond.replace(clip_fea=clip)


@torch.no_grad()
def one_pass(model, cond):
    pos, _ = dit_conds(text(), cond, torch.device("cpu"))
    x = torch.randn(cond.latent_shape(), generator=torch.Generator().manual_seed(8))
    return make_dit_call(lambda step, *a, **k: model(*a, **k), x.shape[2])(x, Step(0, 1, torch.tensor(0.6),
                                                                                torch.tensor(600.0)), pos)


def test_phantom_gguf_q8_0(tmp_path):
    path = write_dit(tmp_path / "Phantom_Wan_14B-Q8_0.gguf", "t2v_14b", "gguf", qtype="Q8_0", seed=21)
    packed = load_dit(path, FP32)
    assert isinstance(packed.blocks[0].self_attn.q, PackedLinear)
    cond = phantom_cond()
    out = dual_step(packed, cond)
    check(out, dual_step(plain("t2v_14b", dequantized_state(path)), cond))
    source = {k: (v.to(torch.bfloat16).float() if v.ndim == 2 else v) for k, v in dit_state("t2v_14b", 21).items()}
    err = rel_l2(out, dual_step(plain("t2v_14b", source), cond))
    print(f"Phantom GGUF Q8_0 dual-CFG step vs bf16 source: rel L2 {err:.2e}")
    assert err < 0.01


def test_ati_gguf_q8_0(tmp_path, vae):
    path = write_dit(tmp_path / "Wan2_1-I2V-ATI-14B-Q8_0.gguf", "i2v_14b", "gguf", qtype="Q8_0", seed=22)
    packed = load_dit(path, FP32)
    assert isinstance(packed.blocks[0].cross_attn.k_img, PackedLinear)
    cond = ati_cond(vae)
    plain_cond = ati_conditioning(vae, None, torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(6)),
                                  "[]", W, H, FRAMES).replace(clip_fea=cond.clip_fea)
    assert (cond.y - plain_cond.y).abs().max() > 1e-3  # the tracks did patch y
    out = one_pass(packed, cond)
    check(out, one_pass(plain("i2v_14b", dequantized_state(path)), cond))
    source = {k: (v.to(torch.bfloat16).float() if v.ndim == 2 else v) for k, v in dit_state("i2v_14b", 22).items()}
    err = rel_l2(out, one_pass(plain("i2v_14b", source), cond))
    print(f"ATI GGUF Q8_0 pass vs bf16 source: rel L2 {err:.2e}")
    assert err < 0.01


def _lora(tmp_path, base, modules, name):
    lora_sd = write_pairs(random_pairs(base, modules, seed=9), lambda m: f"diffusion_model.{m}",
                          "lora_up.weight", "lora_down.weight")
    path = tmp_path / name
    save_file(lora_sd, str(path))
    return path, comfy_patched(base, lora_sd, 0.8)


def test_phantom_lora_run_equals_loraloader_merge(tmp_path):
    base = dit_state("t2v_14b", 23)
    modules = ["blocks.0.self_attn.q", "blocks.1.cross_attn.k", "blocks.1.ffn.2", "head.head"]
    path, merged = _lora(tmp_path, base, modules, "phantom_lora.safetensors")
    model = plain("t2v_14b", base)
    sampling = SamplingOptions(steps=2, cfg=6.0, shift=5.0, seed=3, sampler="euler")
    cond = phantom_cond()
    before = sample_video(model, text(), cond, sampling)
    run = RunOptions(loras=((load_lora(path), 0.8),))
    got = sample_video(model, text(), cond, sampling, run)
    want = sample_video(plain("t2v_14b", merged), text(), cond, sampling)
    err = check(got, want)
    print(f"Phantom LoRA run vs LoraLoader merge: max err {err:.2e}")
    assert (got - before).abs().max() > 1e-4
    assert torch.equal(sample_video(model, text(), cond, sampling), before)  # restored after the run


def test_ati_lora_run_equals_loraloader_merge(tmp_path, vae):
    base = dit_state("i2v_14b", 24)
    modules = ["blocks.0.cross_attn.k_img", "blocks.1.self_attn.o", "img_emb.proj.1", "patch_embedding"]
    path, merged = _lora(tmp_path, base, modules, "ati_lora.safetensors")
    model = plain("i2v_14b", base)
    sampling = SamplingOptions(steps=2, cfg=5.0, shift=3.0, seed=3, sampler="euler")
    cond = ati_cond(vae)
    before = sample_video(model, text(), cond, sampling)
    got = sample_video(model, text(), cond, sampling, RunOptions(loras=((load_lora(path), 0.8),)))
    want = sample_video(plain("i2v_14b", merged), text(), cond, sampling)
    err = check(got, want)
    print(f"ATI LoRA run vs LoraLoader merge: max err {err:.2e}")
    assert (got - before).abs().max() > 1e-4
