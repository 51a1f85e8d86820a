"""Which Wan model a LoRA was made for, read from the shapes of its patches, in plain words.

A LoRA's layer names are the same on every Wan DiT, so when some of its patches do not fit a model
the reason is in the shapes: another width (1.3B dim 1536, 5B dim 3072, 14B dim 5120), another
patch-embedding input (16 latent channels: text-to-video; 36: image-to-video; 48: TI2V 5B), the
CLIP image path (k_img / v_img / norm_k_img / img_emb) of a Wan 2.1 image-to-video model, which
Wan 2.2 A14B and every text-to-video model lack, or more blocks than the model has. ``notes``
turns each such finding into one sentence for the match report, the warning and the no-match
error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Width -> the size it is published as (every Wan DiT of one width has one size).
SIZES = {1536: "1.3B", 3072: "5B", 5120: "14B"}
# Input channels of the patch embedding -> the kind of model that takes them.
INPUTS = {16: "text-to-video", 36: "image-to-video", 48: "Wan2.2 TI2V 5B"}
# Layer names of the CLIP image path (Wan 2.1 I2V / FLF2V only).
IMAGE_PATH = ("k_img", "v_img", "norm_k_img", "img_emb")

_BLOCK = re.compile(r"(?:^|[._])blocks[._](\d+)(?:[._]|$)")
_ATTN_WEIGHT = re.compile(r"^blocks\.\d+\.(?:self_attn|cross_attn)\.[qkvo]\.weight$")


@dataclass(frozen=True)
class Placement:
    """Where one patch went: its name as written, the model parameter its name resolved to (None:
    no such layer) and the shape of the weight the patch would produce."""

    raw: str
    target: str | None
    shape: tuple[int, ...]
    fits: bool


def width_name(dim: int) -> str:
    size = SIZES.get(dim)
    return f"dim-{dim} ({size})" if size else f"dim-{dim}"


def input_name(channels: int) -> str:
    kind = INPUTS.get(channels)
    return f"{channels} latent channels ({kind})" if kind else f"{channels} latent channels"


def block_index(raw: str) -> int | None:
    hit = _BLOCK.search(raw)
    return int(hit.group(1)) if hit else None


def _model_width(params) -> int | None:
    for name, shape in params.items():
        if shape and _ATTN_WEIGHT.match(name):
            return int(shape[0])
    return None


def _model_blocks(params) -> int:
    found = [block_index(n) for n in params]
    return 1 + max((i for i in found if i is not None), default=-1)


def notes(placements: list[Placement], params: dict[str, tuple[int, ...] | None]) -> list[str]:
    """Plain sentences on why patches do not fit ``params`` (official name -> shape); [] when all do."""
    out: list[str] = []
    misfit = [p for p in placements if p.target is not None and not p.fits]
    widths = {p.shape[0] for p in misfit if _ATTN_WEIGHT.match(p.target)}
    model_width = _model_width(params)
    if widths and model_width is not None:
        lora_width = sorted(widths)[0]
        out.append(f"this LoRA is for a {width_name(lora_width)} Wan model; the model is {width_name(model_width)}")
    for p in misfit:
        model_shape = params.get(p.target)
        if p.target == "patch_embedding.weight" and model_shape and len(p.shape) > 1 and not widths:
            out.append(f"this LoRA's patch embedding takes {input_name(p.shape[1])}; the model takes "
                       f"{input_name(model_shape[1])}, so that patch is not applied (the rest is)")
    unplaced = [p for p in placements if p.target is None]
    image = [p for p in unplaced if any(m in p.raw for m in IMAGE_PATH)]
    if image and not any(m in n for n in params for m in IMAGE_PATH):
        out.append(f"{len(image)} patches are for the CLIP image path (k_img, v_img, norm_k_img, img_emb) of a "
                   "Wan 2.1 image-to-video model; this model has none (Wan 2.2 A14B and text-to-video models "
                   "take no CLIP image), so they are not applied (the rest is)")
    blocks = _model_blocks(params)
    extra = {block_index(p.raw) for p in unplaced} - {None}
    extra = {i for i in extra if i >= blocks}
    if extra and blocks:
        out.append(f"this LoRA patches {max(extra) + 1} blocks; the model has {blocks}")
    return out
