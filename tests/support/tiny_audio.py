"""Tiny audio encoder files in the published ComfyUI layout (wav2vec2 large/base, whisper large v3
names; no tests here).

The names and shapes are written out by hand from the published layout; tests/models checks them
against ComfyUI's own classes. ComfyUI fixes some sizes (wav2vec2's 512-channel convolutions, its
128-tap/16-group positional conv; whisper's 1500 positions for a 30 s window, 128 mels), so those
stay real and only widths and depths shrink.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from seeded_weights import seeded_weights

WIDTH, LAYERS = 128, 2  # the tiny encoders: hidden states are LAYERS + 1 entries of WIDTH
CONV = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))


def wav2vec2_template(width: int = WIDTH, layers: int = LAYERS, large: bool = True, conv_dim: int = 512,
                      weight_norm: str = "gv") -> dict[str, tuple]:
    """name -> shape of a wav2vec2 encoder; ``large``: layer-norm convs with biases (the large
    English file), else group norm without (chinese-wav2vec2-base). ``weight_norm`` "gv" names the
    positional conv as torch's old weight_norm saved it, "param" as its parametrized form."""
    t: dict[str, tuple] = {}
    for i, (k, _) in enumerate(CONV):
        c_in = 1 if i == 0 else conv_dim
        t[f"feature_extractor.conv_layers.{i}.conv.weight"] = (conv_dim, c_in, k)
        if large:
            t[f"feature_extractor.conv_layers.{i}.conv.bias"] = (conv_dim,)
        if large or i == 0:
            t[f"feature_extractor.conv_layers.{i}.layer_norm.weight"] = (conv_dim,)
            t[f"feature_extractor.conv_layers.{i}.layer_norm.bias"] = (conv_dim,)
    t["feature_projection.layer_norm.weight"] = (conv_dim,)
    t["feature_projection.layer_norm.bias"] = (conv_dim,)
    t["feature_projection.projection.weight"] = (width, conv_dim)
    t["feature_projection.projection.bias"] = (width,)
    t["masked_spec_embed"] = (width,)
    g, v = ("weight_g", "weight_v") if weight_norm == "gv" else ("parametrizations.weight.original0",
                                                                   "parametrizations.weight.original1")
    t["encoder.pos_conv_embed.conv.bias"] = (width,)
    t[f"encoder.pos_conv_embed.conv.{g}"] = (1, 1, 128)
    t[f"encoder.pos_conv_embed.conv.{v}"] = (width, width // 16, 128)
    for i in range(layers):
        p = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[p + f"attention.{proj}.weight"] = (width, width)
            t[p + f"attention.{proj}.bias"] = (width,)
        t[p + "layer_norm.weight"] = t[p + "layer_norm.bias"] = (width,)
        t[p + "feed_forward.intermediate_dense.weight"] = (4 * width, width)
        t[p + "feed_forward.intermediate_dense.bias"] = (4 * width,)
        t[p + "feed_forward.output_dense.weight"] = (width, 4 * width)
        t[p + "feed_forward.output_dense.bias"] = (width,)
        t[p + "final_layer_norm.weight"] = t[p + "final_layer_norm.bias"] = (width,)
    t["encoder.layer_norm.weight"] = t["encoder.layer_norm.bias"] = (width,)
    return t


def whisper_template(width: int = WIDTH, layers: int = LAYERS, mels: int = 128, positions: int = 1500) -> dict[str, tuple]:
    """name -> shape of a whisper encoder under ``encoder.`` (the file adds ``model.``)."""
    t: dict[str, tuple] = {
        "encoder.conv1.weight": (width, mels, 3), "encoder.conv1.bias": (width,),
        "encoder.conv2.weight": (width, width, 3), "encoder.conv2.bias": (width,),
        "encoder.embed_positions.weight": (positions, width),
    }
    for i in range(layers):
        p = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[p + f"self_attn.{proj}.weight"] = (width, width)
            if proj != "k_proj":
                t[p + f"self_attn.{proj}.bias"] = (width,)
        t[p + "self_attn_layer_norm.weight"] = t[p + "self_attn_layer_norm.bias"] = (width,)
        t[p + "fc1.weight"], t[p + "fc1.bias"] = (4 * width, width), (4 * width,)
        t[p + "fc2.weight"], t[p + "fc2.bias"] = (width, 4 * width), (width,)
        t[p + "final_layer_norm.weight"] = t[p + "final_layer_norm.bias"] = (width,)
    t["encoder.layer_norm.weight"] = t["encoder.layer_norm.bias"] = (width,)
    return t


def wav2vec2_state(seed: int = 21, prefix: str = "", **sizes) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in seeded_weights(wav2vec2_template(**sizes), seed).items()}


def whisper_state(seed: int = 22, prefix: str = "model.", decoder: bool = True, **sizes) -> dict[str, torch.Tensor]:
    sd = {prefix + k: v for k, v in seeded_weights(whisper_template(**sizes), seed).items()}
    if decoder:  # the published file is the whole WhisperModel; the decoder is never used
        sd[prefix + "decoder.embed_tokens.weight"] = torch.randn(16, sizes.get("width", 128))
        sd[prefix + "decoder.layer_norm.weight"] = torch.ones(sizes.get("width", 128))
    return sd


def _write(sd: dict, path, dtype=torch.float16) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, str(path))
    return path


def write_wav2vec2(path, seed: int = 21, dtype=torch.float16, **sizes) -> Path:
    return _write(wav2vec2_state(seed, **sizes), path, dtype)


def write_whisper(path, seed: int = 22, dtype=torch.float16, **sizes) -> Path:
    return _write(whisper_state(seed, **sizes), path, dtype)
