"""What a weights file is, from its tensor names and shapes alone (never from its file name).

``identify`` is the one answer, used by every loader's errors, by ``models verify`` and by
``find_components``: the role the file plays (what this pack loads it as, or the foreign family
it belongs to), the variant where the shapes tell it, and a phrase for messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from .dit.shapes import config_from_shapes
from ..errors import WanFileError
from ..weights.checks import shape_of
from ..weights.audio_names import read_layout as audio_encoder_layout
from ..weights.comfy_quant import has_comfy_quant
from ..weights.gguf_text import T5_ARCHITECTURES, hf_name
from ..weights.loader import read_header
from ..weights.names import CLIP_VISION, DIT, UMT5, VAE, strip_prefix

# What this pack loads: "dit", "vae", "text_encoder" (UMT5/T5), "clip_vision", "lora"; families it
# names but does not load: "clip_text", "sd_unet", "sd_vae"; None: nothing this pack knows.
ROLES = ("dit", "vae", "text_encoder", "clip_vision", "lora", "clip_text", "sd_unet", "sd_vae", "audio_encoder")
# released Wan DiT widths -> the size names the catalogue and presets use
DIT_SIZES = {1536: "1_3b", 3072: "5b", 5120: "14b"}

_LORA_RE = re.compile(r"lora_[AB]\b|lora_(down|up)\b|\.lora\.(down|up)\.|^lora_unet_|^lora_te|\.diff(_b)?$")


@dataclass(frozen=True)
class Identity:
    """What a file's tensors say it is. ``variant`` is None when the role is known but not the size:
    dit: a DiT preset name (t2v_1_3b, i2v_14b, wan22_i2v_a14b, ...; both Wan2.2 T2V experts have
    t2v_14b's tensors); vae: wan21 / wan22; text_encoder: umt5_xxl; clip_vision: clip_vision_h;
    lora: the size of the DiT it patches (1_3b, 5b, 14b)."""

    role: str | None
    variant: str | None
    detail: str  # e.g. "a Wan DiT (t2v_1_3b: t2v, dim 1536, 30 layers)"


def identify(tensors: Mapping, metadata: Mapping | None = None) -> Identity:
    """Role, variant and description of a file from ``{name: tensor or shape}`` (tensors may be
    meta or packed; shapes may come from a header) and, for GGUF files, their metadata."""
    shapes = {k: shape_of(v) for k, v in tensors.items()}
    arch = (metadata or {}).get("general.architecture")
    if arch in T5_ARCHITECTURES or any(k.startswith("enc.blk.") for k in shapes):
        shapes = {hf_name(k): v for k, v in shapes.items()}  # llama.cpp's T5 names
    if not shapes:
        return Identity(None, None, "an empty file (no tensors at all)")
    quant = has_comfy_quant(shapes, metadata)
    for reading in (_lora, _dit, _sd_unet, _vae, _sd_vae, _text_encoder, _clip_vision, _clip_text,
                    _audio_encoder):
        who = reading(shapes)
        if who is not None:
            # ComfyUI's per-layer quantized format (its formats are read at load)
            return Identity(who.role, who.variant, f"{who.detail}, in ComfyUI's comfy_quant format") if quant else who
    if arch and arch != "wan":
        return Identity(None, None, f"a GGUF of architecture {arch!r}")
    sample = ", ".join(sorted(shapes)[:3])
    return Identity(None, None, f"no model family this pack knows (tensors such as {sample})")


def identify_file(path) -> Identity:
    """What the file at ``path`` is, from its header alone; WanFileError when the header is
    unreadable or truncated."""
    shapes, metadata = read_header(path)
    return identify(shapes, metadata)


def _has(shapes, *names: str) -> bool:
    """Whether any of ``names`` is a tensor, under whatever wrapper."""
    return any(k == n or k.endswith("." + n) for k in shapes for n in names)


def _lora(shapes) -> Identity | None:
    names = list(shapes)
    if sum(1 for k in names if _LORA_RE.search(k)) * 2 < len(names) and not any(".lora_" in k for k in names):
        return None
    width = next((v[0] for k, v in shapes.items() if k.endswith(("lora_B.weight", "lora_up.weight"))
                  and v and v[0] in DIT_SIZES), None)
    return Identity("lora", DIT_SIZES.get(width), f"a LoRA{f' for a Wan DiT of dim {width}' if width else ''}")


def _dit(shapes) -> Identity | None:
    s = strip_prefix(shapes, DIT)
    official = ("head.modulation", "blocks.0.self_attn.q.weight", "blocks.0.cross_attn.k.weight")
    diffusers = ("condition_embedder.time_proj.weight", "condition_embedder.text_embedder.linear_1.weight")
    if not any(n in s for n in official + diffusers):
        return None
    try:
        cfg = config_from_shapes(s)
    except WanFileError as exc:
        return Identity("dit", None, f"a Wan DiT that cannot be used ({exc.problem})")
    sizes = f"{cfg.model_type}, dim {cfg.dim}, {cfg.num_layers} layers"
    if cfg.variant.startswith("custom_"):
        return Identity("dit", None, f"a Wan DiT ({sizes}) of no released size")
    return Identity("dit", cfg.variant, f"a Wan DiT ({cfg.variant}: {sizes})")


def _sd_unet(shapes) -> Identity | None:
    if _has(shapes, "input_blocks.0.0.weight", "time_embed.0.weight") or (
            _has(shapes, "conv_in.weight") and _has(shapes, "time_embedding.linear_1.weight")):
        return Identity("sd_unet", None, "a Stable Diffusion UNet")
    return None


def _vae(shapes) -> Identity | None:
    s = strip_prefix(shapes, VAE)
    # Wan's causal VAE (official and diffusers names) uses RMS norms with .gamma
    if not (any(k.startswith(("encoder.", "decoder.")) for k in s) and any(k.endswith(".gamma") for k in s)):
        return None
    z = (s.get("conv2.weight") or s.get("post_quant_conv.weight") or (0,))[0]
    rgb = (s.get("encoder.conv1.weight") or s.get("encoder.conv_in.weight") or (0, 3))[1]
    if z == 48 or rgb == 12:  # Wan 2.2 patchifies 2x2 pixels into 12 input channels
        return Identity("vae", "wan22", f"a Wan 2.2 VAE ({z} latent channels)")
    if z == 16:
        return Identity("vae", "wan21", "a Wan 2.1 VAE (16 latent channels)")
    return Identity("vae", None, f"a Wan-style VAE with {z} latent channels")


def _sd_vae(shapes) -> Identity | None:
    return Identity("sd_vae", None, "a Stable Diffusion VAE") if _has(shapes, "decoder.conv_in.weight") else None


def _text_encoder(shapes) -> Identity | None:
    s = strip_prefix(shapes, UMT5)
    names = list(s)
    if any(k.startswith("encoder.block.") for k in names) and _has(s, "shared.weight", "encoder.embed_tokens.weight"):
        rx = re.compile(r"^encoder\.block\.(\d+)\.")
        bias = "layer.0.SelfAttention.relative_attention_bias.weight"
        width = (s.get("shared.weight") or s.get("encoder.embed_tokens.weight") or (0,))[-1]
    elif "token_embedding.weight" in s and any(k.startswith("blocks.0.attn.q.") for k in names):
        rx = re.compile(r"^blocks\.(\d+)\.")  # Wan's official UMT5 names
        bias = "pos_embedding.embedding.weight"
        width = s["token_embedding.weight"][-1]
    else:
        return None
    blocks = {m.group(1) for k in names if (m := rx.match(k))}
    with_bias = {m.group(1) for k in names if (m := rx.match(k)) and k.endswith(bias)}
    sizes = f"d_model {width}, {len(blocks)} block{'s' if len(blocks) != 1 else ''}"
    if len(blocks) > 1 and with_bias == blocks:
        return Identity("text_encoder", "umt5_xxl", f"a UMT5 text encoder ({sizes})")
    if len(blocks) > 1 and with_bias:
        # T5 v1.1 (Flux/SD3's t5xxl) has one position table in block 0; UMT5 has one per block
        return Identity("text_encoder", None, f"a T5 v1.1 text encoder ({sizes}), not Wan's UMT5")
    return Identity("text_encoder", None, f"a UMT5 text encoder ({sizes})")


def _clip_vision(shapes) -> Identity | None:
    s = strip_prefix(shapes, CLIP_VISION)
    patch = s.get("vision_model.embeddings.patch_embedding.weight")
    if patch is not None:
        width = patch[0]
        return Identity("clip_vision", "clip_vision_h" if width == 1280 else None,
                        f"a CLIP vision encoder (width {width})")
    if any(k.startswith(("vision_model.", "visual_projection.")) for k in s):
        return Identity("clip_vision", None, "a CLIP vision encoder")
    if any(k.startswith("visual.") for k in s):
        return Identity("clip_vision", None, "a CLIP vision encoder in open_clip's layout")
    return None


def _clip_text(shapes) -> Identity | None:
    if any(k.startswith(("text_model.", "resblocks.")) or ".text_model." in k for k in shapes) or _has(
            shapes, "text_projection.weight"):
        return Identity("clip_text", None, "a CLIP text encoder")
    return None


def _audio_encoder(shapes) -> Identity | None:
    layout = audio_encoder_layout(shapes)
    return None if layout is None else Identity("audio_encoder", layout.variant, layout.detail)
