"""The published audio encoders' tensor names, and what their shapes say about the network.

ComfyUI's audio_encoders folder holds wav2vec2 (Comfy-Org's ``wav2vec2_large_english_fp16``, the
chinese-wav2vec2-base variant; names as transformers' ``Wav2Vec2Model``, sometimes under
``wav2vec2.``) and Whisper large v3 (``whisper_large_v3_fp16``: transformers' ``WhisperModel``
names under ``model.``, of which only the encoder is used). This module is the one key table
between those files and the transformers modules ``wan.models.audio`` builds, and the shape
reading that ``wan.models.identify`` and the loader share. Pure names and shapes: no torch models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WAV2VEC2_PREFIX = "wav2vec2."
WHISPER_PREFIX = "model."
WHISPER_ENCODER = "encoder."

# file name -> transformers name. torch's old weight_norm saved g/v; its parametrized form (what
# transformers builds now) names them original0/original1.
_POS_CONV = "encoder.pos_conv_embed.conv."
WAV2VEC2_RENAMES = {
    _POS_CONV + "weight_g": _POS_CONV + "parametrizations.weight.original0",
    _POS_CONV + "weight_v": _POS_CONV + "parametrizations.weight.original1",
}
# Heads and pretraining parts some published files keep; the encoder never uses them (ComfyUI
# loads non-strictly and ignores them the same way).
WAV2VEC2_UNUSED = ("lm_head.", "quantizer.", "project_q.", "project_hid.", "adapter.")
WHISPER_UNUSED = ("decoder.", "proj_out.")
# Present in the model but never used at inference (the spec-augment mask vector): zeros if absent.
WAV2VEC2_OPTIONAL = ("masked_spec_embed",)

# Both families use 64-wide attention heads at every published size (large 1024/16, base 768/12,
# whisper 1280/20); the files carry no head count.
HEAD_DIM = 64

_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.")


@dataclass(frozen=True)
class AudioEncoderLayout:
    """What a file's shapes say: ``kind`` "wav2vec2" or "whisper"; ``variant`` wav2vec2_large,
    wav2vec2_base, whisper_large_v3 or None (another size); the sizes transformers' config needs."""

    kind: str
    variant: str | None
    prefix: str  # the wrapper the file keeps the names under
    width: int
    layers: int
    ffn: int
    heads: int
    extra: dict  # per kind: wav2vec2 conv/pos-conv settings, whisper mels and positions

    @property
    def detail(self) -> str:
        name = self.variant or f"{self.kind} of no published size"
        return f"an audio encoder ({name}: width {self.width}, {self.layers} layers)"


def _layers(names) -> int:
    return len({m.group(1) for k in names if (m := _LAYER.match(k))})


def _strip(shapes: dict, prefix: str) -> dict:
    if prefix and any(k.startswith(prefix) for k in shapes):
        return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    return dict(shapes)


def _prefix(shapes: dict, prefix: str) -> str:
    return prefix if any(k.startswith(prefix) for k in shapes) else ""


def read_layout(shapes: dict) -> AudioEncoderLayout | None:
    """The layout of ``{name: shape}``, or None when it is no audio encoder this pack knows."""
    s = _strip(shapes, WAV2VEC2_PREFIX)
    if "encoder.layer_norm.weight" in s and "feature_extractor.conv_layers.0.conv.weight" in s:
        width = s["encoder.layer_norm.weight"][0]
        layer_norm_convs = "feature_extractor.conv_layers.1.layer_norm.weight" in s
        pos = s.get(_POS_CONV + "weight_v") or s.get(_POS_CONV + "parametrizations.weight.original1") or (width, 1, 1)
        ffn = (s.get("encoder.layers.0.feed_forward.intermediate_dense.weight") or (4 * width,))[0]
        extra = {
            # ComfyUI ties all four to the size (large: layer-norm convs with bias, pre-norm
            # transformer, normalised input; base: group norm, post-norm, raw input); the conv
            # norm is what the file shows, so the others follow it.
            "conv_norm": "layer" if layer_norm_convs else "group",
            # the first conv of ComfyUI's large layout always has a bias; the rest say
            "conv_bias": "feature_extractor.conv_layers.1.conv.bias" in s,
            "stable_layer_norm": layer_norm_convs,
            "normalize_input": layer_norm_convs,
            "conv_dim": s["feature_extractor.conv_layers.0.conv.weight"][0],
            "conv_layers": len({k.split(".")[2] for k in s if k.startswith("feature_extractor.conv_layers.")}),
            "pos_kernel": pos[2] if len(pos) == 3 else 128,
            "pos_groups": max(1, width // pos[1]) if len(pos) == 3 else 16,
        }
        variant = {(1024, True): "wav2vec2_large", (768, False): "wav2vec2_base"}.get((width, layer_norm_convs))
        return AudioEncoderLayout("wav2vec2", variant, _prefix(shapes, WAV2VEC2_PREFIX), width, _layers(s), ffn,
                                  max(1, width // HEAD_DIM), extra)
    prefix = WHISPER_PREFIX if _prefix(shapes, WHISPER_PREFIX + WHISPER_ENCODER) else ""
    s = _strip(shapes, prefix + WHISPER_ENCODER)
    if "embed_positions.weight" in s and "conv1.weight" in s and any(k.startswith("layers.") for k in s):
        width, mels = s["conv1.weight"][0], s["conv1.weight"][1]
        layers = len({k.split(".")[1] for k in s if k.startswith("layers.")})
        ffn = (s.get("layers.0.fc1.weight") or (4 * width,))[0]
        extra = {"mels": mels, "positions": s["embed_positions.weight"][0]}
        large_v3 = (width, layers, mels) == (1280, 32, 128)
        return AudioEncoderLayout("whisper", "whisper_large_v3" if large_v3 else None, prefix, width, layers, ffn,
                                  max(1, width // HEAD_DIM), extra)
    return None


def to_transformers(layout: AudioEncoderLayout, state_dict: dict) -> dict:
    """The file's tensors under the names of the transformers module ``wan.models.audio`` builds
    (``Wav2Vec2Model``, or ``WhisperEncoder`` for whisper); unused heads and the decoder are left out."""
    if layout.kind == "wav2vec2":
        sd = _strip(state_dict, layout.prefix)
        return {WAV2VEC2_RENAMES.get(k, k): v for k, v in sd.items() if not k.startswith(WAV2VEC2_UNUSED)}
    sd = _strip(state_dict, layout.prefix)
    return {k[len(WHISPER_ENCODER):]: v for k, v in sd.items()
            if k.startswith(WHISPER_ENCODER) and not k.startswith(WHISPER_UNUSED)}
