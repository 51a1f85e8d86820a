"""UMT5 encoder (the text encoder of every Wan model), with the official Wan parameter names.

UMT5 differs from T5 v1.1 in one way that matters here: every block owns its relative position
bias table instead of sharing block 0's. Numerics follow the official Wan ``t5.py``: RMS norm with
the variance in fp32, no 1/sqrt(d) attention scaling, gated tanh-GELU feed-forward, and the fp16
overflow clamp after each residual add.

Loading accepts the official Wan names (``token_embedding``, ``blocks.N.attn.q`` ...) and the
HF/ComfyUI names (``shared``, ``encoder.block.N.layer.0.SelfAttention.q`` ...); see
:func:`load_umt5`. Other weight formats (GGUF) only need to rename their tensors to either.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..identify import identify
from ...errors import WanFileError
from ...weights.checks import block_count, check_tensors, model_dims
from ...weights.fp8 import fold_fp8_scales
from ...weights.names import UMT5, strip_prefix
from ...weights.packed import attach_packed


@dataclass(frozen=True)
class UMT5Config:
    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_dist: int = 128
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.dim_attn // self.num_heads


UMT5_XXL = UMT5Config()


def _fp16_clamp(x: torch.Tensor) -> torch.Tensor:
    # UMT5-XXL activations overflow fp16 in a few layers; the reference clamps rather than produce inf.
    if x.dtype == torch.float16 and torch.isinf(x).any():
        limit = torch.finfo(x.dtype).max - 1000
        x = x.clamp(-limit, limit)
    return x


class T5LayerNorm(nn.Module):
    """RMS norm without mean subtraction or bias; the variance is always taken in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.type_as(self.weight)
        return self.weight * x


class T5Attention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim]; bias: [B or 1, heads, L, L] additive (position bias + key mask)."""
        b, n = x.shape[0], self.num_heads
        q = self.q(x).unflatten(-1, (n, -1)).transpose(1, 2)  # [B, heads, L, head_dim]
        k = self.k(x).unflatten(-1, (n, -1)).transpose(1, 2)
        v = self.v(x).unflatten(-1, (n, -1)).transpose(1, 2)
        # T5 folds any scaling into its weights: the dot product is used unscaled.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
        return self.o(out.transpose(1, 2).reshape(b, x.shape[1], -1))


class T5FeedForward(nn.Module):
    def __init__(self, dim: int, dim_ffn: int):
        super().__init__()
        # `gate` is a Sequential only so the official name `gate.0.weight` loads unchanged.
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class T5RelativeEmbedding(nn.Module):
    """Bidirectional bucketed relative position bias; ``embedding.weight`` is [buckets, heads]."""

    def __init__(self, num_buckets: int, num_heads: int, max_dist: int = 128):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_dist = max_dist
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def buckets(self, length: int, device) -> torch.Tensor:
        """[L, L] bucket index of key position j seen from query position i."""
        rel = torch.arange(length, device=device)[None, :] - torch.arange(length, device=device)[:, None]
        half = self.num_buckets // 2
        out = (rel > 0).long() * half
        rel = rel.abs()
        max_exact = half // 2
        # Positions past max_exact share log-spaced buckets up to max_dist; clamp(min=1) only keeps
        # log() finite where the exact branch is taken anyway.
        large = max_exact + (
            torch.log(rel.clamp(min=1).float() / max_exact) / math.log(self.max_dist / max_exact) * (half - max_exact)
        ).long()
        large = large.clamp(max=half - 1)
        return out + torch.where(rel < max_exact, rel, large)

    def forward(self, buckets: torch.Tensor) -> torch.Tensor:
        """buckets: [L, L] -> bias [1, heads, L, L]."""
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)


class T5SelfAttention(nn.Module):
    """One UMT5 encoder block; the position bias table is per block (``shared_pos=False`` upstream)."""

    def __init__(self, cfg: UMT5Config):
        super().__init__()
        self.norm1 = T5LayerNorm(cfg.dim, cfg.eps)
        self.attn = T5Attention(cfg.dim, cfg.dim_attn, cfg.num_heads)
        self.norm2 = T5LayerNorm(cfg.dim, cfg.eps)
        self.ffn = T5FeedForward(cfg.dim, cfg.dim_ffn)
        self.pos_embedding = T5RelativeEmbedding(cfg.num_buckets, cfg.num_heads, cfg.max_dist)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        bias = self.pos_embedding(buckets).float()
        if key_mask is not None:
            bias = bias + key_mask
        x = _fp16_clamp(x + self.attn(self.norm1(x), bias))
        x = _fp16_clamp(x + self.ffn(self.norm2(x)))
        return x


class UMT5Encoder(nn.Module):
    def __init__(self, cfg: UMT5Config = UMT5_XXL):
        super().__init__()
        self.config = cfg
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(T5SelfAttention(cfg) for _ in range(cfg.num_layers))
        self.norm = T5LayerNorm(cfg.dim, cfg.eps)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids: [B, L] int; mask: [B, L] (1 = token, 0 = padding) -> hidden states [B, L, dim].

        Padded positions still get values here (as upstream); callers zero them.
        """
        x = self.token_embedding(ids)
        buckets = self.blocks[0].pos_embedding.buckets(ids.shape[1], ids.device)
        key_mask = None
        if mask is not None:
            # Additive mask over keys, [B, 1, 1, L]; finfo(fp32).min as upstream uses finfo(dtype).min.
            key_mask = torch.zeros(mask.shape, dtype=torch.float32, device=ids.device)
            key_mask = key_mask.masked_fill(mask.to(ids.device) == 0, torch.finfo(torch.float32).min)
            key_mask = key_mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, buckets, key_mask)
        return self.norm(x)


# ---------------------------------------------------------------------------------------------
# Loading

# HF/ComfyUI name -> official Wan name, per block.
_HF_BLOCK = {
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
}
_HF_TOP = {
    "shared.weight": "token_embedding.weight",
    "encoder.embed_tokens.weight": "token_embedding.weight",
    "encoder.final_layer_norm.weight": "norm.weight",
}
_HF_BLOCK_RE = re.compile(r"^encoder\.block\.(\d+)\.(.+)$")
# Keys that ride along in text-encoder files and carry no encoder weight (scaled-fp8 markers and
# scales are taken out by fold_fp8_scales).
_IGNORED = re.compile(r"^(spiece_model|decoder\..*|lm_head\..*)$")


def convert_hf_to_wan(sd: dict) -> dict:
    """Rename an HF/ComfyUI UMT5 encoder state dict to the official Wan names (unknown keys kept)."""
    out = {}
    for k, v in sd.items():
        if k in _HF_TOP:
            out.setdefault(_HF_TOP[k], v)
            continue
        m = _HF_BLOCK_RE.match(k)
        if m and m.group(2) in _HF_BLOCK:
            out[f"blocks.{m.group(1)}.{_HF_BLOCK[m.group(2)]}"] = v
        else:
            out[k] = v
    return out


_WAN_BLOCK = {v: k for k, v in _HF_BLOCK.items()}
_WAN_TOP = {"token_embedding.weight": "shared.weight", "norm.weight": "encoder.final_layer_norm.weight"}
_WAN_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


def convert_wan_to_hf(sd: dict) -> dict:
    """Official Wan names -> the HF/ComfyUI names (``shared``, ``encoder.block.N.layer...``), the
    names ComfyUI's T5 holds; unknown keys kept."""
    out = {}
    for k, v in sd.items():
        m = _WAN_BLOCK_RE.match(k)
        if k in _WAN_TOP:
            out[_WAN_TOP[k]] = v
        elif m and m.group(2) in _WAN_BLOCK:
            out[f"encoder.block.{m.group(1)}.{_WAN_BLOCK[m.group(2)]}"] = v
        else:
            out[k] = v
    return out


def hf_t5_config(cfg: UMT5Config, path=None) -> dict:
    """The entries of an HF ``T5Config`` (ComfyUI's umt5_config_xxl.json) that a file's shapes
    decide; the rest (gated tanh-GELU, "umt5" position tables per block) is UMT5 itself."""
    if cfg.dim_attn % cfg.num_heads:
        raise WanFileError(path, f"UMT5 attention width {cfg.dim_attn} is not a multiple of its "
                           f"{cfg.num_heads} heads")
    return {"d_ff": cfg.dim_ffn, "d_kv": cfg.head_dim, "d_model": cfg.dim, "num_heads": cfg.num_heads,
            "num_layers": cfg.num_layers, "relative_attention_num_buckets": cfg.num_buckets,
            "vocab_size": cfg.vocab}


def umt5_config_from_state_dict(sd: dict, path=None) -> UMT5Config:
    """Read the configuration from official-named tensor shapes (so tiny test models load too)."""
    need = ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight")
    missing = [k for k in need if k not in sd]
    if missing:
        who = identify(sd)
        if who.role == "text_encoder":
            raise WanFileError(path, f"incomplete UMT5 text encoder: {', '.join(missing)} missing")
        raise WanFileError(path, f"not a UMT5 text encoder: it looks like {who.detail}")
    rel = sd.get("blocks.0.pos_embedding.embedding.weight")
    if rel is None:
        raise WanFileError(path, "UMT5 text encoder without a relative position table in block 0")
    if "blocks.1.pos_embedding.embedding.weight" not in sd and "blocks.1.attn.q.weight" in sd:
        raise WanFileError(
            path,
            "this is a T5 v1.1 encoder (one shared position table, e.g. Flux/SD3 t5xxl), "
            "not the UMT5-XXL encoder that Wan uses (umt5_xxl_*.safetensors)",
        )
    # the count is backed by the blocks present, the sizes by bounded dimensions: a stray
    # blocks.99999.* or a zero-width table is refused before the (meta) model is built
    layers = block_count(sd, "blocks.", path, "UMT5 text encoder")
    vocab, dim = model_dims(sd["token_embedding.weight"], "token_embedding.weight", path, 2)
    buckets, heads = model_dims(rel, "blocks.0.pos_embedding.embedding.weight", path, 2)
    return UMT5Config(
        vocab=vocab,
        dim=dim,
        dim_attn=model_dims(sd["blocks.0.attn.q.weight"], "blocks.0.attn.q.weight", path, 2)[0],
        dim_ffn=model_dims(sd["blocks.0.ffn.fc1.weight"], "blocks.0.ffn.fc1.weight", path, 2)[0],
        num_heads=heads,
        num_layers=layers,
        num_buckets=buckets,
    )


def checked_umt5_state_dict(state_dict: dict, path=None) -> tuple[UMT5Config, dict]:
    """(config, {official Wan name: tensor}) of a UMT5 encoder in any naming and wrapper, checked
    against the model's names and shapes (on the meta device, nothing allocated). Scaled-fp8 markers
    are dropped and plain fp8 scales folded; packed tensors stay packed."""
    sd = fold_fp8_scales(strip_prefix(state_dict, UMT5), path)
    sd = convert_hf_to_wan({k: v for k, v in sd.items() if not _IGNORED.match(k)})
    cfg = umt5_config_from_state_dict(sd, path)
    with torch.device("meta"):
        model = UMT5Encoder(cfg)
    check_tensors(model, sd, path, "UMT5 text encoder")
    return cfg, sd


def load_umt5(
    state_dict: dict, path=None, dtype: torch.dtype = torch.bfloat16, device="cpu"
) -> UMT5Encoder:
    """Build a :class:`UMT5Encoder` from official Wan or HF/ComfyUI names, config read from shapes.

    Floating tensors are cast to ``dtype``; packed weights (``wan.weights.packed.PackedTensor``, from
    GGUF or fp8 files) become ``PackedLinear`` layers that expand them per forward.
    """
    cfg, sd = checked_umt5_state_dict(state_dict, path)
    with torch.device("meta"):
        model = UMT5Encoder(cfg)
    if any(getattr(v, "is_packed", False) for v in sd.values()):
        attach_packed(model, sd)  # GGUF / fp8 weights stay packed; their keys leave sd
    loaded = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else None) for k, v in sd.items()}
    model.load_state_dict(loaded, assign=True)
    return model.to(device).eval().requires_grad_(False)
