"""The bundled API workflows (workflows/*.api.json) at test size, for the server tests (no tests here).

``shrink`` keeps a graph as shipped except for sizes (32x32, 5 frames; 13 with context windows),
2 steps and fp32 weights (bf16 convolutions are slow on a CPU), with output names unique to a tag.
The native graphs shrink the same way (their KSamplerAdvanced split moves inside the 2 steps).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SIZE, FRAMES, STEPS = 32, 5, 2
LONG_FRAMES = 13  # 4 latent frames: two context windows of 2 with 1 shared


def load_api(name: str) -> dict:
    return json.loads((REPO / "workflows" / f"{name}.api.json").read_text())


def _scaled_tracks(text: str, sx: float, sy: float) -> str:
    def scale(item):
        if isinstance(item, list):
            return [scale(x) for x in item]
        return {**item, "x": item["x"] * sx, "y": item["y"] * sy}

    return json.dumps(scale(json.loads(text.replace("'", '"'))))


def shrink(graph: dict, tag: str) -> dict:
    """The same graph at test size, fp32, with output names unique to ``tag``."""
    g = copy.deepcopy(graph)
    windows = any(n["class_type"] == "WanContextOptions" for n in g.values())
    for node in g.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind in ("WanEmptyEmbeds", "WanImageToVideoEncode", "WanVACEEncode", "WanAnimateEmbeds", "WanFunInpaintEmbeds",
                    "WanFunControlEmbeds", "WanCameraEmbeds", "WanPhantomEmbeds", "WanTrackEmbeds", "WanSoundEmbeds",
                    "WanHuMoEmbeds"):
            if kind == "WanTrackEmbeds":  # the tracks' pixels follow the frame, so the patch still runs
                inputs["tracks"] = _scaled_tracks(inputs["tracks"], SIZE / inputs["width"], SIZE / inputs["height"])
            inputs.update(width=SIZE, height=SIZE)
            if inputs["num_frames"] > 1:
                inputs["num_frames"] = LONG_FRAMES if windows else FRAMES
        elif kind in ("WanVaceToVideo", "WanImageToVideo", "WanFirstLastFrameToVideo", "Wan22ImageToVideoLatent",
                      "EmptyHunyuanLatentVideo", "WanCameraEmbedding"):
            inputs.update(width=SIZE, height=SIZE)
            if inputs["length"] > 1:
                inputs["length"] = FRAMES
        elif kind in ("WanSampler", "KSampler"):
            inputs["steps"] = STEPS
        elif kind == "KSamplerAdvanced":
            inputs["steps"] = STEPS
            if inputs["start_at_step"] > 0:
                inputs["start_at_step"] = STEPS // 2
            if inputs["end_at_step"] < 10000:
                inputs["end_at_step"] = STEPS // 2
        elif kind == "WanExpertOptions" and inputs["switch_step"] > 0:
            inputs["switch_step"] = STEPS // 2  # the experts still split, inside the shorter run
        elif kind == "RepeatImageBatch":  # a control video as long as the shrunk video
            inputs["amount"] = FRAMES
        elif kind == "WanContextOptions":
            inputs.update(context_frames=5, context_overlap=1, context_stride=4)
        elif kind == "WanModelLoader":
            inputs["base_precision"] = "fp32"
        elif kind in ("WanTextEncoderLoader", "WanVAELoader", "WanCLIPVisionLoader"):
            inputs["precision"] = "fp32"
        if "filename_prefix" in inputs:
            inputs["filename_prefix"] = f"test/{tag}"
    return g
