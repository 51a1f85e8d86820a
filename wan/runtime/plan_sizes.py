"""Sizes the memory plan adds up: the bytes each DiT block holds, the rest of the model's weights,
and the activation peak of one DiT forward for a job's latent.

Weights are counted from the tensors a model holds (packed GGUF / fp8 blocks as their packed bytes,
since that is what a block swap moves), or, for a configuration not loaded, from a ``WanDiT`` built
on the ``meta`` device with each Linear weight sized as the chosen format stores it (GGUF block
sizes from gguf-py, as the reader uses them).

The activation peak follows the forward in ``models/dit``: while block ``i`` runs, the residual
stream it was given is still held by the caller (``DiTState.x``), so each stage of a block holds
that, its own new residual and the stage's temporaries. The per-token bytes of each stage are
written next to the code they count; the largest stage, plus what lives through every block
(rotary table, time projection, text context), is the peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..models.dit.config import DiTConfig
from ..models.dit.model import WanDiT
from ..weights.packed import PackedLinear
from .cancel import query_chunk

# bits per weight of the formats a Linear weight can be stored in (GGUF types: gguf-py's table)
PLAIN_FORMATS = {"bf16": 2, "fp16": 2, "fp32": 4, "fp8": 1}


def _gguf_bytes(numel: int, qtype: str) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType  # optional: only for GGUF sizes

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    return math.ceil(numel / block) * size


def module_bytes(module: nn.Module) -> int:
    """Bytes of every parameter and buffer under ``module`` as held (packed buffers as packed)."""
    seen, total = set(), 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


@dataclass(frozen=True)
class WeightSizes:
    """What a DiT holds: ``blocks`` bytes per transformer block, ``other`` the rest (embeddings,
    head, VACE blocks), ``dequant`` the largest packed Linear expanded for one forward (0 when
    nothing is packed), ``lora`` the factors of this job's LoRAs held on the device beside them
    (``wan.weights.lora.device_bytes``; resident whichever blocks stream)."""

    blocks: tuple[int, ...]
    other: int
    dequant: int = 0
    lora: int = 0

    @property
    def total(self) -> int:
        return sum(self.blocks) + self.other + self.lora


def weight_sizes(dit: nn.Module, compute_bytes: int = 2) -> WeightSizes:
    """``WeightSizes`` of a loaded (or meta) DiT, counted from its tensors."""
    blocks = tuple(module_bytes(b) for b in dit.blocks)
    packed = [m for m in dit.modules() if isinstance(m, PackedLinear)]
    dequant = max((m.in_features * m.out_features * compute_bytes for m in packed), default=0)
    return WeightSizes(blocks, module_bytes(dit) - sum(blocks), dequant)


def config_sizes(cfg: DiTConfig, fmt: str = "bf16") -> WeightSizes:
    """``WeightSizes`` of ``cfg`` stored as ``fmt`` ("bf16", "fp16", "fp32", "fp8" or a GGUF type
    such as "Q4_K"), from a model built on the meta device: Linear weights of the blocks in ``fmt``,
    every other tensor in bf16 (as the files keep norms, biases and embeddings)."""
    with torch.device("meta"):
        dit = WanDiT(cfg)

    def linear_bytes(numel: int) -> int:
        return numel * PLAIN_FORMATS[fmt] if fmt in PLAIN_FORMATS else _gguf_bytes(numel, fmt)

    def held(module: nn.Module) -> int:
        total = 0
        for m in module.modules():
            for name, p in m.named_parameters(recurse=False):
                packed = isinstance(m, nn.Linear) and name == "weight"
                total += linear_bytes(p.numel()) if packed else p.numel() * 2
        return total

    blocks = tuple(held(b) for b in dit.blocks)
    packed = fmt not in ("bf16", "fp16", "fp32")
    dequant = max(m.weight.numel() * 2 for m in dit.blocks[0].modules() if isinstance(m, nn.Linear)) if packed else 0
    return WeightSizes(blocks, held(dit) - sum(blocks), dequant)


def tokens(cfg: DiTConfig, latent_shape) -> int:
    """Transformer tokens of a latent [B, C, F, h, w] (padded up to whole patches)."""
    _b, _c, f, h, w = (int(n) for n in latent_shape)
    pt, ph, pw = cfg.patch_size
    return math.ceil(f / pt) * math.ceil(h / ph) * math.ceil(w / pw)


def dit_activation_bytes(cfg: DiTConfig, latent_shape, batch: int, compute: torch.dtype = torch.bfloat16,
                         residual: torch.dtype | None = None, image_tokens: int = 0, vace_contexts: int = 0,
                         dequant: int = 0, fused_norms: bool = True) -> int:
    """Peak bytes one DiT forward allocates on its device besides the weights, for a latent of
    ``latent_shape`` run ``batch`` times at once (2: cond and uncond in one CFG batch).

    ``residual``: the residual stream's dtype (``WanDiT.residual_dtype``; None: ``compute``);
    ``image_tokens``: CLIP tokens in the context (I2V); ``vace_contexts``: VACE contexts given;
    ``dequant``: the bytes a packed Linear expands to per forward (``WeightSizes.dequant``);
    ``fused_norms``: RMS norm runs as one kernel (CUDA); elsewhere torch composes it from fp32
    steps, three fp32 copies of its input alive at once.
    """
    s = torch.empty((), dtype=compute).element_size()
    r = s if residual is None else torch.empty((), dtype=residual).element_size()
    n, c, f_dim, d = tokens(cfg, latent_shape), cfg.dim, cfg.ffn_dim, cfg.head_dim
    bl = batch * n  # token rows of one forward
    frames = int(latent_shape[2])
    lc = cfg.text_len + image_tokens
    # the attention output: whole, or filled query chunk by query chunk (cancel.in_query_chunks)
    q = torch.empty((batch, n, cfg.num_heads, d), device="meta")
    chunk = query_chunk(q, q, 1)
    attn_out = s * (1 + (chunk < n) * chunk / n)
    rms = 0 if fused_norms else 12
    stages = {
        # k's RMS norm: x (r), the modulated input, q, k's projection and the norm's own buffers
        "self-attention norm": r + 3 * s + (rms or s),
        # q, then k: the block's input x (r), the modulated input (s), q (s), k's norm (s), the fp32
        # product inside apply_rope (4) and its output (s)
        "self-attention rope": r + 4 * s + 4,
        # x, modulated input, q, k, v and the attention output
        "self-attention": r + 4 * s + attn_out,
        # from here on the self-attention output ``y`` stays bound until the FFN replaces it (s)
        # x, x after self-attention (r), y, norm3 (r) cast to s, q's projection and its RMS norm
        "cross-attention norm": 3 * r + (s if s != r else 0) + 2 * s + (rms or s),
        # the same with q, the attention output and o's output
        "cross-attention": 3 * r + (s if s != r else 0) + 4 * s,
        # x, x after cross-attention (r), y, modulated input (s), fc1 and GELU outputs (s * ffn)
        "ffn": 2 * r + 2 * s + 2 * s * f_dim / c,
        # head: x, its fp32 modulated norm, and the fp32 output with its unpatchified copy
        "head": r + 4 + 4 + 2 * 4 * math.prod(cfg.patch_size) * cfg.out_dim / c,
    }
    peak_stage = max(stages.values()) * bl * c
    # through every block: rotary table [L, D/2, 2, 2] fp32, time projection [B, frames, 6, C]
    # fp32 (per frame at most: per-token timesteps constant in a frame are folded), text context
    # [B, Lc, C], the fp32 input latent (with y) and, with VACE, x0 and one hint stream per context
    persistent = (n * d * 8 + batch * frames * 7 * c * 4 + batch * lc * c * s
                  + batch * cfg.in_dim * n * math.prod(cfg.patch_size) * 4
                  + (vace_contexts + 1) * bl * c * r * (vace_contexts > 0))
    return int(peak_stage + persistent + dequant)
