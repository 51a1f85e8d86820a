"""Attention and 3-D rotary position embedding for the Wan DiT.

Every attention module calls ``attention(q, k, v, self.kernel)``: the kernel is an attribute of the
module (SDPA unless ``WanDiT.set_attention`` chose another), so another kernel or a per-run wrapper
(Enhance-A-Video) replaces one attribute of one module instead of editing the blocks or a shared table.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ...runtime.cancel import in_query_chunks

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sdpa_whole(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA over [B, L, H, D] in one call (``sdpa`` splits long query sequences)."""
    # SDPA wants heads before tokens; the transposes are views and SDPA accepts the strides.
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


# split over the queries when the sequence is long, so that cancel reaches inside one long call
sdpa: Kernel = in_query_chunks(sdpa_whole)
sdpa.__doc__ = "PyTorch's scaled_dot_product_attention over [B, L, H, D] inputs -> [B, Lq, H, D]."


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: Kernel = sdpa) -> torch.Tensor:
    """Softmax attention without mask, scaled by 1/sqrt(head_dim), computed by ``kernel``.

    q: [B, Lq, H, D]; k, v: [B, Lk, H, D] -> [B, Lq, H * D].
    """
    return kernel(q, k, v).flatten(2)


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """Channels of one head given to (frames, height, width): 44/42/42 for head_dim 128."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def _axis_angles(positions: torch.Tensor, channels: int, theta: float) -> torch.Tensor:
    # Pair j of an axis with `channels` channels turns by position * theta^(-2j/channels).
    inv = theta ** -(torch.arange(0, channels, 2, dtype=positions.dtype, device=positions.device) / channels)
    return positions[:, None] * inv[None, :]


def rope_table(
    grid: tuple[int, int, int],
    head_dim: int,
    theta: float = 10000.0,
    start: tuple[float, float, float] = (0, 0, 0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotation matrices for every token of a (frames, height, width) grid, frames slowest.

    Returns [1, F*H*W, 1, head_dim/2, 2, 2] fp32, entry [..., i, j] of the 2x2 rotation of each
    channel pair. Angles are computed in float64 (as the official code does) and rounded once,
    on ``device`` itself (float32 where the device has no float64, e.g. MPS).
    """
    device = torch.device("cpu" if device is None else device)
    wide = torch.float32 if device.type == "mps" else torch.float64
    f, h, w = grid
    angles = [
        _axis_angles(torch.arange(n, dtype=wide, device=device) + s, c, theta)
        for n, c, s in zip(grid, rope_axes(head_dim), start)
    ]
    full = torch.cat(
        [
            angles[0][:, None, None, :].expand(f, h, w, -1),
            angles[1][None, :, None, :].expand(f, h, w, -1),
            angles[2][None, None, :, :].expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(f * h * w, head_dim // 2)
    cos, sin = full.cos(), full.sin()
    rot = torch.stack([cos, -sin, sin, cos], dim=-1).view(1, f * h * w, 1, head_dim // 2, 2, 2)
    return rot.to(torch.float32)


def apply_rope(x: torch.Tensor, rot: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rotate channel pairs (2j, 2j+1) of x [B, L, H, D] by ``rot`` (from ``rope_table``).

    Computed in fp32 and written in ``dtype`` (fp32 when None): the last multiply-add stores its
    fp32 result straight into ``dtype``, the same bits as rounding an fp32 result afterwards,
    without writing and re-reading an fp32 copy of q and k.
    """
    pairs = x.unflatten(-1, (-1, 1, 2))  # [B, L, H, D/2, 1, 2]
    first = rot[..., 0] * pairs[..., 0]  # column 0 of each rotation times the pair's first element (fp32)
    out = torch.empty(first.shape, dtype=dtype or first.dtype, device=first.device)
    torch.addcmul(first, rot[..., 1], pairs[..., 1], out=out)
    return out.flatten(-2)
