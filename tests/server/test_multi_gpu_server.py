"""Wan Multi-GPU over HTTP (issue 22): the same Wan graph queued on the real server with and without a
Wan Multi-GPU node of 2 ranks (Ray actors started inside the server, gloo on the CPU) gives the same
latent, saved by ComfyUI's SaveLatent and read back (fp32; bar 1e-5 of max|latent|). The ranks stay
warm between jobs and POST /free ends them."""

from __future__ import annotations

import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

import tiny_models

pytest.importorskip("ray")

DIT, TE, LORA = "Wan2.1-T2V-1.3B-Q8_0.gguf", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "multi_gpu_test.safetensors"
W, H, FRAMES, STEPS = 32, 32, 5, 3


def _graph(prefix: str, layout: str | None) -> dict:
    g = {
        "1": {"class_type": "WanLoraSelect", "inputs": {"lora": LORA, "strength": 0.7}},
        "2": {"class_type": "WanModelLoader", "inputs": {"model": DIT, "base_precision": "fp32",
                                                         "quantization": "disabled", "load_device": "main_device",
                                                         "attention_mode": "sdpa", "lora": ["1", 0]}},
        "3": {"class_type": "WanTextEncoderLoader", "inputs": {"text_encoder": TE, "precision": "fp32",
                                                               "load_device": "main_device"}},
        "4": {"class_type": "WanTextEncode", "inputs": {"text_encoder": ["3", 0], "positive_prompt": "a kite",
                                                        "negative_prompt": "rain"}},
        "5": {"class_type": "WanEmptyEmbeds", "inputs": {"width": W, "height": H, "num_frames": FRAMES}},
        "6": {"class_type": "WanSampler", "inputs": {"model": ["2", 0], "text_embeds": ["4", 0], "image_embeds": ["5", 0],
                                                     "steps": STEPS, "cfg": 4.0, "shift": 5.0, "seed": 5,
                                                     "sampler": "unipc", "denoise_strength": 1.0}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": prefix}},
    }
    if layout:
        g["7"] = {"class_type": "WanMultiGPU", "inputs": {"gpus": "", "count": 2, "layout": layout}}
        g["6"]["inputs"]["multi_gpu"] = ["7", 0]
    return g


def _latent(server, graph: dict) -> torch.Tensor:
    (entry,) = server.run(graph, timeout=300)["9"]["latents"]
    return load_file(str(server.output_dir / entry["subfolder"] / entry["filename"]))["latent_tensor"]


def _rank_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "RankActor" in line]


def test_two_ranks_over_http_equal_one_process_and_free_ends_them(comfy_server, models):
    lora = comfy_server.models_dir("loras") / LORA
    if not lora.exists():
        tiny_models.write_lora(lora, "t2v_1_3b", seed=41)
    expected = _latent(comfy_server, _graph("test/multi_gpu_plain", None))
    for layout in ("cfg", "ring"):
        got = _latent(comfy_server, _graph(f"test/multi_gpu_{layout}", layout))
        err = ((got - expected).abs().max() / expected.abs().max()).item()
        assert err <= 1e-5, (layout, err)
    assert "Wan Multi-GPU: 2 ranks" in comfy_server.log
    assert _rank_processes(), "the ranks stay warm after the job"
    comfy_server.free()
    deadline = time.monotonic() + 60
    while _rank_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _rank_processes(), "POST /free ended the ranks"
