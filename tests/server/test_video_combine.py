"""The pack inside a real ComfyUI server (each release tested), driven over HTTP: registration of
every node, and Wan Video Combine fed by core EmptyImage, files decoded back by ffmpeg / Pillow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from comfy_client import execution_error
from refs import import_pack

REPO = Path(__file__).resolve().parents[2]
FORMATS = ["image/gif", "image/webp", "video/h264-mp4", "video/h265-mp4", "video/webm"]
EXT = {"image/gif": "gif", "image/webp": "webp", "video/h264-mp4": "mp4", "video/h265-mp4": "mp4", "video/webm": "webm"}
# 20 fps: GIF stores delays in 1/100 s, so 16 fps would read back as 16.67.
FPS = 20.0
WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}


def _pack_mappings():
    """The pack's own mappings, imported in-process as ComfyUI imports it."""
    module = import_pack()
    return module.NODE_CLASS_MAPPINGS, module.NODE_DISPLAY_NAME_MAPPINGS


def test_pack_imports_without_error(comfy_server):
    log = comfy_server.log
    assert comfy_server.import_failures("comfyui-wan-nodes") == []
    pack_lines = [line for line in log.splitlines() if "seconds" in line and "comfyui-wan-nodes" in line]
    assert pack_lines and "IMPORT FAILED" not in pack_lines[0], pack_lines


def test_every_node_listed_with_display_name_and_category(comfy_server):
    classes, display = _pack_mappings()
    info = comfy_server.object_info()
    served = {name: node for name, node in info.items() if node["python_module"] == "custom_nodes.comfyui-wan-nodes"}
    assert set(served) == set(classes)
    assert "WanVideoCombine" in served
    for name, node in served.items():
        assert name in display, f"{name} has no display name"
        assert node["display_name"] == display[name]
        assert node["category"].split("/")[0] == "Wan", (name, node["category"])
    assert served["WanVideoCombine"]["display_name"] == "Wan Video Combine"
    assert served["WanVideoCombine"]["output_node"] is True
    assert served["WanVideoCombine"]["output_name"] == ["filenames"]


def _combine(images, fmt, prefix, **extra):
    inputs = {"images": images, "frame_rate": FPS, "loop_count": 0, "filename_prefix": prefix, "format": fmt,
              "pingpong": False, "save_output": True, **extra}
    return {"class_type": "WanVideoCombine", "inputs": inputs}


def _empty_image(width, height, batch=9, color=0x336699):
    return {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch, "color": color}}


COLOR_A, COLOR_B = (0x33, 0x66, 0x99), (0xCC, 0x99, 0x33)


def _two_colour_clip(graph, width, height):
    """9 frames from core nodes: 5 of COLOR_A then 4 of COLOR_B; returns the IMAGE link."""
    graph["1"] = _empty_image(width, height, 5, 0x336699)
    graph["2"] = _empty_image(width, height, 4, 0xCC9933)
    graph["3"] = {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}}
    return ["3", 0]


def _decode(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = sum(1 for _ in reader)
    return frames, meta


def _ffmpeg_tags(path) -> dict:
    """Container tags as ffmpeg reads them; values are JSON without '\\n', so unescaping = ; # \\ suffices."""
    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True, check=True,
    ).stdout.decode()
    tags = {}
    for line in out.splitlines()[1:]:
        key, _, value = line.partition("=")
        tags[key.lower()] = value.replace("\\=", "=").replace("\\;", ";").replace("\\#", "#").replace("\\\\", "\\")
    return tags


def _metadata(path, fmt) -> dict:
    """{"prompt": ..., "workflow": ...} read back from wherever the format keeps it."""
    if fmt == "image/gif":
        with Image.open(path) as im:
            return json.loads(im.info["comment"])
    if fmt == "image/webp":
        with Image.open(path) as im:
            exif = im.getexif()
        return {k: json.loads(v) for k, _, v in (exif[tag].partition(":") for tag in (0x0110, 0x010F))}
    tags = _ffmpeg_tags(path)
    return {"prompt": json.loads(tags["prompt"]), "workflow": json.loads(tags["workflow"])}


def _check_files(server, outputs, graph, fmts, *, frames, size, kind, audio, last_colour):
    folder = server.output_dir if kind == "output" else server.temp_dir
    for node_id, fmt in fmts.items():
        [entry] = outputs[node_id]["images"]
        assert entry["type"] == kind
        assert entry["filename"].endswith(f"_00001_.{EXT[fmt]}")
        path = folder / entry["subfolder"] / entry["filename"]
        assert path.is_file(), path
        count, meta = _decode(path)
        even = fmt.startswith("video/")
        expected_size = (size[0] + size[0] % 2, size[1] + size[1] % 2) if even else size
        assert meta["size"] == expected_size, fmt
        if fmt == "image/webp":
            # libwebp merges identical consecutive frames into one longer frame: the clip's
            # length in time is what must survive.
            total_ms = 0
            with Image.open(path) as im:
                for i in range(im.n_frames):
                    im.seek(i)
                    im.load()  # Pillow sets a webp frame's duration when it decodes it
                    total_ms += im.info["duration"]
            assert total_ms == pytest.approx(frames * 1000 / FPS, abs=1), fmt
        else:
            assert count == frames, fmt
            assert meta["fps"] == pytest.approx(FPS, abs=0.01), fmt
        if even:
            assert bool(meta.get("audio_codec")) == audio, (fmt, meta.get("audio_codec"))
        assert _metadata(path, fmt) == {"prompt": graph, "workflow": WORKFLOW}, fmt
        # First and last frames keep their colours (within codec error): order and pingpong.
        decoded = [np.frombuffer(buf, np.uint8).reshape(expected_size[1], expected_size[0], 3) for buf in _frames(path)]
        for frame, colour in ((decoded[0], COLOR_A), (decoded[-1], last_colour)):
            assert np.abs(frame[: size[1], : size[0]].reshape(-1, 3).mean(0) - colour).max() < 6, fmt
    leftovers = [p.name for p in folder.rglob(".*.part")]
    assert leftovers == []


def _frames(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    return reader


def test_every_format_writes_a_clip_that_decodes_back(comfy_server):
    graph = {}
    clip = _two_colour_clip(graph, 64, 48)
    fmts = {}
    for i, fmt in enumerate(FORMATS, start=10):
        graph[str(i)] = _combine(clip, fmt, f"formats/{fmt.replace('/', '_')}")
        fmts[str(i)] = fmt
    outputs = comfy_server.run(graph, workflow=WORKFLOW)
    _check_files(comfy_server, outputs, graph, fmts, frames=9, size=(64, 48), kind="output", audio=False,
                 last_colour=COLOR_B)


def test_odd_size_pingpong_audio_to_temp(comfy_server):
    graph = {"4": {"class_type": "WanTestSineAudio",
                   "inputs": {"seconds": 3.0, "frequency": 440.0, "sample_rate": 16000, "channels": 2}}}
    clip = _two_colour_clip(graph, 65, 49)
    fmts = {}
    for i, fmt in enumerate(FORMATS, start=10):
        # Audio also goes to gif/webp: the node must ignore it there, not fail.
        graph[str(i)] = _combine(clip, fmt, f"odd/{fmt.replace('/', '_')}", pingpong=True, save_output=False,
                                 audio=["4", 0], crf=30)
        fmts[str(i)] = fmt
    outputs = comfy_server.run(graph, workflow=WORKFLOW)
    _check_files(comfy_server, outputs, graph, fmts, frames=2 * 9 - 2, size=(65, 49), kind="temp", audio=True,
                 last_colour=COLOR_A)
    assert not (comfy_server.output_dir / "odd").exists()


def _all_files(server) -> set[Path]:
    return {p for folder in (server.output_dir, server.temp_dir) if folder.exists() for p in folder.rglob("*")}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"frame_rate": 0.0}, "frame_rate must be from 0.01 to 240 frames per second, got 0.0"),
        ({"frame_rate": -1.0}, "frame_rate must be from 0.01 to 240 frames per second, got -1.0"),
        ({"filename_prefix": "../x"}, "points outside the output folder"),
        ({"filename_prefix": "a/../../x"}, "points outside the output folder"),
        ({"filename_prefix": "/tmp/wan_abs/x"}, "absolute path"),
        ({"format": "video/avi"}, "video/avi"),
    ],
)
def test_bad_widget_values_are_rejected_before_running(comfy_server, change, message):
    before = _all_files(comfy_server)
    graph = {"1": _empty_image(32, 32, batch=2), "2": _combine(["1", 0], "video/h264-mp4", "bad", **change)}
    status, body = comfy_server.post_prompt(graph)
    assert status == 400, body
    errors = body["node_errors"]["2"]["errors"]
    assert any(message in f"{e['message']} {e['details']}" for e in errors), errors
    assert _all_files(comfy_server) == before
    assert not Path("/tmp/wan_abs").exists()


def test_empty_batch_fails_cleanly_and_the_server_keeps_serving(comfy_server):
    before = _all_files(comfy_server)
    bad = {"1": {"class_type": "WanTestEmptyBatch", "inputs": {"width": 32, "height": 32}},
           "2": _combine(["1", 0], "video/webm", "empty")}
    entry = comfy_server.wait(comfy_server.queue(bad))
    error = execution_error(entry)
    assert error is not None and error["node_type"] == "WanVideoCombine"
    assert error["exception_type"].endswith("WanInputError")
    assert "empty batch" in error["exception_message"]
    assert _all_files(comfy_server) == before

    good = {"1": _empty_image(32, 32, batch=3), "2": _combine(["1", 0], "video/webm", "after_error")}
    outputs = comfy_server.run(good)
    [entry] = outputs["2"]["images"]
    assert _decode(comfy_server.output_dir / entry["subfolder"] / entry["filename"])[0] == 3


def test_demo_workflow_runs_and_matches_its_ui_twin(comfy_server):
    api = json.loads((REPO / "workflows/video_combine_demo.api.json").read_text())
    ui = json.loads((REPO / "workflows/video_combine_demo.json").read_text())
    # The UI graph holds the same nodes with the same widget values, in INPUT_TYPES order.
    info = comfy_server.object_info()
    for node in ui["nodes"]:
        api_node = api[str(node["id"])]
        assert api_node["class_type"] == node["type"]
        spec = info[node["type"]]["input"]
        widgets = [name for part in ("required", "optional") for name, (kind, *_) in spec.get(part, {}).items()
                   if not (isinstance(kind, str) and kind.isupper() and kind not in ("INT", "FLOAT", "STRING", "BOOLEAN"))]
        assert dict(zip(widgets, node["widgets_values"])) == {k: api_node["inputs"][k] for k in widgets}

    outputs = comfy_server.run(api, workflow=ui)
    [entry] = outputs["2"]["images"]
    path = comfy_server.output_dir / entry["subfolder"] / entry["filename"]
    count, meta = _decode(path)
    assert (count, meta["size"], meta["fps"]) == (16, (256, 192), 16.0)


def test_interrupt_during_encode_leaves_no_file(comfy_server):
    import time

    before = _all_files(comfy_server)
    # ~2 s of x265 work on 2 cores: long enough to interrupt once the temporary file appears.
    graph = {"1": _empty_image(320, 240, batch=240), "2": _combine(["1", 0], "video/h265-mp4", "interrupted", crf=0)}
    prompt_id = comfy_server.queue(graph)
    deadline = time.monotonic() + 60
    while not list(comfy_server.output_dir.rglob(".interrupted*.part")):
        assert time.monotonic() < deadline, "the encode never started"
        time.sleep(0.02)
    comfy_server.interrupt()
    entry = comfy_server.wait(prompt_id)
    kinds = [kind for kind, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds, f"the encode finished before the interrupt: {kinds}"
    assert _all_files(comfy_server) - before <= {comfy_server.output_dir / "interrupted"}
