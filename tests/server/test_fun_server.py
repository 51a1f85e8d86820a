"""The Fun camera path and a wrong model for a Fun node over HTTP in a real ComfyUI (both releases):
ComfyUI's own WanCameraEmbedding node feeds Wan Camera Embeds, the Wan Sampler runs a tiny Fun camera
model (real safetensors layout) to a video file; the fun_control graph on a text-to-video model
fails before sampling with an error naming the model file."""

from __future__ import annotations

import imageio_ffmpeg
import pytest

from comfy_client import ComfyError
from workflow_graphs import FRAMES, SIZE, load_api, shrink


def _frames(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return sum(1 for _ in reader), tuple(meta["size"])


def test_camera_graph_runs_to_its_file(comfy_server, models):
    graph = shrink(load_api("fun_control"), "fun_camera")
    graph["1"]["inputs"]["model"] = models["fun_camera"].name
    graph["13"] = {"class_type": "WanCameraEmbedding",
                   "inputs": {"camera_pose": "Pan Left", "width": SIZE, "height": SIZE, "length": FRAMES,
                              "speed": 1.0, "fx": 0.5, "fy": 0.5, "cx": 0.5, "cy": 0.5}}
    graph["5"] = {"class_type": "WanCameraEmbeds",
                  "inputs": {"vae": ["3", 0], "width": SIZE, "height": SIZE, "num_frames": FRAMES,
                             "camera_embedding": ["13", 0], "start_image": ["9", 0], "clip_embeds": ["11", 0]}}
    del graph["12"]
    [path] = comfy_server.files(comfy_server.run(graph, timeout=180))
    assert path.suffix == ".mp4" and _frames(path) == (FRAMES, (SIZE, SIZE))


def test_wrong_model_for_fun_control_names_the_file(comfy_server, models):
    graph = shrink(load_api("fun_control"), "fun_wrong_model")
    graph["1"]["inputs"]["model"] = models["t2v_gguf"].name
    with pytest.raises(ComfyError) as err:
        comfy_server.run(graph, timeout=180)
    text = str(err.value)
    assert models["t2v_gguf"].name in text and "conditioning channels" in text, text
