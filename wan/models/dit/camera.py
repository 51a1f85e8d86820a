"""The Fun models' extra inputs: the camera adapter (Plücker embeddings -> tokens added to the patch
tokens) and the reference conv (a reference image's latent -> one frame of tokens in front).

Official (VideoX-Fun) names: ``control_adapter.conv``, ``control_adapter.residual_blocks.N.conv1/2``
and ``ref_conv``. Both run in fp32 like the patch embedding: they are small and see raw inputs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import WanInputError

# The adapter sees the embedding at pixel resolution; an 8x8 unshuffle brings it to the latent grid.
UNSHUFFLE = 8


def _conv2d(conv: nn.Conv2d, x: torch.Tensor, **kw) -> torch.Tensor:
    b = None if conv.bias is None else conv.bias.float()
    return F.conv2d(x, conv.weight.float(), b, stride=conv.stride, **kw)


class CameraResidual(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(_conv2d(self.conv1, x, padding=1))
        return x + _conv2d(self.conv2, h, padding=1)


class CameraAdapter(nn.Module):
    """[B, C, T, H, W] camera embedding (pixel H, W; T latent frames) -> [B, dim, T, H/16, W/16]."""

    def __init__(self, in_dim: int, dim: int, patch: tuple[int, int]):
        super().__init__()
        self.in_dim = in_dim
        self.conv = nn.Conv2d(in_dim * UNSHUFFLE * UNSHUFFLE, dim, kernel_size=patch, stride=patch)
        self.residual_blocks = nn.Sequential(CameraResidual(dim))

    def forward(self, camera: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        b, c, t, h, w = camera.shape
        step = UNSHUFFLE * self.conv.stride[0], UNSHUFFLE * self.conv.stride[1]
        if c != self.in_dim or (t, h // step[0], w // step[1]) != tuple(grid) or h % step[0] or w % step[1]:
            raise WanInputError(
                f"camera embedding of shape {tuple(camera.shape)}: this model takes [B, {self.in_dim}, "
                f"{grid[0]} latent frames, {grid[1] * step[0]}, {grid[2] * step[1]}] for this video")
        x = camera.float().transpose(1, 2).reshape(b * t, c, h, w)
        x = _conv2d(self.conv, F.pixel_unshuffle(x, UNSHUFFLE))
        for block in self.residual_blocks:
            x = block(x)
        return x.view(b, t, *x.shape[1:]).transpose(1, 2)


def reference_tokens(conv: nn.Conv2d, reference: torch.Tensor, batch: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """[B or 1, C, h, w] normalised reference latent -> [B, h*w/4, dim] fp32 tokens."""
    if reference.ndim == 5 and reference.shape[2] == 1:
        reference = reference[:, :, 0]
    if reference.ndim != 4 or reference.shape[1] != conv.in_channels or reference.shape[0] not in (1, batch):
        raise WanInputError(f"reference latent of shape {tuple(reference.shape)}: expected "
                            f"[B, {conv.in_channels}, h, w]")
    tokens = _conv2d(conv, reference.float())
    if tuple(tokens.shape[2:]) != tuple(grid[1:]):
        raise WanInputError(f"reference latent of {tuple(reference.shape[2:])} does not match the video "
                            f"latent's grid {tuple(grid[1:])} (it must have the video's size)")
    return tokens.flatten(2).transpose(1, 2).expand(batch, -1, -1)
