"""Broken and wrong files in the native loaders, over HTTP: "Wan Diffusion Model Loader (MODEL)" and
"Wan UMT5 Loader (CLIP)" meet each with an execution error of our own type that names the file,
raised by the loader node itself (ComfyUI has built nothing), and the server goes on serving."""

from __future__ import annotations

import shutil
import struct

import pytest

from comfy_client import execution_error
from native_graphs import clip_loader, save_latent
from tiny_models import write_lora, write_wrong_arch_gguf

OURS = ("WanFileError", "WanInputError")


def _graph(models, unet: str, clip: str, tag: str) -> dict:
    return {
        "1": {"class_type": "WanDiffusionModelLoader", "inputs": {
            "unet_name": unet, "compute_dtype": "default", "quantization": "disabled"}},
        "2": clip_loader(clip),
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a red house"}},
        "4": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 32, "height": 32, "length": 1,
                                                                  "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 1, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
        "6": save_latent(["5", 0], f"native_hostile/{tag}"),
    }


def _make(kind: str, models, folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "flux_gguf":
        return write_wrong_arch_gguf(folder / "native_hostile_flux.gguf").name
    if kind == "llm_gguf":
        return write_wrong_arch_gguf(folder / "native_hostile_llama.gguf", "llama").name
    if kind == "truncated_gguf":
        data = models["t2v_gguf"].read_bytes()
        (folder / "native_hostile_truncated.gguf").write_bytes(data[: len(data) // 2])
        return "native_hostile_truncated.gguf"
    if kind == "lying_gguf":  # the tensor count claims 2^40 tensors
        data = bytearray(models["t2v_gguf"].read_bytes())
        struct.pack_into("<Q", data, 8, 2**40)
        (folder / "native_hostile_lying.gguf").write_bytes(bytes(data))
        return "native_hostile_lying.gguf"
    if kind == "lora":
        return write_lora(folder / "native_hostile_lora.safetensors", variant="t2v_1_3b").name
    if kind in ("vae", "umt5", "dit"):
        role = {"vae": "vae21", "umt5": "umt5", "dit": "t2v_gguf"}[kind]
        target = folder / f"native_hostile_{kind}{models[role].suffix}"
        shutil.copyfile(models[role], target)
        return target.name
    raise ValueError(kind)


# (loader node id, its folder, what the file really is)
CASES = [("1", "diffusion_models", k) for k in ("flux_gguf", "llm_gguf", "truncated_gguf", "lying_gguf",
                                                 "lora", "vae", "umt5")]
CASES += [("2", "text_encoders", k) for k in ("dit", "vae", "truncated_gguf")]


@pytest.mark.parametrize("node, folder, kind", CASES, ids=[f"{n}-{k}" for n, _, k in CASES])
def test_native_loader_refuses_a_wrong_file_by_name(comfy_server, models, node, folder, kind):
    name = _make(kind, models, comfy_server.models_dir(folder))
    unet, clip = models["t2v_gguf"].name, models["umt5"].name
    graph = _graph(models, name if node == "1" else unet, name if node == "2" else clip, kind)
    status, body = comfy_server.post_prompt(graph)
    assert status == 200, body  # the file is listed: the loader itself must refuse it
    error = execution_error(comfy_server.wait(body["prompt_id"], 120))
    assert error is not None, f"{kind} loaded without an error"
    assert error["node_id"] == node, error
    assert error["exception_type"].endswith(OURS), error
    assert name in error["exception_message"], error
    # the server goes on: the same graph on the right files runs
    outputs = comfy_server.run(_graph(models, unet, clip, f"{kind}_ok"), timeout=120)
    assert outputs["6"]["latents"]
