"""Values, not only counts, of what our nodes write or compute, checked through the real server
against independent expectations:

- Wan Video Combine: the file decoded back equals the frames it was given (PNG files loaded by core
  LoadImage), frame by frame and in order (pingpong included), within each codec's error;
- Wan VAE Encode: the latent of five frames equals ComfyUI's own VAEEncode of them with the same VAE
  file (the decode side is in test_nodes.py).
"""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bench.soak import prepare

W, H = 64, 48
# least PSNR (dB, 0..255 range) of each decoded frame against the frame given, about 4 dB under the
# least measured on these smooth frames (imageio-ffmpeg's ffmpeg, default crf): gif 40.8, webp 44.1,
# h264 40.5, h265 40.0, webm 36.8; a wrong, shifted or darkened frame scores far lower
MIN_PSNR = {"image/gif": 36.0, "image/webp": 40.0, "video/h264-mp4": 36.0, "video/h265-mp4": 36.0,
            "video/webm": 32.0}
EXT = {"image/gif": "gif", "image/webp": "webp", "video/h264-mp4": "mp4", "video/h265-mp4": "mp4", "video/webm": "webm"}
VAE = "wan_2.1_vae.safetensors"


def _frame(k: int) -> np.ndarray:
    """Smooth, distinct frames: gradients turning with k and a soft disc moving with k."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    a = np.deg2rad(40.0 * k)
    ramp = (x * np.cos(a) + y * np.sin(a)) / (W + H)
    disc = np.exp(-((x - 12 - 9 * k) ** 2 + (y - 24) ** 2) / 60.0)
    rgb = np.stack([0.2 + 0.6 * ramp, 0.8 - 0.5 * ramp + 0.2 * disc, 0.3 + 0.6 * disc], axis=-1)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def clip(comfy_server):
    """The node id of a 5-frame IMAGE batch of _frame(0..4), each from its own PNG via LoadImage."""
    prepare(comfy_server)  # the tiny model files (the VAE)
    graph = {}
    for k in range(5):
        Image.fromarray(_frame(k)).save(comfy_server.input_dir / f"values_{k}.png")
        graph[f"{k + 1}"] = {"class_type": "LoadImage", "inputs": {"image": f"values_{k}.png"}}
    last = ["1", 0]
    for k in range(1, 5):
        graph[f"{k + 10}"] = {"class_type": "ImageBatch", "inputs": {"image1": last, "image2": [f"{k + 1}", 0]}}
        last = [f"{k + 10}", 0]
    return graph, last


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _decoded(path: Path, fmt: str) -> list[np.ndarray]:
    if fmt.startswith("image/"):
        out = []
        with Image.open(path) as im:
            for i in range(im.n_frames):
                im.seek(i)
                out.append(np.asarray(im.convert("RGB")))
        return out
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(buf, np.uint8).reshape(h, w, 3)[:H, :W] for buf in reader]


@pytest.mark.parametrize("pingpong", [False, True])
def test_video_combine_writes_the_frames_it_was_given(comfy_server, clip, pingpong):
    graph, images = clip
    graph = dict(graph)
    for i, fmt in enumerate(MIN_PSNR, start=20):
        graph[str(i)] = {"class_type": "WanVideoCombine", "inputs": {
            "images": images, "frame_rate": 8.0, "loop_count": 0, "format": fmt, "pingpong": pingpong,
            "filename_prefix": f"values/{'pp' if pingpong else 'fw'}_{EXT[fmt]}", "save_output": True}}
    outputs = comfy_server.run(graph, timeout=300)
    given = [_frame(k) for k in range(5)]
    order = [0, 1, 2, 3, 4] + ([3, 2, 1] if pingpong else [])
    for i, fmt in enumerate(MIN_PSNR, start=20):
        [item] = outputs[str(i)]["images"]
        frames = _decoded(comfy_server.output_dir / item["subfolder"] / item["filename"], fmt)
        assert len(frames) == len(order), fmt  # (libwebp merges only equal neighbours; these differ)
        for n, (frame, k) in enumerate(zip(frames, order)):
            scores = [_psnr(frame, g) for g in given]
            assert scores[k] >= MIN_PSNR[fmt], (fmt, n, k, scores)
            assert int(np.argmax(scores)) == k, (fmt, n, k, scores)  # the right frame in the right place


def test_wan_vae_encode_equals_comfyui_vae_encode(comfy_server, clip):
    graph, images = clip
    graph = dict(graph)
    graph["30"] = {"class_type": "WanVAELoader", "inputs": {"vae": VAE, "precision": "fp32"}}
    graph["31"] = {"class_type": "WanVAEEncode", "inputs": {"vae": ["30", 0], "image": images}}
    graph["32"] = {"class_type": "SaveLatent", "inputs": {"samples": ["31", 0], "filename_prefix": "values/ours"}}
    graph["40"] = {"class_type": "VAELoader", "inputs": {"vae_name": VAE}}
    graph["41"] = {"class_type": "VAEEncode", "inputs": {"pixels": images, "vae": ["40", 0]}}
    graph["42"] = {"class_type": "SaveLatent", "inputs": {"samples": ["41", 0], "filename_prefix": "values/comfy"}}
    outputs = comfy_server.run(graph, timeout=300)

    def latent(node: str) -> torch.Tensor:
        [item] = outputs[node]["latents"]
        return load_file(str(comfy_server.output_dir / item["subfolder"] / item["filename"]))["latent_tensor"].float()

    ours, ref = latent("32"), latent("42")
    assert ours.shape == ref.shape == (1, 16, 2, H // 8, W // 8)
    assert ref.abs().max() > 0.1  # a real encoding, not zeros
    err = ((ours - ref).abs().max() / ref.abs().max()).item()
    print(f"Wan VAE Encode vs ComfyUI VAEEncode: max error {err:.2e} of the largest value")
    assert err < 1e-4, err  # both fp32 on this CPU (measured 2.8e-7)
