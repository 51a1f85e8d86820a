"""VACE context blocks: a parallel stream over the VACE context whose projections are added to the
main stream after selected blocks (official names ``vace_blocks.N.{before,after}_proj``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import WanAttentionBlock


class VaceWanAttentionBlock(WanAttentionBlock):
    """A Wan block over the VACE stream; the first one also mixes in the patch-embedded video."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float = 1e-6, block_id: int = 0):
        super().__init__(dim, ffn_dim, num_heads, eps)
        self.block_id = block_id
        if block_id == 0:
            self.before_proj = nn.Linear(dim, dim)
        self.after_proj = nn.Linear(dim, dim)

    def forward_vace(
        self,
        c: torch.Tensor,
        x0: torch.Tensor,
        e: torch.Tensor,
        rope: torch.Tensor,
        context: torch.Tensor,
        context_img_len: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """c: [B, L, C] VACE stream; x0: [B, L, C] the embedded video before any block (both in
        the residual dtype).

        Returns (hint to add to the main stream [B, L, C], the next VACE stream).
        """
        dt = context.dtype
        if self.block_id == 0:
            c = self.before_proj(c.to(dt)).to(x0.dtype) + x0
        # Through the module call, so a compiled block (nn.Module.compile) runs compiled.
        c = self(c, e, rope, context, context_img_len)
        return self.after_proj(c.to(dt)).to(c.dtype), c
