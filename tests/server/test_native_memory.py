"""Both of our stacks' models are ComfyUI's to manage, over HTTP: the MODEL of "Wan Diffusion Model
Loader (MODEL)" (ComfyUI's own Wan model in a PackedModelPatcher, weights packed) and the models of
our own Wan Model Loader stack (a ModelPatcher around a holder, nodes/_common.py) are listed in
ComfyUI's ``current_loaded_models`` beside a core UNETLoader's model; POST /free unloads them, and
ComfyUI's ``free_memory`` (what a core loader's ``load_models_gpu`` calls before a big load) evicts
ours and core models alike.

What a CPU allows: ComfyUI's ``load_models_gpu`` frees memory only on a non-CPU device, so on this
server a real big load by a core node never evicts anything; WanTestLoadedModels (wan_test_helpers.py)
makes that same ``free_memory`` call on ComfyUI's device instead, and reports the list.
"""

from __future__ import annotations

import json
import time

import pytest

import native_fixtures
from native_graphs import clip_loader
from workflow_graphs import load_api, shrink


def _prefixed(graph: dict, prefix: str) -> dict:
    """The graph with every node id (and link) prefixed, to join several graphs in one prompt."""
    out = {}
    for nid, node in graph.items():
        inputs = {k: [prefix + v[0], v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
        out[prefix + nid] = {**node, "inputs": inputs}
    return out


def _with_report(models, core_unet, seed: int = 3, free_memory: bool = False) -> dict:
    """One prompt: our MODEL, a core UNETLoader model and our Wan Model Loader stack each sample,
    then WanTestLoadedModels reports ComfyUI's list (after calling free_memory if asked)."""
    stack = shrink(load_api("t2v"), "mm_stack")
    stack["6"]["inputs"]["seed"] = seed
    del stack["7"], stack["8"]  # the latent is enough
    g = {**_prefixed(_native_graph(models, _ours(models), seed), "o"),
         **_prefixed(_native_graph(models, core_unet, seed), "c"), **_prefixed(stack, "s")}
    g["report"] = {"class_type": "WanTestLoadedModels", "inputs": {
        "free_memory": free_memory, "after_1": ["o5", 0], "after_2": ["c5", 0], "after_3": ["s6", 0]}}
    return g


def _loaded(server, graph: dict) -> list[dict]:
    outputs = server.run(graph, timeout=180)
    return json.loads(outputs["report"]["text"][0])


def _native_graph(models, loader: dict, seed: int) -> dict:
    g = {
        "1": loader,
        "2": clip_loader(models["umt5"].name),
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a red house"}},
        "4": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 32, "height": 32, "length": 1,
                                                                  "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": seed, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
    }
    return g


def _ours(models) -> dict:
    return {"class_type": "WanDiffusionModelLoader", "inputs": {
        "unet_name": models["t2v_gguf"].name, "compute_dtype": "default", "quantization": "disabled"}}


@pytest.fixture(scope="module")
def core_unet(comfy_server, models):
    twin = native_fixtures.write_dequantized_twin(
        models["t2v_gguf"], comfy_server.models_dir("diffusion_models") / "native_twin_t2v_f32.safetensors")
    return {"class_type": "UNETLoader", "inputs": {"unet_name": twin.name, "weight_dtype": "default"}}


def _kinds(rows: list[dict]) -> dict[str, list[dict]]:
    return {"packed": [r for r in rows if r["patcher"] == "PackedModelPatcher" and r["model"] == "WAN21"],
            "clip": [r for r in rows if r["patcher"] == "PackedModelPatcher" and r["model"] != "WAN21"],
            "stack": [r for r in rows if r["model"] == "_Held"],
            "core": [r for r in rows if r["patcher"] == "ModelPatcher" and r["model"] == "WAN21"]}


def test_our_models_are_listed_and_post_free_unloads_them(comfy_server, models, core_unet):
    graph = _with_report(models, core_unet)
    kinds = _kinds(_loaded(comfy_server, graph))
    assert kinds["packed"] and kinds["clip"] and kinds["stack"] and kinds["core"], kinds
    # our MODEL is held packed: ComfyUI's own Wan model, every block Linear a uint8 weight
    assert all(r["model"] == "WAN21" and r["packed_linears"] > 0 for r in kinds["packed"]), kinds
    assert kinds["packed"][0]["loaded_bytes"] < kinds["core"][0]["loaded_bytes"]

    assert comfy_server.free(unload_models=True, free_memory=False) == 200
    # The same prompt again: every node but the report is cached (its outputs, and so the models,
    # stay referenced), so what the report lists is what /free left loaded.
    rows = _loaded(comfy_server, graph)
    for _ in range(20):  # the worker applies /free between prompts: possibly after the next one
        if not rows:
            break
        time.sleep(0.1)
        rows = _loaded(comfy_server, graph)
    assert rows == []


def test_a_big_load_frees_ours_and_core_models_alike(comfy_server, models, core_unet):
    before = _kinds(_loaded(comfy_server, _with_report(models, core_unet, seed=11)))
    assert before["packed"] and before["stack"] and before["core"], before
    assert _loaded(comfy_server, _with_report(models, core_unet, seed=11, free_memory=True)) == []
    # nothing of ours was kept alive behind ComfyUI's back, and the next jobs load them again
    after = _kinds(_loaded(comfy_server, _with_report(models, core_unet, seed=12)))
    assert after["packed"] and after["stack"] and after["core"], after
