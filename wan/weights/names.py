"""Every checkpoint name fact kept once: the wrappers each model family is saved under, and the
diffusers <-> official renaming of the Wan DiT.

Wrappers in circulation: a Wan DiT bare, under ComfyUI's ``model.diffusion_model.`` (whole
checkpoints) or ``diffusion_model.``, or under ``transformer.`` (diffusers pipelines); VAEs,
text encoders and CLIP vision encoders under the wrappers of the tools that re-save them; LoRAs
under the trainers' prefixes. A family's wrapper is found where one of the family's own first
names (its roots) follows it, so ``model.`` around a VAE is never mistaken for the ``model.``
that starts ``model.diffusion_model.``.

Diffusers stores every DiT tensor under another name but with the same shape and never fused in
its checkpoints, so mapping is renaming only: tensors are never copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Wrapping:
    """How one model family's checkpoints nest its own names."""

    family: str
    roots: tuple[str, ...]  # how the family's own (unwrapped) names start, official and diffusers
    prefixes: tuple[str, ...]  # wrappers in circulation, tried in this order


DIT = Wrapping(
    "Wan DiT",
    roots=("patch_embedding.", "text_embedding.", "time_embedding.", "time_projection.", "blocks.", "head.",
           "img_emb.", "vace_", "condition_embedder.", "proj_out.", "scale_shift_table"),
    prefixes=("model.diffusion_model.", "diffusion_model.", "transformer."),
)
VAE = Wrapping(
    "Wan VAE",
    roots=("encoder.", "decoder.", "conv1.", "conv2.", "quant_conv.", "post_quant_conv."),
    prefixes=("first_stage_model.", "vae.", "model.", "autoencoder."),
)
UMT5 = Wrapping(
    "UMT5 text encoder",
    roots=("shared.", "encoder.", "token_embedding.", "blocks."),
    prefixes=("text_encoders.umt5xxl.transformer.", "umt5xxl.transformer.", "transformer.", "model."),
)
CLIP_VISION = Wrapping(
    "CLIP vision encoder",
    roots=("vision_model.", "visual_projection."),
    prefixes=("clip_vision.", "model.", "visual."),
)

# LoRA module names: dotted ones may carry any DiT wrapper or a trainer's (PEFT, old UNet
# trainers); underscore-flattened ones (kohya, musubi, OneTrainer, SimpleTuner) one of these.
# Wan-Fun files write a double underscore after lora_unet.
LORA_DOTTED_PREFIXES: tuple[str, ...] = DIT.prefixes + ("base_model.model.", "unet.", "model.")
LORA_FLAT_PREFIXES: tuple[str, ...] = ("lora_unet__", "lora_unet_", "lora_transformer_", "lycoris_")


def find_prefix(keys, wrapping: Wrapping) -> str:
    """The wrapper ``keys`` hold the family's tensors under: "" when they are bare (or unknown)."""
    keys = list(keys)
    if any(k.startswith(wrapping.roots) for k in keys):
        return ""
    for prefix in wrapping.prefixes:
        roots = tuple(prefix + r for r in wrapping.roots)
        if any(k.startswith(roots) for k in keys):
            return prefix
    return ""


def strip_prefix(state_dict: dict, wrapping: Wrapping) -> dict:
    """The family's tensors under their own names. Under a wrapper, keys outside it (the other
    models of a whole checkpoint) are left out; bare, every key is kept. Values are not copied."""
    prefix = find_prefix(state_dict, wrapping)
    if not prefix:
        return dict(state_dict)
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


# diffusers name -> official name, for names outside the blocks.
_DIFFUSERS_TOP = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
    "condition_embedder.image_embedder.pos_embed": "img_emb.emb_pos",
    "proj_out": "head.head",
    "scale_shift_table": "head.modulation",
}

# diffusers module inside a block -> official module (same for blocks.N and vace_blocks.N).
_DIFFUSERS_BLOCK = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn1.norm_q": "self_attn.norm_q",
    "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k",
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    # diffusers calls the affine cross-attention norm norm2; the official code calls it norm3.
    "norm2": "norm3",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
    "scale_shift_table": "modulation",
    "proj_in": "before_proj",
    "proj_out": "after_proj",
}

_BLOCK_RE = re.compile(r"^((?:vace_)?blocks\.\d+)\.(.+?)(?:\.(weight|bias))?$")
_TOP_RE = re.compile(r"^(.+?)(?:\.(weight|bias))?$")

# Present only in diffusers files (and unused by the network: diffusers ignores it on load too).
_DIFFUSERS_IGNORED = re.compile(r"^blocks\.\d+\.attn2\.norm_added_q\.(weight|bias)$")


def is_diffusers_dit(keys) -> bool:
    keys = set(keys)
    return "condition_embedder.time_proj.weight" in keys or "blocks.0.attn1.to_q.weight" in keys


_OFFICIAL_TOP = {official: diffusers for diffusers, official in _DIFFUSERS_TOP.items()}
_OFFICIAL_BLOCK = {official: diffusers for diffusers, official in _DIFFUSERS_BLOCK.items()}


def _rename(name: str, top: dict[str, str], block: dict[str, str]) -> str:
    m = _BLOCK_RE.match(name)
    if m:
        prefix, module, leaf = m.groups()
        mapped = block.get(module)
        return name if mapped is None else f"{prefix}.{mapped}" + (f".{leaf}" if leaf else "")
    module, leaf = _TOP_RE.match(name).groups()
    mapped = top.get(module)
    return name if mapped is None else mapped + (f".{leaf}" if leaf else "")


def diffusers_to_official_name(name: str) -> str:
    """One diffusers Wan parameter or module name -> its official name (unknown names pass unchanged)."""
    return _rename(name, _DIFFUSERS_TOP, _DIFFUSERS_BLOCK)


def official_to_diffusers_name(name: str) -> str:
    """One official Wan parameter or module name -> its diffusers (WanTransformer3DModel /
    WanVACETransformer3DModel) name: the same table read the other way."""
    return _rename(name, _OFFICIAL_TOP, _OFFICIAL_BLOCK)


def dit_to_official(state_dict: dict) -> dict:
    """Any supported Wan DiT layout -> official names. Values are the same objects (no copies)."""
    sd = strip_prefix(state_dict, DIT)
    if not is_diffusers_dit(sd):
        return sd
    return {diffusers_to_official_name(k): v for k, v in sd.items() if not _DIFFUSERS_IGNORED.match(k)}
