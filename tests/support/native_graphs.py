"""Native ComfyUI graphs on our MODEL loader beside the same graphs on ComfyUI's UNETLoader, for the
server tests (no tests here).

A graph builder takes a ``loader(role) -> node`` so one builder makes both sides: ``ours`` loads the
file with "Wan Diffusion Model Loader (MODEL)" and UMT5 with "Wan UMT5 Loader (CLIP)";
``comfy_unet`` loads the DiT's dequantized fp32 twin with ComfyUI's UNETLoader and UMT5 with
ComfyUI's own Wan text encoder (``REFERENCE_CLIP_LOADER``). Every other node is the same on both
sides; ``loader.clip(name)`` is the side's CLIP loader.

ComfyUI's CLIPLoader builds UMT5-XXL from a fixed config, so no tiny file loads through it: the
reference side's WanTestTinyUMT5Loader (tests/server/wan_test_helpers.py) is ComfyUI's CLIPLoader
path ("wan": its T5 and tokenizer classes) with the config read from the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

REFERENCE_CLIP_LOADER = "WanTestTinyUMT5Loader"
TOLERANCE = 1e-3  # of max|latent|: the bar for a native graph on our loader vs ComfyUI's


def clip_loader(name: str) -> dict:
    """Our "Wan UMT5 Loader (CLIP)" on ``name``."""
    return {"class_type": "WanUMT5Loader", "inputs": {"clip_name": name, "device": "default"}}


def reference_clip_loader(name: str) -> dict:
    """ComfyUI's own Wan text encoder on ``name`` (sized from the file)."""
    return {"class_type": REFERENCE_CLIP_LOADER, "inputs": {"clip_name": name}}


def ours(files: dict):
    """role -> our MODEL loader on ``files[role]`` (its packed/fp8/fp16 file); .clip: our CLIP loader."""
    def loader(role: str) -> dict:
        return {"class_type": "WanDiffusionModelLoader",
                "inputs": {"unet_name": Path(files[role]).name, "compute_dtype": "default", "quantization": "disabled"}}
    loader.clip = clip_loader
    return loader


def comfy_unet(twins: dict):
    """role -> ComfyUI's UNETLoader on the fp32 twin ``twins[role]`` (the dequantized weights);
    .clip: ComfyUI's own Wan text encoder."""
    def loader(role: str) -> dict:
        return {"class_type": "UNETLoader", "inputs": {"unet_name": Path(twins[role]).name, "weight_dtype": "default"}}
    loader.clip = reference_clip_loader
    return loader


def outputs_of(server, graph: dict, timeout: float = 300) -> dict:
    """node id -> the SaveLatent tensor or the SaveImage frames (uint8, N x H x W x 3) it wrote."""
    if getattr(server, "version", "0.3.75") != "0.3.75":
        for node in graph.values():  # 0.8.0's context-window nodes gained a required input
            if node["class_type"] in ("WanContextWindowsManual", "ContextWindowsManual"):
                node["inputs"].setdefault("freenoise", False)
    outputs = server.run(graph, timeout=timeout)
    # ComfyUI runs the outputs that pass validation and drops the others: every saver must be there
    savers = {nid for nid, node in graph.items() if node["class_type"] in ("SaveLatent", "SaveImage")}
    assert savers <= set(outputs), (sorted(savers - set(outputs)), server.log_tail(30))
    out = {}
    for nid, entry in outputs.items():
        if "latents" in entry:
            (f,) = entry["latents"]
            out[nid] = load_file(str(server.output_dir / f["subfolder"] / f["filename"]))["latent_tensor"]
        elif "images" in entry:
            frames = []
            for f in entry["images"]:
                folder = server.output_dir if f["type"] == "output" else server.temp_dir
                with Image.open(folder / f["subfolder"] / f["filename"]) as im:
                    frames.append(np.asarray(im.convert("RGB")))
            out[nid] = np.stack(frames)
    return out


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a - b| / max|b|."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item() / b.float().abs().max().item()


def compare(ours_out: dict, ref_out: dict, label: str) -> dict[str, float]:
    """Every output of both runs: latents within TOLERANCE, decoded frames within one level of 255
    (an 8-bit PNG of nearly equal pixels) and not blank. Returns node id -> latent figure."""
    assert ours_out.keys() == ref_out.keys() and ours_out, (label, ours_out.keys(), ref_out.keys())
    figures = {}
    for nid, ref in ref_out.items():
        mine = ours_out[nid]
        if isinstance(ref, torch.Tensor):
            figures[nid] = relative_error(mine, ref)
            assert figures[nid] <= TOLERANCE, (label, nid, figures[nid])
        else:
            assert mine.shape == ref.shape, (label, nid, mine.shape, ref.shape)
            assert np.abs(mine.astype(int) - ref.astype(int)).max() <= 1, (label, nid)
            assert ref.std() > 0, (label, nid)
    print(f"\n{label}: max|ours - ComfyUI's| / max|latent| per SaveLatent: "
          + ", ".join(f"{k} {v:.2e}" for k, v in sorted(figures.items())))
    return figures


def save_latent(samples: list, tag: str) -> dict:
    return {"class_type": "SaveLatent", "inputs": {"samples": samples, "filename_prefix": f"test/{tag}"}}


def save_image(images: list, tag: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": f"test/{tag}"}}
