"""Bad expert and schedule settings in the bundled Lightning graph meet a clear error before any
model loads (issue 17): widget values at validation (HTTP 400), linked values (Wan Expert Options,
Wan Guidance Options) in the Wan Sampler's lazy check that runs before its models are made, and a
LoRA for another model on one expert in its model loader, from the DiT file's header, before either
expert is read (a loader reads no weights; the sampler does, once both loaders have passed).

The experts are copied under names of this test's own, so a model load would show in the server
log as "Wan: loaded <name>" (the loader's line) whatever earlier tests cached."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file

from comfy_client import execution_error
from workflow_graphs import load_api, shrink

HIGH, LOW = "expert_input_high.safetensors", "expert_input_low.safetensors"


@pytest.fixture(scope="module")
def graph(comfy_server, models):
    folder = comfy_server.models_dir("diffusion_models")
    for name, source in ((HIGH, models["i2v22_high"]), (LOW, models["i2v22_low"])):
        shutil.copy(source, folder / name)
    g = shrink(load_api("wan22_i2v_a14b_lightning"), "expert_input")
    g["1"]["inputs"]["model"], g["9"]["inputs"]["model"] = HIGH, LOW
    return g


def _fails_before_loading(server, graph, node_type, *words, unloaded=(HIGH, LOW)):
    entry = server.wait(server.queue(graph), 120)
    error = execution_error(entry)
    assert error is not None and error["node_type"] == node_type, error
    for word in words:
        assert word in error["exception_message"], error["exception_message"]
    for name in unloaded:
        assert f"Wan: loaded {name}" not in server.log, name


def test_a_switch_step_outside_the_run(comfy_server, graph):
    graph = {**graph, "11": {**graph["11"], "inputs": {**graph["11"]["inputs"], "switch_step": 7}}}
    _fails_before_loading(comfy_server, graph, "WanSampler", "switch", "7")


def test_a_cfg_list_of_the_wrong_length(comfy_server, graph):
    graph = dict(graph)
    graph["20"] = {"class_type": "WanGuidanceOptions", "inputs": {
        "cfg_per_step": "2, 1, 1", "cfg_zero_star": False, "zero_init_steps": 0, "slg_layers": "", "slg_scale": 3.0,
        "slg_start_percent": 0.01, "slg_end_percent": 0.15, "slg_rescaling_scale": 0.0, "nag_scale": 0.0,
        "nag_tau": 2.5, "nag_alpha": 0.25}}
    graph["6"] = {**graph["6"], "inputs": {**graph["6"]["inputs"], "guidance_options": ["20", 0]}}
    _fails_before_loading(comfy_server, graph, "WanSampler", "cfg_per_step has 3 values")


def test_a_lora_for_another_model_on_one_expert(comfy_server, graph):
    path = comfy_server.models_dir("loras") / "expert_input_sd15.safetensors"
    g = torch.Generator().manual_seed(0)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(4, 320, generator=g),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(320, 4, generator=g)},
              str(path))
    graph = {**graph, "13": {**graph["13"], "inputs": {**graph["13"]["inputs"], "lora": path.name}}}
    # the loaders check from the headers and read no weights, so whichever runs first, neither
    # expert has been read when the wrong LoRA is refused
    _fails_before_loading(comfy_server, graph, "WanModelLoader", path.name, unloaded=(HIGH, LOW))


@pytest.mark.parametrize("node, key, value, words", [
    ("11", "boundary", 1.5, "boundary"),
    ("6", "scheduler", "not_a_scheduler", "not_a_scheduler"),
])
def test_widget_values_are_refused_at_validation(comfy_server, graph, node, key, value, words):
    graph = {**graph, node: {**graph[node], "inputs": {**graph[node]["inputs"], key: value}}}
    status, body = comfy_server.post_prompt(graph)
    assert status == 400 and words in str(body), body
