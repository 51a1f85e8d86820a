"""Faults in a running server: interrupts timed by ComfyUI's own progress messages (mid-sampling,
mid-decode, mid-encode), model files replaced or deleted between jobs, a full output disk. After
each fault the job ends with a clear message, no partial file is left, and the next job succeeds.

Out-of-memory is in test_faults_oom.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.soak import LOADED, job_graph, prepare
from comfy_client import execution_error
from tiny_models import write_dit

T2V_DIT = "Wan2.1-T2V-1.3B-Q8_0.gguf"


@pytest.fixture(scope="module")
def events(comfy_server):
    prepare(comfy_server)
    watcher = comfy_server.events().open()  # ComfyUI's progress messages for this client
    yield watcher
    watcher.close()


def _msg(kind, prompt_id, **data):
    return lambda m: m["type"] == kind and m["data"].get("prompt_id") == prompt_id and all(
        m["data"].get(k) == v for k, v in data.items())


def _files(server) -> set[Path]:
    return {p for root in (server.output_dir, server.temp_dir) if root.exists() for p in root.rglob("*") if p.is_file()}


def _graph(tag: str, steps=2, size=(32, 32), frames=5, seed=None) -> dict:
    graph = job_graph("t2v", 0, prefix_root="faults", steps=steps)
    graph["5"]["inputs"].update(width=size[0], height=size[1], num_frames=frames)
    graph["6"]["inputs"].update(cfg=1.0, seed=seed if seed is not None else uuid.uuid4().int % 10**9)
    graph["8"]["inputs"]["filename_prefix"] = f"faults/{tag}"
    return graph


def _interrupted(entry) -> dict:
    kinds = {kind: data for kind, data in entry["status"]["messages"]}
    assert "execution_interrupted" in kinds, f"not interrupted: {list(kinds)}"
    return kinds["execution_interrupted"]


def _next_job_succeeds(server, tag):
    outputs = server.run(_graph(tag), timeout=300)
    [item] = outputs["8"]["images"]
    assert (server.output_dir / item["subfolder"] / item["filename"]).stat().st_size > 0


# ---- interrupts ----------------------------------------------------------------------------------

def test_interrupt_mid_sampling(comfy_server, events):
    before = _files(comfy_server)
    prompt_id = comfy_server.queue(_graph("int_sampling", steps=1000))
    progress = events.wait_for(lambda m: _msg("progress", prompt_id, node="6")(m) and m["data"]["value"] >= 2, 300)
    comfy_server.interrupt()
    data = _interrupted(comfy_server.wait(prompt_id, 120))
    assert data["node_type"] == "WanSampler"
    assert "6" not in data["executed"]
    assert progress["data"]["max"] == 1000
    assert _files(comfy_server) == before
    _next_job_succeeds(comfy_server, "after_int_sampling")


def test_interrupt_mid_decode(comfy_server, events):
    # 81 frames at 160x160: decoding takes long enough to be caught running.
    before = _files(comfy_server)
    prompt_id = comfy_server.queue(_graph("int_decode", steps=1, size=(160, 160), frames=81))
    events.wait_for(_msg("executing", prompt_id, node="7"), 300)
    comfy_server.interrupt()
    entry = comfy_server.wait(prompt_id, 300)
    data = _interrupted(entry)
    # stopped inside the decode (the VAE polls cancel between its layers), not before the next node
    assert data["node_type"] == "WanVAEDecode", data
    assert "8" not in data["executed"]
    assert _files(comfy_server) == before
    _next_job_succeeds(comfy_server, "after_int_decode")


def _slow_encode_graph(tag: str, fmt="video/h265-mp4") -> dict:
    """Decoded frames scaled to 320x240 and repeated to 240 frames: seconds of lossless x265."""
    graph = _graph(tag, steps=1, size=(64, 64), frames=9)
    graph["20"] = {"class_type": "ImageScale", "inputs": {"image": ["7", 0], "upscale_method": "nearest-exact",
                                                          "width": 320, "height": 240, "crop": "disabled"}}
    graph["21"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["20", 0], "amount": 27}}
    graph["8"]["inputs"].update(images=["21", 0], format=fmt, crf=0)
    return graph


def test_interrupt_mid_encode(comfy_server, events):
    before = _files(comfy_server)
    prompt_id = comfy_server.queue(_slow_encode_graph("int_encode"))
    events.wait_for(_msg("executing", prompt_id, node="8"), 300)
    events.wait_for(lambda m: _msg("progress", prompt_id, node="8")(m) and m["data"]["value"] >= 5, 120)
    comfy_server.interrupt()
    data = _interrupted(comfy_server.wait(prompt_id, 120))
    assert data["node_type"] == "WanVideoCombine"
    assert _files(comfy_server) == before  # the .part file is gone too
    _next_job_succeeds(comfy_server, "after_int_encode")


# ---- model files changing under the server -------------------------------------------------------

def _t2i_pixels(server, model: str, tag: str) -> np.ndarray:
    graph = job_graph("t2i", 0, prefix_root="faults", steps=2)
    graph["1"]["inputs"]["model"] = model
    graph["6"]["inputs"]["seed"] = 7
    graph["8"]["inputs"]["filename_prefix"] = f"faults/{tag}"
    outputs = server.run(graph, timeout=300)
    [item] = outputs["8"]["images"]
    with Image.open(server.output_dir / item["subfolder"] / item["filename"]) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_replaced_model_file_is_reloaded_not_served_stale(comfy_server):
    prepare(comfy_server)  # the tiny model set it copies from
    folder = comfy_server.models_dir("diffusion_models")
    name = f"fault_replace_{uuid.uuid4().hex[:6]}.gguf"
    shutil.copy(comfy_server.base_dir / "models" / "unet" / T2V_DIT, folder / name)
    first = _t2i_pixels(comfy_server, name, "replace_a")
    loads = comfy_server.log.count(LOADED)

    # Same graph, same name; the file now holds other weights (same shapes).
    write_dit(folder / f"{name}.new", "t2v_1_3b", "gguf", seed=99)
    os.replace(folder / f"{name}.new", folder / name)
    second = _t2i_pixels(comfy_server, name, "replace_b")
    assert comfy_server.log.count(LOADED) == loads + 1, "the replaced file was not read again"
    assert np.abs(first - second).mean() > 1.0, "same picture from different weights: stale model served"


def test_deleted_model_file_gives_an_error_naming_it(comfy_server, events):
    folder = comfy_server.models_dir("diffusion_models")
    name = f"fault_delete_{uuid.uuid4().hex[:6]}.gguf"
    shutil.copy(comfy_server.base_dir / "models" / "unet" / T2V_DIT, folder / name)
    _t2i_pixels(comfy_server, name, "delete_a")

    # Deleted before queueing: validation refuses the widget value, naming the file.
    (folder / name).unlink()
    graph = job_graph("t2i", 0, prefix_root="faults")
    graph["1"]["inputs"]["model"] = name
    status, body = comfy_server.post_prompt(graph)
    assert status == 400, body
    assert name in json.dumps(body["node_errors"]["1"]), body

    # Deleted after the job was accepted (while another one runs): the loader's error names it.
    shutil.copy(comfy_server.base_dir / "models" / "unet" / T2V_DIT, folder / name)
    blocker = comfy_server.queue(_graph("delete_blocker", steps=1000))
    events.wait_for(_msg("progress", blocker, node="6"), 300)
    graph["6"]["inputs"]["seed"] = 12345  # not the graph ComfyUI ran before: nothing cached to serve
    victim = comfy_server.queue(graph)
    (folder / name).unlink()
    comfy_server.interrupt()
    _interrupted(comfy_server.wait(blocker, 120))
    error = execution_error(comfy_server.wait(victim, 120))
    assert error is not None and error["node_type"] == "WanModelLoader", error
    assert name in error["exception_message"], error
    _next_job_succeeds(comfy_server, "after_delete")


# ---- a full disk ---------------------------------------------------------------------------------

def _mount_tiny_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_full_output_disk_gives_a_clear_error_and_no_partial_file(comfy_server):
    # The output subfolder is a 64 KiB tmpfs: ffmpeg's writes fail with ENOSPC part-way through.
    mount = comfy_server.output_dir / "diskfull"
    if not _mount_tiny_tmpfs(mount, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        before = _files(comfy_server)
        graph = _slow_encode_graph("x", fmt="video/h264-mp4")
        graph["21"]["inputs"]["amount"] = 3
        graph["8"]["inputs"]["filename_prefix"] = "diskfull/clip"
        entry = comfy_server.wait(comfy_server.queue(graph), 300)
        error = execution_error(entry)
        assert error is not None and error["node_type"] == "WanVideoCombine", entry["status"]
        assert "No space left on device" in error["exception_message"], error["exception_message"]
        assert list(mount.iterdir()) == []
        assert _files(comfy_server) == before
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)
    _next_job_succeeds(comfy_server, "after_diskfull")
