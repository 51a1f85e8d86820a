"""ComfyUI's own nodes on our MODEL ("Wan Diffusion Model Loader (MODEL)"), over HTTP.

Each test builds one native graph twice and runs both on the session server: once on our loader
(the tiny GGUF Q8_0, fp8 or fp16 file, weights kept packed) and once on ComfyUI's UNETLoader over an
fp32 safetensors twin holding exactly the dequantized weights (gguf-py's dequantizers for the GGUF,
an exact upcast otherwise). The UMT5 CLIP is our "Wan UMT5 Loader (CLIP)" on our side and ComfyUI's
own Wan text encoder on the other; every other node is ComfyUI's and the same on both sides. Every SaveLatent must agree within 1e-3 of max|latent| and
every decoded frame within one 8-bit level, so a node that mishandled our MODEL (a LoRA patch lost
on a packed weight, a sampling shift not applied, a context window reading the wrong model) shows.

Nodes covered: ModelSamplingSD3, KSampler, KSamplerAdvanced (two experts split), SamplerCustom,
SamplerCustomAdvanced with RandomNoise / CFGGuider / BasicScheduler / KSamplerSelect,
EmptyHunyuanLatentVideo, WanImageToVideo, WanFirstLastFrameToVideo, Wan22ImageToVideoLatent (TI2V
5B), WanContextWindowsManual, TorchCompileModel, LoraLoader, LoraLoaderModelOnly, CLIPTextEncode,
VAELoader, VAEDecode, LoadImage. WanVaceToVideo is covered by test_native_workflows.py (the bonfire
graph).
"""

from __future__ import annotations

import pytest

import native_fixtures
import tiny_models
from native_graphs import (TOLERANCE, compare, comfy_unet, ours, outputs_of, relative_error,
                           save_image, save_latent)

SIZE, FRAMES, LONG_FRAMES, STEPS, SEED = 32, 5, 13, 2, 7
T2V_LORA = "native_t2v_lora.safetensors"
I2V_LORA = "native_i2v_lightning_lora.safetensors"


@pytest.fixture(scope="module")
def files(comfy_server, models):
    """role -> the file our loader reads; role -> its fp32 twin for UNETLoader; the LoRAs."""
    roles = {"t2v": models["t2v_gguf"], "ti2v": models["ti2v_5b"], "high": models["i2v22_high"],
             "low": models["i2v22_low"]}
    twins = {role: native_fixtures.write_dequantized_twin(
        path, comfy_server.models_dir("diffusion_models") / f"native_twin_{role}_f32.safetensors")
        for role, path in roles.items()}
    loras = comfy_server.models_dir("loras")
    if not (loras / T2V_LORA).exists():
        tiny_models.write_lora(loras / T2V_LORA, "t2v_1_3b", seed=31)
    if not (loras / I2V_LORA).exists():
        native_fixtures.write_lightning_lora(loras / I2V_LORA, seed=32)
    return {"ours": ours(roles), "comfy": comfy_unet(twins), "umt5": models["umt5"].name,
            "vae21": models["vae21"].name}


def _text(g: dict, clip: list, first_id: int, positive="a sword in burning wood", negative="blurry") -> tuple:
    g[str(first_id)] = {"class_type": "CLIPTextEncode", "inputs": {"clip": clip, "text": positive}}
    g[str(first_id + 1)] = {"class_type": "CLIPTextEncode", "inputs": {"clip": clip, "text": negative}}
    return [str(first_id), 0], [str(first_id + 1), 0]


def _ksampler(model, pos, neg, latent, cfg=4.0, sampler="euler") -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": model, "seed": SEED, "steps": STEPS, "cfg": cfg, "sampler_name": sampler, "scheduler": "simple",
        "positive": pos, "negative": neg, "latent_image": latent, "denoise": 1.0}}


def _t2v_graph(loader, files, tag: str) -> dict:
    """Wan 2.1 T2V 1.3B (GGUF Q8_0) through every sampler front end, a LoRA, context windows, and
    the TI2V 5B through Wan22ImageToVideoLatent."""
    g = {
        "1": loader("t2v"),
        "2": loader.clip(files["umt5"]),
        "3": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["2", 0], "lora_name": T2V_LORA,
                                                     "strength_model": 0.5, "strength_clip": 1.0}},
        "4": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["3", 0], "shift": 5.0}},
        "5": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 5.0}},  # without the LoRA
        "8": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": SIZE, "height": SIZE, "length": FRAMES,
                                                                  "batch_size": 1}},
        "9": {"class_type": "VAELoader", "inputs": {"vae_name": files["vae21"]}},
    }
    pos, neg = _text(g, ["3", 1], 6)
    g["10"] = _ksampler(["4", 0], pos, neg, ["8", 0])
    g["11"] = _ksampler(["5", 0], pos, neg, ["8", 0])
    g["12"] = {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["9", 0]}}
    # SamplerCustom: a sampler by name and ComfyUI's schedule of our model's sigmas
    g["13"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}}
    g["14"] = {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "simple", "steps": STEPS,
                                                          "denoise": 1.0}}
    g["15"] = {"class_type": "SamplerCustom", "inputs": {
        "model": ["4", 0], "add_noise": True, "noise_seed": SEED, "cfg": 3.0, "positive": pos, "negative": neg,
        "sampler": ["13", 0], "sigmas": ["14", 0], "latent_image": ["8", 0]}}
    # SamplerCustomAdvanced: noise, guider, sampler and sigmas as separate nodes
    g["16"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED + 1}}
    g["17"] = {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": pos, "negative": neg, "cfg": 5.0}}
    g["18"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}}
    g["19"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["16", 0], "guider": ["17", 0], "sampler": ["18", 0], "sigmas": ["14", 0], "latent_image": ["8", 0]}}
    # context windows: 4 latent frames in windows of 2 overlapping by 1
    g["20"] = {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": SIZE, "height": SIZE,
                                                                   "length": LONG_FRAMES, "batch_size": 1}}
    g["21"] = {"class_type": "WanContextWindowsManual", "inputs": {
        "model": ["4", 0], "context_length": 5, "context_overlap": 1, "context_schedule": "standard_static",
        "context_stride": 1, "closed_loop": False, "fuse_method": "pyramid"}}
    g["22"] = _ksampler(["21", 0], pos, neg, ["20", 0])
    g["23"] = _ksampler(["4", 0], pos, neg, ["20", 0])  # the same without windows
    # Wan 2.2 TI2V 5B (fp16): its 48-channel latent from Wan22ImageToVideoLatent, no start image (the
    # tiny Wan 2.2 VAE is not ComfyUI's fixed 160-wide one, so the VAE input is never used here)
    g["24"] = loader("ti2v")
    g["25"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["24", 0], "shift": 5.0}}
    g["26"] = {"class_type": "Wan22ImageToVideoLatent", "inputs": {"vae": ["9", 0], "width": SIZE, "height": SIZE,
                                                                   "length": FRAMES, "batch_size": 1}}
    g["27"] = _ksampler(["25", 0], pos, neg, ["26", 0], cfg=5.0, sampler="uni_pc")
    for nid, src in (("90", "10"), ("91", "11"), ("92", "15"), ("93", "19"), ("94", "22"), ("95", "23"),
                     ("96", "27")):
        g[nid] = save_latent([src, 0], f"{tag}_{nid}")
    g["97"] = save_image(["12", 0], f"{tag}_97")
    return g


def test_t2v_samplers_lora_windows_and_ti2v_on_our_model_equal_comfyui(comfy_server, files):
    mine = outputs_of(comfy_server, _t2v_graph(files["ours"], files, "native_t2v_ours"))
    ref = outputs_of(comfy_server, _t2v_graph(files["comfy"], files, "native_t2v_comfy"))
    compare(mine, ref, "T2V 1.3B GGUF Q8_0 + TI2V 5B fp16")
    assert ref["90"].shape == (1, 16, (FRAMES - 1) // 4 + 1, SIZE // 8, SIZE // 8)
    assert ref["96"].shape == (1, 48, (FRAMES - 1) // 4 + 1, SIZE // 16, SIZE // 16)
    assert ref["97"].shape == (FRAMES, SIZE, SIZE, 3)
    # the LoRA and the windows do change the result (so agreeing on them means something)
    assert relative_error(ref["90"], ref["91"]) > 10 * TOLERANCE
    assert relative_error(ref["94"], ref["95"]) > 10 * TOLERANCE
    assert "lora key not loaded" not in comfy_server.log


def _i2v_graph(loader, files, tag: str) -> dict:
    """Wan 2.2 I2V A14B experts (fp8): ModelSamplingSD3 each, a Lightning LoRA on the high expert,
    WanImageToVideo and WanFirstLastFrameToVideo, each sampled by KSamplerAdvanced x2 split at step 2."""
    steps, split = 4, 2
    g = {
        "1": loader("high"), "2": loader("low"),
        "3": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": I2V_LORA,
                                                              "strength_model": 0.8}},
        "4": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["3", 0], "shift": 8.0}},
        "5": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["2", 0], "shift": 8.0}},
        "6": loader.clip(files["umt5"]),
        "9": {"class_type": "VAELoader", "inputs": {"vae_name": files["vae21"]}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "portrait.png"}},
        "11": {"class_type": "LoadImage", "inputs": {"image": "bonfire.png"}},
    }
    pos, neg = _text(g, ["6", 0], 7, "a man waving", "blurry")
    size = {"width": SIZE, "height": SIZE, "length": FRAMES, "batch_size": 1}
    g["12"] = {"class_type": "WanImageToVideo", "inputs": {"positive": pos, "negative": neg, "vae": ["9", 0], **size,
                                                           "start_image": ["10", 0]}}
    g["13"] = {"class_type": "WanFirstLastFrameToVideo", "inputs": {
        "positive": pos, "negative": neg, "vae": ["9", 0], **size, "start_image": ["10", 0], "end_image": ["11", 0]}}
    nid = 20
    for cond, out in (("12", "90"), ("13", "91")):
        common = {"noise_seed": SEED, "steps": steps, "cfg": 3.5, "sampler_name": "euler", "scheduler": "simple",
                  "positive": [cond, 0], "negative": [cond, 1]}
        g[str(nid)] = {"class_type": "KSamplerAdvanced", "inputs": {
            **common, "model": ["4", 0], "latent_image": [cond, 2], "add_noise": "enable", "start_at_step": 0,
            "end_at_step": split, "return_with_leftover_noise": "enable"}}
        g[str(nid + 1)] = {"class_type": "KSamplerAdvanced", "inputs": {
            **common, "model": ["5", 0], "latent_image": [str(nid), 0], "add_noise": "disable",
            "start_at_step": split, "end_at_step": 10000, "return_with_leftover_noise": "disable"}}
        g[out] = save_latent([str(nid + 1), 0], f"{tag}_{out}")
        nid += 2
    g["30"] = {"class_type": "VAEDecode", "inputs": {"samples": ["21", 0], "vae": ["9", 0]}}
    g["92"] = save_image(["30", 0], f"{tag}_92")
    return g


def test_i2v_a14b_experts_on_our_model_equal_comfyui(comfy_server, files):
    mine = outputs_of(comfy_server, _i2v_graph(files["ours"], files, "native_i2v_ours"))
    ref = outputs_of(comfy_server, _i2v_graph(files["comfy"], files, "native_i2v_comfy"))
    compare(mine, ref, "Wan 2.2 I2V A14B fp8 experts")
    assert ref["90"].shape == ref["91"].shape == (1, 16, (FRAMES - 1) // 4 + 1, SIZE // 8, SIZE // 8)
    assert relative_error(ref["90"], ref["91"]) > 10 * TOLERANCE  # the end frame mattered
    assert "lora key not loaded" not in comfy_server.log


def _compile_graph(loader, files, tag: str) -> dict:
    g = {
        "1": loader("t2v"),
        "2": loader.clip(files["umt5"]),
        "3": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 5.0}},
        "4": {"class_type": "TorchCompileModel", "inputs": {"model": ["3", 0], "backend": "inductor"}},
        "8": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": SIZE, "height": SIZE, "length": FRAMES,
                                                                  "batch_size": 1}},
    }
    pos, neg = _text(g, ["2", 0], 6)
    g["10"] = _ksampler(["4", 0], pos, neg, ["8", 0])
    g["90"] = save_latent(["10", 0], f"{tag}_90")
    return g


def test_torch_compile_model_on_our_model(comfy_server, files):
    """TorchCompileModel (inductor, on the CPU here) over our packed model: the compiled graph gives
    what ComfyUI's uncompiled UNETLoader model gives."""
    mine = outputs_of(comfy_server, _compile_graph(files["ours"], files, "native_compile_ours"), timeout=600)
    g = _compile_graph(files["comfy"], files, "native_compile_comfy")
    g["10"]["inputs"]["model"] = ["3", 0]
    del g["4"]
    compare(mine, outputs_of(comfy_server, g), "TorchCompileModel on T2V GGUF Q8_0")
