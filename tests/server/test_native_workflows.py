"""The two bundled native workflows on our MODEL loader equal the same graphs on ComfyUI's UNETLoader.

Each bundled graph (native_bonfire_vace, native_wan22_i2v_a14b) is shrunk to test size on the
catalogue's tiny files (workflow_graphs.shrink),
its decode and video replaced by SaveLatent, and run twice: as shipped (Wan Diffusion Model Loader
(MODEL) on the tiny VACE GGUF Q8_0, or the fp8 I2V A14B experts) and with each of our loaders
replaced by ComfyUI's UNETLoader over an fp32 twin holding exactly the dequantized weights (gguf-py
for the GGUF) and our "Wan UMT5 Loader (CLIP)" by ComfyUI's own Wan text encoder. The bar is the node-level tests': 1e-3 of max|latent|. The bonfire graph is the
"GGUF Q8_0 file and its dequantized twin agree" check, through LoraLoader (CausVid at 0.5),
ModelSamplingSD3, WanVaceToVideo with the reference image, KSampler and TrimVideoLatent.
"""

from __future__ import annotations

import pytest

import native_fixtures
from native_graphs import TOLERANCE, compare, outputs_of, reference_clip_loader, relative_error, save_latent
from workflow_graphs import FRAMES, SIZE, load_api, shrink

CASES = {  # workflow -> (node id of the last sampler or trim, the decode and video nodes it drops)
    "native_bonfire_vace": ("11", ("12", "13")),
    "native_wan22_i2v_a14b": ("12", ("13", "14")),
}


@pytest.fixture(scope="module")
def twins(comfy_server, models):
    """our loader's file name -> the name of its fp32 twin in diffusion_models."""
    out = {}
    for role in ("vace_gguf", "i2v22_high", "i2v22_low"):
        twin = comfy_server.models_dir("diffusion_models") / f"native_twin_{role}_f32.safetensors"
        out[models[role].name] = native_fixtures.write_dequantized_twin(models[role], twin).name
    return out


def _graphs(name: str, twins: dict) -> tuple[dict, dict]:
    last, dropped = CASES[name]
    ours = shrink(load_api(name), f"{name}_ours")
    for nid in dropped:
        del ours[nid]
    ours["99"] = save_latent([last, 0], f"{name}_ours")
    ref = shrink(load_api(name), f"{name}_comfy")
    for nid in dropped:
        del ref[nid]
    ref["99"] = save_latent([last, 0], f"{name}_comfy")
    swapped = 0
    for node in ref.values():
        if node["class_type"] == "WanUMT5Loader":
            node.update(reference_clip_loader(node["inputs"]["clip_name"]))
        if node["class_type"] == "WanDiffusionModelLoader":
            node.update(class_type="UNETLoader",
                        inputs={"unet_name": twins[node["inputs"]["unet_name"]], "weight_dtype": "default"})
            swapped += 1
    assert swapped == (1 if name == "native_bonfire_vace" else 2)
    return ours, ref


@pytest.mark.parametrize("name", list(CASES))
def test_native_workflow_on_our_loader_equals_comfyui_unet_loader(comfy_server, models, twins, name):
    ours, ref = _graphs(name, twins)
    mine, theirs = outputs_of(comfy_server, ours), outputs_of(comfy_server, ref)
    compare(mine, theirs, f"bundled {name}")
    assert theirs["99"].shape == (1, 16, (FRAMES - 1) // 4 + 1, SIZE // 8, SIZE // 8)
    assert "lora key not loaded" not in comfy_server.log


def test_bonfire_lora_and_reference_change_the_latent(comfy_server, models, twins):
    """The CausVid LoRA and the reference image each change the result, so the agreement above
    covers them (on ComfyUI's side alone: no value of ours is the expectation)."""
    _, ref = _graphs("native_bonfire_vace", twins)
    base = outputs_of(comfy_server, ref)["99"]
    no_lora = _graphs("native_bonfire_vace", twins)[1]
    no_lora["3"]["inputs"].update(strength_model=0.0)
    no_lora["99"]["inputs"]["filename_prefix"] += "_nolora"
    no_ref = _graphs("native_bonfire_vace", twins)[1]
    del no_ref["9"]["inputs"]["reference_image"]
    no_ref["99"]["inputs"]["filename_prefix"] += "_noref"
    assert relative_error(outputs_of(comfy_server, no_lora)["99"], base) > 10 * TOLERANCE
    assert relative_error(outputs_of(comfy_server, no_ref)["99"], base) > 10 * TOLERANCE
