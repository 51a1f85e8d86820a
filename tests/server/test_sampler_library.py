"""Wan Sampler through the real server gives exactly the library's latent: an API graph (LoRA
select, model loader, text encoder, empty embeds, step cache and Enhance-A-Video options, sampler)
is queued, its latent saved by ComfyUI's own SaveLatent node and read back, and compared bit for
bit with ``wan.job.sample.sample_video`` run here on the same files with the same inputs.

Both processes compute on the CPU with torch's default thread count of this machine, so their
float reductions split the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tiny_models
from wan.job.conditioning import encode_prompts, t2v_conditioning
from wan.job.options import LoadOptions, RunOptions, SamplingOptions
from wan.job.pipelines import load_components
from wan.job.sample import sample_video
from wan.runtime.cache import CacheArgs
from wan.runtime.feta import FetaArgs
from wan.weights.lora import load_lora

DIT, TE, LORA = "Wan2.1-T2V-1.3B-Q8_0.gguf", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "t2v_library_test.safetensors"
W, H, FRAMES, STEPS, CFG, SHIFT, SEED, SAMPLER, STRENGTH = 32, 32, 9, 4, 4.0, 5.0, 11, "unipc", 0.6
PROMPT, NEGATIVE = "a lighthouse in a storm", "blurry"
CACHE, FETA = dict(threshold=1.0), dict(weight=3.0)


def _graph(prefix: str, options: bool) -> dict:
    g = {
        "1": {"class_type": "WanLoraSelect", "inputs": {"lora": LORA, "strength": STRENGTH}},
        "2": {"class_type": "WanModelLoader", "inputs": {"model": DIT, "base_precision": "fp32",
                                                         "quantization": "disabled", "load_device": "main_device",
                                                         "attention_mode": "sdpa", "lora": ["1", 0]}},
        "3": {"class_type": "WanTextEncoderLoader", "inputs": {"text_encoder": TE, "precision": "fp32",
                                                               "load_device": "main_device"}},
        "4": {"class_type": "WanTextEncode", "inputs": {"text_encoder": ["3", 0], "positive_prompt": PROMPT,
                                                        "negative_prompt": NEGATIVE}},
        "5": {"class_type": "WanEmptyEmbeds", "inputs": {"width": W, "height": H, "num_frames": FRAMES}},
        "6": {"class_type": "WanSampler", "inputs": {"model": ["2", 0], "text_embeds": ["4", 0], "image_embeds": ["5", 0],
                                                     "steps": STEPS, "cfg": CFG, "shift": SHIFT, "seed": SEED,
                                                     "sampler": SAMPLER, "denoise_strength": 1.0}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": prefix}},
    }
    if options:
        g["7"] = {"class_type": "WanCacheArgs", "inputs": {"threshold": CACHE["threshold"], "start_step": 1,
                                                           "end_step": -1, "input": "e0", "coefficients": "auto",
                                                           "offload_residuals": False}}
        g["8"] = {"class_type": "WanEnhanceVideoArgs", "inputs": {"weight": FETA["weight"], "start_percent": 0.0,
                                                                  "end_percent": 1.0}}
        g["6"]["inputs"].update(cache_args=["7", 0], feta_args=["8", 0])
    return g


def _server_latent(server, graph: dict) -> torch.Tensor:
    outputs = server.run(graph, timeout=240)
    (entry,) = outputs["9"]["latents"]
    return load_file(str(server.output_dir / entry["subfolder"] / entry["filename"]))["latent_tensor"]


def _library_latent(paths: dict, lora: Path, options: bool) -> torch.Tensor:
    parts = load_components(dit=paths["t2v_gguf"], text_encoder=paths["umt5"],
                            options=LoadOptions(dtype=torch.float32, device="cpu"))
    text = encode_prompts(parts["text_encoder"], PROMPT, NEGATIVE)
    run = RunOptions(loras=((load_lora(lora), STRENGTH),), cache=CacheArgs(**CACHE) if options else None,
                     feta=FetaArgs(**FETA) if options else None)
    sampling = SamplingOptions(steps=STEPS, cfg=CFG, shift=SHIFT, seed=SEED, sampler=SAMPLER)
    return sample_video(parts["dit"], text, t2v_conditioning(W, H, FRAMES, 16), sampling, run)


@pytest.mark.parametrize("options", [False, True], ids=["lora", "lora_cache_feta"])
def test_server_sampler_equals_library(comfy_server, models, options):
    lora = comfy_server.models_dir("loras") / LORA
    if not lora.exists():
        tiny_models.write_lora(lora, "t2v_1_3b", seed=31)
    served = _server_latent(comfy_server, _graph(f"test/sampler_library_{int(options)}", options))
    ours = _library_latent(models, lora, options)
    assert served.shape == ours.shape == (1, 16, (FRAMES - 1) // 4 + 1, H // 8, W // 8)
    assert torch.equal(served, ours)
