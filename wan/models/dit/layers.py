"""Layers of the Wan DiT: norms, attention modules, the transformer block and the output head.

Official Wan parameter names throughout, so checkpoints load unchanged. Norm statistics,
modulation, rotary embedding and the head run in fp32 as the official code does; Linear layers run
in the model's compute dtype (the dtype of ``context`` that every block receives). The residual
stream keeps the dtype it arrives in: fp32 (the official numerics) or the compute dtype (as ComfyUI
and diffusers keep it), see ``WanDiT.residual_fp32``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Kernel, apply_rope, attention, sdpa


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm with fp32 statistics and affine, returned in x's dtype (x fp32: fully fp32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The kernels accumulate and apply the affine in fp32 for 16-bit inputs, so casting the
        # input up would only add a pass over the activations.
        w = None if self.weight is None else self.weight.to(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.layer_norm(x, self.normalized_shape, w, b, self.eps)


class RMSNorm(nn.Module):
    """RMS norm over the last dim with a learned gain, accumulated in fp32, returned in x's dtype
    (the official norm also rounds to the activation dtype before the rotary embedding)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


def linear_fp32(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Linear in fp32 (time embedding, head), upcasting a plain Linear's weights on the fly."""
    if type(layer) is nn.Linear:
        b = None if layer.bias is None else layer.bias.float()
        return F.linear(x.float(), layer.weight.float(), b)
    # A packed (GGUF/fp8) Linear dequantizes to its input's dtype itself.
    return layer(x.float()).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x * (1 + scale) + shift computed in fp32 and written once in ``dtype``, with per-sample,
    per-frame or per-token modulation.

    x: [B, L, C]; shift, scale: [B, T, C] fp32 with T in {1, frames, L}, L divisible by T.
    """
    b, l, c = x.shape
    t = shift.shape[1]
    out = torch.empty(b, t, l // t, c, dtype=dtype, device=x.device)
    torch.addcmul(shift.unsqueeze(2), x.view(b, t, l // t, c), 1 + scale.unsqueeze(2), out=out)
    return out.view(b, l, c)


def gated_add(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x + y * gate computed in fp32 and written in x's dtype, with gate [B, T, C] as in ``modulate``."""
    b, l, c = x.shape
    t = gate.shape[1]
    out = torch.empty(b, t, l // t, c, dtype=x.dtype, device=x.device)
    torch.addcmul(x.view(b, t, l // t, c), y.view(b, t, l // t, c), gate.unsqueeze(2), out=out)
    return out.view(b, l, c)


class WanSelfAttention(nn.Module):
    """Self-attention with RMS-normalised q/k and 3-D rotary embedding.

    ``kernel``: the attention kernel ``(q, k, v) -> out`` over [B, L, H, D] (see
    ``WanDiT.set_attention``); a plain attribute, so a run may wrap it and put it back.
    """

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.kernel: Kernel = sdpa
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """x: [B, L, C] compute dtype; rope: [1, L, 1, D/2, 2, 2] -> [B, L, C]."""
        b, l, _ = x.shape
        n, d = self.num_heads, self.head_dim
        q = apply_rope(self.norm_q(self.q(x)).view(b, l, n, d), rope, x.dtype)
        k = apply_rope(self.norm_k(self.k(x)).view(b, l, n, d), rope, x.dtype)
        v = self.v(x).view(b, l, n, d)
        return self.o(attention(q, k, v, self.kernel))


class WanCrossAttention(WanSelfAttention):
    """Attention from video tokens to text tokens, plus (I2V) a second path to CLIP image tokens.

    Same projections and q/k norms as self-attention (hence the subclass), without rotary
    embedding. The image path has its own key/value projections (``k_img``, ``v_img``); both
    attention results are summed before the shared output projection.
    """

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, image_path: bool = False):
        super().__init__(dim, num_heads, eps)
        if image_path:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps)

    def _heads(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return t.to(dtype).unflatten(-1, (self.num_heads, self.head_dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_img_len: int = 0) -> torch.Tensor:
        """x: [B, L, C]; context: [B, img + text, C] (image tokens first) -> [B, L, C]."""
        dt = x.dtype
        img, txt = context[:, :context_img_len], context[:, context_img_len:]
        q = self._heads(self.norm_q(self.q(x)), dt)
        k = self._heads(self.norm_k(self.k(txt)), dt)
        out = attention(q, k, self._heads(self.v(txt), dt), self.kernel)
        if context_img_len and hasattr(self, "k_img"):
            k_img = self._heads(self.norm_k_img(self.k_img(img)), dt)
            out = out + attention(q, k_img, self._heads(self.v_img(img), dt), self.kernel)
        return self.o(out)


class WanAttentionBlock(nn.Module):
    """One transformer block: modulated self-attention, cross-attention, modulated GELU(tanh) FFN."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float = 1e-6, image_path: bool = False):
        super().__init__()
        self.eps = eps
        self.self_attn = WanSelfAttention(dim, num_heads, eps)
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = WanCrossAttention(dim, num_heads, eps, image_path)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        # norm1 and norm2 of the official code: parameter-free LayerNorms, so no modules are needed.
        return F.layer_norm(x, x.shape[-1:], eps=self.eps)

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        rope: torch.Tensor,
        context: torch.Tensor,
        context_img_len: int = 0,
        audio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: [B, L, C] residual stream (fp32 or compute dtype); e: [B, T, 6, C] fp32 time
        projection (T in {1, frames, L}); rope: from ``rope_table``; context: [B, Lc, C] in compute
        dtype; audio: HuMo's audio tokens (its blocks carry ``audio_cross_attn_wrapper``, see
        ``humo.add_audio_layers``) -> [B, L, C] in x's dtype.
        """
        dt = context.dtype
        shift_msa, scale_msa, gate_msa, shift_ffn, scale_ffn, gate_ffn = (
            self.modulation.float().unsqueeze(0) + e
        ).unbind(2)
        y = self.self_attn(modulate(self._norm(x), shift_msa, scale_msa, dt), rope)
        x = gated_add(x, y, gate_msa)
        # One mixed-dtype add (the output is in x's dtype, fp32 or compute): no fp32 copy of y.
        x = x + self.cross_attn(self.norm3(x).to(dt), context, context_img_len)
        if audio is not None:
            x = self.audio_cross_attn_wrapper(x, audio)
        y = self.ffn(modulate(self._norm(x), shift_ffn, scale_ffn, dt))
        return gated_add(x, y, gate_ffn)


class Head(nn.Module):
    """Final modulated LayerNorm and projection to patch pixels, in fp32 as the official code."""

    def __init__(self, dim: int, out_features: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.head = nn.Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x: [B, L, C]; e: [B, T, C] fp32 time embedding -> [B, L, prod(patch) * out_dim] fp32."""
        shift, scale = (self.modulation.float().unsqueeze(0) + e.unsqueeze(2)).unbind(2)
        x = modulate(F.layer_norm(x, x.shape[-1:], eps=self.eps), shift, scale, torch.float32)
        return linear_fp32(self.head, x)


class MLPProj(nn.Module):
    """CLIP image tokens [B, N, 1280] -> context tokens [B, N, dim] (I2V / FLF2V)."""

    def __init__(self, in_dim: int, out_dim: int, flf_pos_tokens: int | None = None):
        super().__init__()
        self.proj = nn.Sequential(
            FP32LayerNorm(in_dim), nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim), FP32LayerNorm(out_dim)
        )
        if flf_pos_tokens is not None:
            self.emb_pos = nn.Parameter(torch.zeros(1, flf_pos_tokens, in_dim))

    def forward(self, image_embeds: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = image_embeds.float()
        if hasattr(self, "emb_pos"):
            if x.shape[1] > self.emb_pos.shape[1]:
                raise ValueError(f"{x.shape[1]} CLIP tokens, the position embedding has {self.emb_pos.shape[1]}")
            x = x + self.emb_pos[:, : x.shape[1]].float()
        # The CLIP-side norms are tiny (257 tokens): keep them fully fp32 as the official code.
        norm_in, fc1, act, fc2, norm_out = self.proj
        x = act(fc1(norm_in(x).to(dtype)))
        return norm_out(fc2(x)).to(dtype)
