"""Node behaviour a user relies on, in the real ComfyUI server: LoRA reports and the shared base,
ComfyUI's own VAE nodes on our latents (and ours on theirs), and the model cache (reuse, and no
stale model after a file is replaced)."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import tiny_models
from comfy_client import execution_error
from workflow_graphs import load_api, shrink

VACE_GGUF = "Wan2.1_14B_VACE-Q3_K_S.gguf"


def _as_pngs(graph: dict, prefix: str) -> dict:
    """Replace the video writer by SaveImage (lossless), so runs can be compared exactly."""
    g = copy.deepcopy(graph)
    g["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": prefix}}
    return g


def _frames(server, outputs) -> np.ndarray:
    files = sorted(server.files(outputs))
    return np.stack([np.asarray(Image.open(f)) for f in files])


def _loaded_count(server, name: str, expect: int | None = None, timeout: float = 5.0) -> int:
    """How often the server logged loading ``name``; waits up to ``timeout`` s for ``expect`` (the
    server's log reaches the file through ComfyUI's stdout interceptor, a moment after the fact)."""
    import time

    deadline = time.monotonic() + (timeout if expect is not None else 0.5)
    while True:
        count = sum(1 for line in server.log.splitlines() if f"Wan: loaded {name} " in line)
        if count == expect or time.monotonic() >= deadline:
            return count
        time.sleep(0.1)


# ---- LoRA ----------------------------------------------------------------------------------------

def _lora_graph(lora_name: str, strength: float, prefix: str) -> dict:
    g = _as_pngs(shrink(load_api("t2v_vace_lora_reference"), prefix), prefix)
    g["10"]["inputs"].update(lora=lora_name, strength=strength)
    return g


def test_lora_leaves_the_shared_base_untouched(comfy_server, models):
    base = _as_pngs(shrink(load_api("vace_reference"), "lora_base_a"), "test/lora_base_a")
    before = _frames(comfy_server, comfy_server.run(base, timeout=180))
    loads = _loaded_count(comfy_server, VACE_GGUF, 1)

    with_lora = _lora_graph("Wan21_CausVid_14B_T2V_lora_rank32.safetensors", 2.0, "test/lora_on")
    with_lora["6"]["inputs"].update(steps=base["6"]["inputs"]["steps"], cfg=base["6"]["inputs"]["cfg"])
    lora_frames = _frames(comfy_server, comfy_server.run(with_lora, timeout=180))
    assert _loaded_count(comfy_server, VACE_GGUF) == loads, "the LoRA graph loaded its own base model"
    assert "8 of 8 LoRA patches match this Wan DiT" in comfy_server.log
    assert np.abs(lora_frames.astype(int) - before.astype(int)).max() > 0, "the LoRA changed nothing"

    # The same job again; a trailing space (removed by the tokenizer's cleaning) makes ComfyUI run
    # the text encoder and the sampler again instead of reusing their cached outputs.
    again = copy.deepcopy(base)
    again["4"]["inputs"]["positive_prompt"] += " "
    again["8"]["inputs"]["filename_prefix"] = "test/lora_base_b"
    after = _frames(comfy_server, comfy_server.run(again, timeout=180))
    assert np.array_equal(before, after), "the base model changed after a run with a LoRA"


def test_lora_for_another_model_is_an_error_that_says_so(comfy_server, models):
    path = comfy_server.models_dir("loras") / "sd15_style.safetensors"
    g = torch.Generator().manual_seed(0)
    save_file({
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(4, 320, generator=g),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(320, 4, generator=g),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
    }, str(path))
    entry = comfy_server.wait(comfy_server.queue(_lora_graph("sd15_style.safetensors", 1.0, "test/lora_bad")), 120)
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "WanModelLoader", error
    assert "sd15_style.safetensors" in error["exception_message"]
    assert "0 of 1 LoRA patches match this Wan DiT" in error["exception_message"]


def test_partial_lora_warns_with_examples_and_runs(comfy_server, models):
    path = comfy_server.models_dir("loras") / "partial.safetensors"
    tiny_models.write_lora(path, "vace_14b", blocks=[0, 7], modules=("self_attn.q",))  # the tiny model has 2 blocks
    outputs = comfy_server.run(_lora_graph("partial.safetensors", 1.0, "test/lora_partial"), timeout=180)
    assert len(comfy_server.files(outputs)) == 5
    # the loader's report of a LoRA that only partly applies: the count and an example of what is left out
    warning = [line for line in comfy_server.log.splitlines() if "Wan LoRA partial.safetensors" in line]
    assert warning and "1 of 2 LoRA patches" in warning[0] and "blocks.7.self_attn.q" in warning[0], warning


# ---- ComfyUI's own VAE nodes -----------------------------------------------------------------------

def test_our_latent_decodes_with_comfyui_vae_decode_and_agrees(comfy_server, models):
    g = shrink(load_api("t2v"), "interop")
    g["7"]["inputs"]["samples"] = ["6", 0]
    g["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "test/interop_ours"}}
    g["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}}
    g["21"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["20", 0]}}
    g["22"] = {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "test/interop_comfy"}}
    outputs = comfy_server.run(g, timeout=180)
    ours = _frames(comfy_server, {"8": outputs["8"]})
    theirs = _frames(comfy_server, {"22": outputs["22"]})
    assert ours.shape == theirs.shape == (5, 32, 32, 3)
    # Same latent, same weights, fp32 both: only the 8-bit rounding of the PNGs may differ.
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_comfyui_wan_latent_decodes_with_ours(comfy_server, models):
    g = {
        "1": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 32, "height": 48, "length": 9, "batch_size": 1}},
        "2": {"class_type": "WanVAELoader", "inputs": {"vae": "wan_2.1_vae.safetensors", "precision": "fp32"}},
        "3": {"class_type": "WanVAEDecode", "inputs": {"vae": ["2", 0], "samples": ["1", 0], "enable_vae_tiling": True,
                                                       "tile_size": 64, "tile_overlap": 16}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "test/comfy_latent"}},
    }
    frames = _frames(comfy_server, comfy_server.run(g, timeout=120))
    assert frames.shape == (9, 48, 32, 3)


# ---- the model cache ---------------------------------------------------------------------------

def test_replaced_model_file_is_loaded_again_not_served_stale(comfy_server, models):
    name = "replaceable_t2v.gguf"
    path = comfy_server.models_dir("unet") / name
    tiny_models.write_dit(path, "t2v_1_3b", "gguf", seed=21)
    g = _as_pngs(shrink(load_api("t2v"), "replace"), "test/replace_a")
    g["1"]["inputs"]["model"] = name
    first = _frames(comfy_server, comfy_server.run(g, timeout=180))
    g["8"]["inputs"]["filename_prefix"] = "test/replace_b"
    same = _frames(comfy_server, comfy_server.run(g, timeout=180))
    assert np.array_equal(first, same) and _loaded_count(comfy_server, name, 1) == 1

    tiny_models.write_dit(path, "t2v_1_3b", "gguf", seed=22)  # new weights under the same name
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    g["8"]["inputs"]["filename_prefix"] = "test/replace_c"
    replaced = _frames(comfy_server, comfy_server.run(g, timeout=180))
    assert _loaded_count(comfy_server, name, 2) == 2
    assert not np.array_equal(first, replaced)


def test_gguf_files_listed_only_where_they_belong(comfy_server, models):
    info = comfy_server.object_info()
    dit_choices = info["WanModelLoader"]["input"]["required"]["model"][0]
    assert "Wan2.1-T2V-1.3B-Q8_0.gguf" in dit_choices
    # Other folders (and so ComfyUI's own loaders) do not offer .gguf files.
    (comfy_server.models_dir("checkpoints") / "stray.gguf").write_bytes(b"GGUF")
    ckpts = comfy_server.object_info("CheckpointLoaderSimple")["input"]["required"]["ckpt_name"][0]
    assert "stray.gguf" not in ckpts


def test_free_memory_request_reaches_our_cache(comfy_server, models):
    """ComfyUI's "free model and node cache" (POST /free) unloads our models through its own model
    management (they are listed there as ModelPatchers) and resets its node cache; the loaders' cache
    then no longer keeps them, so the next run loads the model file again."""
    g = _as_pngs(shrink(load_api("t2v"), "free"), "test/free_a")
    comfy_server.run(g, timeout=180)
    loads = _loaded_count(comfy_server, "Wan2.1-T2V-1.3B-Q8_0.gguf", 1)
    assert comfy_server.free(unload_models=True, free_memory=True) == 200
    # The prompt worker applies the flags after its next wake-up, which a job always causes (the
    # POST's own wake-up is lost if the worker is busy collecting garbage): run a trivial job first.
    comfy_server.run({"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                      "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}, timeout=60)
    g["8"]["inputs"]["filename_prefix"] = "test/free_b"
    comfy_server.run(g, timeout=180)
    assert _loaded_count(comfy_server, "Wan2.1-T2V-1.3B-Q8_0.gguf", loads + 1) == loads + 1


def test_fp8_quantization_on_load(comfy_server, models):
    tiny_models.write_dit(comfy_server.models_dir("diffusion_models") / "t2v_bf16.safetensors", "t2v_1_3b",
                          "safetensors", seed=0)
    g = _as_pngs(shrink(load_api("t2v"), "fp8"), "test/fp8_plain")
    g["1"]["inputs"]["model"] = "t2v_bf16.safetensors"
    plain = _frames(comfy_server, comfy_server.run(g, timeout=180))
    g["1"]["inputs"]["quantization"] = "fp8_e4m3fn"
    g["8"]["inputs"]["filename_prefix"] = "test/fp8_quant"
    quant = _frames(comfy_server, comfy_server.run(g, timeout=180))
    assert quant.shape == plain.shape == (5, 32, 32, 3)
    assert not np.array_equal(quant, plain)  # the fp8 copy was used
    # fp8 e4m3 keeps ~3 significant bits per weight; two sampler steps on a random tiny model move
    # the decoded frames by a fraction of the range only.
    assert np.abs(quant.astype(int) - plain.astype(int)).mean() < 32


def test_video_to_video_through_wan_vae_encode(comfy_server, models):
    """LoadImage -> 5 frames -> Wan VAE Encode -> Wan Sampler (samples, denoise 0.5) -> frames."""
    g = _as_pngs(shrink(load_api("t2v"), "v2v"), "test/v2v")
    g["30"] = {"class_type": "LoadImage", "inputs": {"image": "portrait.png"}}
    g["31"] = {"class_type": "ImageScale", "inputs": {"image": ["30", 0], "upscale_method": "bilinear",
                                                      "width": 32, "height": 32, "crop": "center"}}
    g["32"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["31", 0], "amount": 5}}
    g["33"] = {"class_type": "WanVAEEncode", "inputs": {"vae": ["3", 0], "image": ["32", 0]}}
    g["6"]["inputs"].update(samples=["33", 0], denoise_strength=0.5, steps=4)
    frames = _frames(comfy_server, comfy_server.run(g, timeout=180))
    assert frames.shape == (5, 32, 32, 3)


def test_gguf_text_encoder(comfy_server, models):
    """A llama.cpp t5encoder GGUF (city96's umt5-xxl-encoder layout) in the text encoder loader."""
    g = shrink(load_api("t2v"), "te_gguf")
    g["2"]["inputs"]["text_encoder"] = "umt5-xxl-encoder-Q8_0.gguf"
    files = comfy_server.files(comfy_server.run(g, timeout=180))
    assert len(files) == 1 and files[0].stat().st_size > 0


def test_runtime_options_reach_loader_and_sampler(comfy_server, models):
    """Block swap (loader) and step cache + Enhance-A-Video (sampler) from the option nodes: the job
    runs, and block swap alone gives the frames of the plain run. On this CPU-only server swap stands
    aside (main and offload device are one), so swapping itself is exercised in process with a
    simulated device: tests/nodes/test_blockswap_sampler.py."""
    plain = _as_pngs(shrink(load_api("t2v"), "opts"), "test/opts_plain")
    base = _frames(comfy_server, comfy_server.run(plain, timeout=180))
    g = copy.deepcopy(plain)
    g["40"] = {"class_type": "WanBlockSwapArgs", "inputs": {"blocks_to_swap": 1, "offload_embeddings": False,
                                                            "prefetch": False}}
    g["1"]["inputs"]["block_swap_args"] = ["40", 0]
    g["8"]["inputs"]["filename_prefix"] = "test/opts_swap"
    swapped = _frames(comfy_server, comfy_server.run(g, timeout=180))
    assert np.array_equal(base, swapped)
    g["41"] = {"class_type": "WanCacheArgs", "inputs": {"threshold": 0.2, "start_step": 1, "end_step": -1,
                                                        "input": "e0", "coefficients": "auto", "offload_residuals": False}}
    g["42"] = {"class_type": "WanEnhanceVideoArgs", "inputs": {"weight": 2.0, "start_percent": 0.0, "end_percent": 1.0}}
    g["6"]["inputs"].update(cache_args=["41", 0], feta_args=["42", 0])
    g["8"]["inputs"]["filename_prefix"] = "test/opts_all"
    assert _frames(comfy_server, comfy_server.run(g, timeout=180)).shape == (5, 32, 32, 3)
