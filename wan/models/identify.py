"""What a weights file is, from its tensor names and shapes alone (never from its file name).

``guess_kind`` names the model family of any key set, so every loader can say what a wrong file
looks like; ``detect_dit`` reads a Wan DiT's configuration from its shapes.
"""

from __future__ import annotations

import math
import re

from .dit.config import DIT_PRESETS, DiTConfig, same_network
from ..errors import WanFileError
from ..weights.names import dit_to_official

KIND_DESCRIPTIONS = {
    "wan_dit": "a Wan diffusion model (DiT)",
    "wan_vae": "a Wan VAE",
    "umt5": "a UMT5/T5 text encoder",
    "clip_vision": "a CLIP vision encoder",
    "clip_text": "a CLIP text encoder",
    "sd_unet": "a Stable Diffusion UNet",
    "sd_vae": "a Stable Diffusion VAE",
    "lora": "a LoRA",
    "unknown": "no model family this pack knows",
}

_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "transformer.")
_LORA_RE = re.compile(r"lora_[AB]\b|lora_(down|up)\b|\.lora\.(down|up)\.|^lora_unet_|^lora_te|\.diff(_b)?$")


def _stripped(keys) -> set[str]:
    out = set()
    for k in keys:
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        out.add(k)
    return out


def guess_kind(keys) -> str:
    """Model family of a key set: "wan_dit", "wan_vae", "umt5", "clip_vision", "clip_text",
    "sd_unet", "sd_vae", "lora" or "unknown". Works on any layout this pack reads."""
    raw = list(keys)
    if not raw:
        return "unknown"
    if sum(1 for k in raw if _LORA_RE.search(k)) * 2 >= len(raw) or any(".lora_" in k for k in raw):
        return "lora"
    ks = _stripped(raw)

    def has(*names):
        return any(n in ks for n in names)

    def has_prefix(*prefixes):
        return any(k.startswith(prefixes) for k in ks)

    if has("head.modulation", "blocks.0.self_attn.q.weight", "blocks.0.cross_attn.k.weight") or has(
        "condition_embedder.time_proj.weight", "condition_embedder.text_embedder.linear_1.weight"
    ):
        return "wan_dit"
    if has("input_blocks.0.0.weight", "time_embed.0.weight") or (
        has("conv_in.weight") and has("time_embedding.linear_1.weight")
    ):
        return "sd_unet"
    if has_prefix("encoder.", "decoder.") and any(k.endswith(".gamma") for k in ks):
        return "wan_vae"  # Wan's causal VAE (official and diffusers names) uses RMS norms with .gamma
    if has("decoder.conv_in.weight", "first_stage_model.decoder.conv_in.weight"):
        return "sd_vae"
    if has_prefix("encoder.block.0.layer.0.SelfAttention.") or has("token_embedding.weight") and has_prefix(
        "blocks.0.attn.q."
    ):
        return "umt5"
    if has_prefix("vision_model.", "visual.") or has("visual_projection.weight"):
        return "clip_vision"
    if has_prefix("text_model.", "resblocks.") or has("text_projection.weight"):
        return "clip_text"
    return "unknown"


def describe(keys) -> str:
    """Human phrase for what a key set looks like, e.g. "a Stable Diffusion UNet"."""
    keys = list(keys)
    kind = guess_kind(keys)
    if kind == "unknown":
        sample = ", ".join(sorted(keys)[:3]) if keys else "no tensors at all"
        return f"{KIND_DESCRIPTIONS[kind]} (tensors such as {sample})"
    return KIND_DESCRIPTIONS[kind]


_REQUIRED = (
    "patch_embedding.weight",
    "text_embedding.0.weight",
    "time_embedding.0.weight",
    "time_projection.1.weight",
    "blocks.0.ffn.0.weight",
    "head.head.weight",
    "head.modulation",
)


def _count(keys, prefix: str) -> int:
    ids = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def detect_dit(state_dict: dict, path=None) -> DiTConfig:
    """The configuration of a Wan DiT state dict (any supported layout; packed tensors allowed).

    The variant name is the matching preset's; Wan2.1 T2V 14B and each Wan2.2 T2V A14B expert
    have identical tensors, so both come back as "t2v_14b". Shapes without a preset give a
    config named "custom_<model_type>". Raises WanFileError for anything else.
    """
    if not state_dict:
        raise WanFileError(path, "holds no tensors: empty or truncated file")
    kind = guess_kind(state_dict.keys())
    if kind != "wan_dit":
        raise WanFileError(path, f"not a Wan diffusion model: it looks like {describe(state_dict.keys())}")
    sd = dit_to_official(state_dict)
    missing = [k for k in _REQUIRED if k not in sd]
    if missing:
        hint = ""
        if "patch_embedding.weight" in missing:
            hint = " (some older GGUF conversions keep the 5-D patch_embedding in a separate file)"
        raise WanFileError(path, f"incomplete Wan DiT: missing {', '.join(missing)}{hint}; truncated or partial file?")

    def shape(name):
        return tuple(sd[name].shape)

    pe = shape("patch_embedding.weight")
    if len(pe) != 5:
        raise WanFileError(path, f"patch_embedding.weight has shape {pe}, expected a 5-D Conv3d weight")
    dim, in_dim, patch = pe[0], pe[1], pe[2:]
    head = shape("head.head.weight")
    if head[0] % math.prod(patch):
        raise WanFileError(path, f"head.head.weight has shape {head}, not a multiple of the patch {patch}")
    out_dim = head[0] // math.prod(patch)
    keys = sd.keys()
    num_layers = _count(keys, "blocks.")
    fields = dict(
        in_dim=in_dim, out_dim=out_dim, dim=dim, ffn_dim=shape("blocks.0.ffn.0.weight")[0],
        # Every released Wan DiT uses 128-channel heads (ComfyUI assumes the same).
        num_heads=max(1, dim // 128), num_layers=num_layers, freq_dim=shape("time_embedding.0.weight")[1],
        text_dim=shape("text_embedding.0.weight")[1], patch_size=tuple(patch),
    )
    if "img_emb.proj.1.weight" in sd:
        fields.update(has_image_emb=True, img_dim=shape("img_emb.proj.1.weight")[1])
        if "img_emb.emb_pos" in sd:
            fields.update(has_flf_pos_emb=True, flf_pos_tokens=shape("img_emb.emb_pos")[1])
    if "vace_patch_embedding.weight" in sd:
        n = _count(keys, "vace_blocks.")
        if not 0 < n <= num_layers:
            raise WanFileError(path, f"VACE patch embedding without usable VACE blocks ({n} for {num_layers} blocks)")
        fields.update(vace_in_dim=shape("vace_patch_embedding.weight")[1],
                      vace_layers=tuple(range(0, num_layers, num_layers // n))[:n])
        model_type = "vace"
    elif fields.get("has_flf_pos_emb"):
        model_type = "flf2v"
    elif in_dim > out_dim:
        model_type = "i2v"
    elif out_dim == 48:
        model_type = "ti2v"
    else:
        model_type = "t2v"
    try:
        cfg = DiTConfig(variant=f"custom_{model_type}", model_type=model_type, **fields)
    except ValueError as err:
        raise WanFileError(path, f"Wan DiT with inconsistent shapes: {err}") from None
    for preset in DIT_PRESETS.values():
        if same_network(preset, cfg):
            return preset
    return cfg
