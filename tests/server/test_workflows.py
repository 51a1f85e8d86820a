"""The bundled workflows in a real ComfyUI server, over HTTP, on tiny model files in the real formats.

Each API workflow is run as shipped except for sizes (32x32, 5 frames, 2 steps) and fp32 weights
(bf16 convolutions are slow on a CPU); the model file names are the catalogue's, written by
tests/support/tiny_models.py. Checked: the file each writes (frame count, size), that the UI twin reads
back to the same graph with node types and widget values /object_info accepts, and the job
handling a user meets: concurrent prompts, cancel, bad files and parameters.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

import tiny_models
from comfy_client import execution_error
from make_ui_workflow import strip_meta, ui_to_api
from workflow_graphs import FRAMES, LONG_FRAMES, SIZE, STEPS, load_api, shrink

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = ["t2v", "i2v", "vace_reference", "t2v_vace_lora_reference", "t2v_long_context", "wan22_t2v_a14b",
             "wan22_ti2v_5b", "t2i_wan", "t2i_sd15", "wan22_i2v_a14b", "wan22_i2v_a14b_lightning",
             "wan22_t2v_a14b_lightning", "flf2v", "wan22_flf2v", "native_bonfire_vace", "native_wan22_i2v_a14b",
             "wan22_animate", "fun_control", "fun_inpaint", "fun_camera", "phantom", "ati", "wan22_s2v", "humo"]


def video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return sum(1 for _ in reader), tuple(meta["size"])


def all_files(server) -> set[Path]:
    return {p for d in (server.output_dir, server.temp_dir) if d.exists() for p in d.rglob("*") if p.is_file()}


# ---- every workflow ------------------------------------------------------------------------------

EXPECTED = {  # workflow -> (frames, latent frames it makes)
    "t2v": FRAMES, "i2v": FRAMES, "vace_reference": FRAMES, "t2v_vace_lora_reference": FRAMES,
    "t2v_long_context": LONG_FRAMES, "wan22_t2v_a14b": FRAMES, "wan22_ti2v_5b": FRAMES, "t2i_wan": 1,
    "wan22_i2v_a14b": FRAMES, "wan22_i2v_a14b_lightning": FRAMES, "wan22_t2v_a14b_lightning": FRAMES,
    "flf2v": FRAMES, "wan22_flf2v": FRAMES, "native_bonfire_vace": FRAMES, "native_wan22_i2v_a14b": FRAMES,
    "wan22_animate": FRAMES,
    "fun_control": FRAMES, "fun_inpaint": FRAMES, "fun_camera": FRAMES, "phantom": FRAMES, "ati": FRAMES,
    "wan22_s2v": FRAMES, "humo": FRAMES,
}


@pytest.mark.parametrize("name", [w for w in WORKFLOWS if w != "t2i_sd15"])
def test_workflow_runs_to_its_file(comfy_server, models, name):
    graph = shrink(load_api(name), name)
    outputs = comfy_server.run(graph, timeout=180)
    files = comfy_server.files(outputs)
    if name == "t2i_wan":
        assert len(files) == 1 and files[0].suffix == ".png", files
        with Image.open(files[0]) as im:
            assert im.size == (SIZE, SIZE)
            assert np.asarray(im).std() > 0  # not a blank image
        return
    assert len(files) == 1 and files[0].suffix == ".mp4", files
    assert video_frames(files[0]) == (EXPECTED[name], (SIZE, SIZE))


def test_sd15_workflow_runs_to_its_file(comfy_server, models):
    """ComfyUI's core SD1.5 graph on a reduced checkpoint its own detection still calls SD15 (full
    CLIP-L and VAE decoder, a one-level UNet at width 320): shipped graph, 64x64 and 2 steps."""
    ckpt = comfy_server.models_dir("checkpoints") / "v1-5-pruned-emaonly.safetensors"
    tiny_models.write_sd15_checkpoint(ckpt)
    graph = load_api("t2i_sd15")
    assert graph["1"]["inputs"]["ckpt_name"] == ckpt.name
    graph["4"]["inputs"].update(width=64, height=64)
    graph["5"]["inputs"]["steps"] = STEPS
    graph["7"]["inputs"]["filename_prefix"] = "test/t2i_sd15"
    outputs = comfy_server.run(graph, timeout=180)
    [path] = comfy_server.files(outputs)
    assert path.suffix == ".png"
    with Image.open(path) as im:
        assert im.size == (64, 64)
        assert np.asarray(im).std() > 0  # not a blank image


@pytest.mark.parametrize("name", WORKFLOWS)
def test_ui_twin_is_the_same_graph_with_valid_widgets(comfy_server, models, name):
    api = load_api(name)
    ui = json.loads((REPO / "workflows" / f"{name}.json").read_text())
    info = comfy_server.object_info()
    assert ui["version"] == 0.4
    assert ui_to_api(ui, info) == strip_meta(api)
    link_ids = {link[0] for link in ui["links"]}
    for node in ui["nodes"]:
        assert {"id", "type", "pos", "size", "widgets_values", "inputs", "outputs"} <= set(node), node["id"]
        for socket in node["inputs"]:
            assert socket["link"] is None or socket["link"] in link_ids
    for nid, node in api.items():
        spec = info[node["class_type"]]["input"]
        declared = {**spec.get("required", {}), **spec.get("optional", {})}
        for key, value in node["inputs"].items():
            assert key in declared, (name, nid, key)
            if isinstance(value, list):
                continue
            kind, opts = declared[key][0], (declared[key][1] if len(declared[key]) > 1 else {})
            if isinstance(kind, list):
                if node["class_type"] != "CheckpointLoaderSimple":  # the SD file is the user's
                    assert value in kind, (name, nid, key, value)
            elif kind in ("INT", "FLOAT"):
                assert opts.get("min", -np.inf) <= value <= opts.get("max", np.inf), (name, nid, key, value)


# ---- several jobs, cancel --------------------------------------------------------------------------

def test_three_prompts_queued_at_once_finish_with_distinct_outputs(comfy_server, models):
    ids = []
    for seed in (1, 2, 3):
        graph = shrink(load_api("t2v"), f"concurrent_{seed}")
        graph["6"]["inputs"]["seed"] = seed
        ids.append(comfy_server.queue(graph))
    digests = set()
    for prompt_id in ids:
        entry = comfy_server.wait(prompt_id, timeout=180)
        assert execution_error(entry) is None, execution_error(entry)
        [path] = comfy_server.files(entry["outputs"])
        assert video_frames(path) == (FRAMES, (SIZE, SIZE))
        reader = imageio_ffmpeg.read_frames(str(path))
        next(reader)
        digests.add(hashlib.sha256(b"".join(reader)).hexdigest())
    assert len(digests) == 3


def test_cancel_stops_within_a_step_and_writes_nothing(comfy_server, models):
    warm = shrink(load_api("t2v"), "cancel_warm")
    comfy_server.run(warm, timeout=180)  # every node but the sampler is now cached
    graph = copy.deepcopy(warm)
    graph["6"]["inputs"]["steps"] = 1000
    graph["8"]["inputs"]["filename_prefix"] = "test/cancelled"
    before = all_files(comfy_server)
    prompt_id = comfy_server.queue(graph)
    deadline = time.monotonic() + 60
    while not comfy_server.queue_running():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(2.0)  # inside the sampling loop (a 1000-step run takes far longer)
    t0 = time.monotonic()
    comfy_server.interrupt()
    entry = comfy_server.wait(prompt_id, timeout=60)
    stopped = time.monotonic() - t0
    kinds = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds, kinds
    assert all_files(comfy_server) == before
    # The cancel is polled before every step, so the job ends at the next step boundary: far
    # sooner than the ~1000 steps left (a step of this tiny model takes well under a second).
    assert stopped < 5.0, f"took {stopped:.2f} s to stop"
    line = [l for l in comfy_server.log.splitlines() if "Wan Sampler: cancelled after step" in l]
    assert line and int(line[-1].rsplit(" ", 1)[1]) < 1000, line


# ---- errors that name the problem ------------------------------------------------------------------

def _error_of(server, graph) -> dict:
    entry = server.wait(server.queue(graph), timeout=120)
    error = execution_error(entry)
    assert error is not None, "the prompt should have failed"
    return error


def test_vae_in_the_model_loader(comfy_server, models):
    target = comfy_server.models_dir("diffusion_models") / "vae_by_mistake.safetensors"
    target.write_bytes(models["vae21"].read_bytes())
    graph = shrink(load_api("t2v"), "err_vae")
    graph["1"]["inputs"]["model"] = "vae_by_mistake.safetensors"
    error = _error_of(comfy_server, graph)
    assert error["node_type"] == "WanModelLoader"
    assert "vae_by_mistake.safetensors" in error["exception_message"]
    assert "not a Wan diffusion model" in error["exception_message"] and "VAE" in error["exception_message"]


def test_gguf_of_another_architecture(comfy_server, models):
    tiny_models.write_wrong_arch_gguf(comfy_server.models_dir("unet") / "flux_by_mistake.gguf", "flux")
    graph = shrink(load_api("t2v"), "err_arch")
    graph["1"]["inputs"]["model"] = "flux_by_mistake.gguf"
    error = _error_of(comfy_server, graph)
    assert error["node_type"] == "WanModelLoader"
    assert "flux_by_mistake.gguf" in error["exception_message"] and "flux" in error["exception_message"].split(":", 1)[1]


def test_missing_file_is_refused_at_validation(comfy_server, models):
    graph = shrink(load_api("t2v"), "err_missing")
    graph["3"]["inputs"]["vae"] = "no_such_vae.safetensors"
    status, body = comfy_server.post_prompt(graph)
    assert status == 400, body
    [err] = body["node_errors"]["3"]["errors"]
    assert "no_such_vae.safetensors" in err["details"], err


@pytest.mark.parametrize("node, change, message", [
    ("6", {"steps": 0}, "smaller than min"),
    ("6", {"sampler": "ddim"}, "ddim"),
    ("5", {"width": 40}, "width must be a multiple of 16, got 40"),
    ("5", {"num_frames": 6}, "num_frames must be 1 + 4k"),
    ("5", {"height": 100000}, "height must be between 16 and 8192"),
    ("6", {"cfg": -1.0}, "smaller than min"),
])
def test_out_of_range_parameters(comfy_server, models, node, change, message):
    graph = shrink(load_api("t2v"), "err_range")
    graph[node]["inputs"].update(change)
    status, body = comfy_server.post_prompt(graph)
    assert status == 400, body
    errors = body["node_errors"][node]["errors"]
    assert any(message in f"{e['message']} {e['details']}" for e in errors), errors


def test_server_keeps_serving_after_errors(comfy_server, models):
    bad = shrink(load_api("t2v"), "err_then_ok")
    bad["1"]["inputs"]["model"] = "vae_by_mistake.safetensors"
    if not (comfy_server.models_dir("diffusion_models") / "vae_by_mistake.safetensors").exists():
        (comfy_server.models_dir("diffusion_models") / "vae_by_mistake.safetensors").write_bytes(models["vae21"].read_bytes())
    _error_of(comfy_server, bad)
    outputs = comfy_server.run(shrink(load_api("t2v"), "after_errors"), timeout=180)
    [path] = comfy_server.files(outputs)
    assert video_frames(path) == (FRAMES, (SIZE, SIZE))


def test_ui_reader_agrees_with_files_the_frontend_saved(comfy_server):
    """ComfyUI's own templates were saved by the real frontend: reading them back checks the widget
    conventions the UI files rely on (seed control value, image-upload value, INPUT_TYPES order). The
    templates are the ones this server serves (each release pins its own template packages)."""
    info = comfy_server.object_info()
    default = ui_to_api(comfy_server.get("/templates/default.json"), info)
    ks = default["3"]["inputs"]
    assert {k: ks[k] for k in ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")} == dict(
        seed=685468484323813, steps=20, cfg=8, sampler_name="euler", scheduler="normal", denoise=1)
    assert default["5"]["inputs"] == {"width": 512, "height": 512, "batch_size": 1}
    # A template both releases ship (0.8.0's no longer has image2image.json), saved before 0.8.0 gave
    # ImageScaleToTotalPixels its resolution_steps widget: there the frontend keeps that widget's default.
    i2i = ui_to_api(comfy_server.get("/templates/image_qwen_image_controlnet_patch.json"), info)
    assert i2i["71"]["inputs"] == {"image": "image_qwen_image_controlnet_patch_input_image.png"}
    scale = {"upscale_method": "area", "megapixels": 1.68}
    if "resolution_steps" in info["ImageScaleToTotalPixels"]["input"]["required"]:
        scale["resolution_steps"] = 1
    assert {k: v for k, v in i2i["75"]["inputs"].items() if k != "image"} == scale

    # Our t2i_sd15 is the seeds' graph, which is ComfyUI's default graph: same nodes, same wiring.
    def wiring(api):
        return sorted((api[s[0]]["class_type"], s[1], n["class_type"], k)
                      for n in api.values() for k, s in n["inputs"].items() if isinstance(s, list))

    ours = ui_to_api(json.loads((REPO / "workflows" / "t2i_sd15.json").read_text()), info)
    assert wiring(ours) == wiring(default)
