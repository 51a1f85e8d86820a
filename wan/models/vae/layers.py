"""Layers shared by the Wan 2.1 and Wan 2.2 causal video VAEs.

Both VAEs run over time in chunks (encode: 1 frame, then 4 at a time; decode: one latent frame at a
time). A causal layer needs the last frames it saw in the previous chunk; those frames live in one
`FeatureCache` per pass, keyed by the layer itself, so no layer counts indices.

Parameter names follow the official Wan code (`residual.0.gamma`, `time_conv`, `to_qkv` ...) so
original and ComfyUI checkpoints load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...runtime.cancel import check as check_cancel
from ...runtime.cancel import in_query_chunks


@dataclass(frozen=True)
class VAEConfig:
    """Shape of a Wan VAE. `dec_dim` (Wan 2.2 only) is the decoder's base width; None means `dim`."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    dec_dim: int | None = None

    @property
    def decoder_dim(self) -> int:
        return self.dim if self.dec_dim is None else self.dec_dim


class FeatureCache:
    """What each causal layer keeps from one temporal chunk for the next.

    One cache serves one encode or decode pass over one spatial tile. `first_chunk` is True until
    the driver calls `end_chunk()`; some layers behave differently on the very first chunk.
    """

    def __init__(self):
        self._frames: dict[nn.Module, torch.Tensor] = {}
        self.first_chunk = True

    def get(self, layer: nn.Module) -> torch.Tensor | None:
        return self._frames.get(layer)

    def put(self, layer: nn.Module, frames: torch.Tensor) -> None:
        self._frames[layer] = frames

    def end_chunk(self) -> None:
        self.first_chunk = False


class CausalConv3d(nn.Conv3d):
    """Conv3d padded on the past side only in time (2*p frames before, none after).

    With a cache the padding frames are the previous chunk's last inputs instead of zeros, so
    chunked processing matches one pass over the whole clip.
    """

    takes_cache = True

    def __init__(self, in_dim: int, out_dim: int, kernel_size, stride=1, padding=0):
        super().__init__(in_dim, out_dim, kernel_size, stride=stride, padding=padding)
        pt, ph, pw = self.padding
        self.time_pad = 2 * pt
        self.space_pad = (pw, pw, ph, ph)
        self.padding = (0, 0, 0)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        """x: [B, C, T, H, W] -> [B, C_out, T', H, W]."""
        front = self.time_pad
        if cache is not None and front > 0:
            prev = cache.get(self)
            if prev is not None:
                x = torch.cat([prev, x], dim=2)
                front -= prev.shape[2]
                del prev
            # The frames stored are this layer's inputs, taken before its padding.
            cache.put(self, x[:, :, -self.time_pad:].clone())
        # Rebinding x frees the concatenated copy before the conv allocates its output.
        x = F.pad(x, (*self.space_pad, front, 0))
        return super().forward(x)


class RMS_norm(nn.Module):
    """x / ||x||_channels * sqrt(C) * gamma, over dim 1 (channels first)."""

    def __init__(self, dim: int, images: bool = True):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma.to(x.dtype)


def _frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B*T, C, H, W]."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def _batch_to_frames(x: torch.Tensor, b: int) -> torch.Tensor:
    """[B*T, C, H, W] -> [B, C, T, H, W]."""
    bt, c, h, w = x.shape
    return x.reshape(b, bt // b, c, h, w).transpose(1, 2)


class ResidualBlock(nn.Module):
    """norm-silu-conv-norm-silu-conv plus a (1x1x1 conv) shortcut."""

    takes_cache = True

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        # Index 5 was dropout in the official code; Identity keeps conv at index 6 (`residual.6`).
        self.residual = nn.Sequential(
            RMS_norm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMS_norm(out_dim, images=False), nn.SiLU(), nn.Identity(),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        return run_seq(self.residual, x, cache) + self.shortcut(x)


# SDPA over [B*T, 1, HW, C] split over the queries at large frames, so that cancel reaches inside it;
# these strided q/k/v run ~10x slower per score than the DiT's, hence the smaller budget
_frame_attention = in_query_chunks(F.scaled_dot_product_attention, axis=2, cpu_scores=1 << 24)


class AttentionBlock(nn.Module):
    """Single-head self-attention within each frame (over H*W positions)."""

    takes_cache = True

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMS_norm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.to_qkv(self.norm(_frames_to_batch(x)))  # [B*T, 3C, H, W]
        q, k, v = y.reshape(b * t, 3, c, h * w).transpose(-1, -2).unsqueeze(1).unbind(2)  # [B*T, 1, HW, C]
        y = _frame_attention(q, k, v)
        y = self.proj(y.squeeze(1).transpose(-1, -2).reshape(b * t, c, h, w))
        return x + _batch_to_frames(y, b)


class Resample(nn.Module):
    """2x spatial up/down sampling, optionally with 2x in time.

    upsample3d doubles the frame count with `time_conv` (2*C channels = two frames), except on the
    first chunk where the single first frame stays single. downsample3d halves it with a stride-2
    temporal conv over the previous chunk's last frame and this chunk; the first chunk passes
    through. `up_dim` is the upsampling conv's output width (C // 2 in Wan 2.1, C in Wan 2.2).
    """

    takes_cache = True

    def __init__(self, dim: int, mode: str, up_dim: int | None = None):
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(
                nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                nn.Conv2d(dim, dim // 2 if up_dim is None else up_dim, 3, padding=1),
            )
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode.startswith("downsample"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))
        else:
            raise ValueError(f"unknown resample mode {mode!r}")

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if self.mode == "upsample3d" and not cache.first_chunk:
            x = self.time_conv(x, cache)  # [B, 2C, T, H, W]: channel halves are frames 2t and 2t+1
            x = x.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
        x = _batch_to_frames(run_seq(self.resample, _frames_to_batch(x), cache), b)  # polls between its layers
        if self.mode == "downsample3d":
            last = x[:, :, -1:].clone()
            if not cache.first_chunk:
                x = self.time_conv(torch.cat([cache.get(self), x], dim=2))
            cache.put(self, last)
        return x


def causal_head(dim: int, out_dim: int) -> nn.Sequential:
    """RMS norm, SiLU and a causal 3x3x3 conv: the encoder's and decoder's last stage (`head.{0,2}`)."""
    return nn.Sequential(RMS_norm(dim, images=False), nn.SiLU(), CausalConv3d(dim, out_dim, 3, padding=1))


def middle_blocks(dim: int) -> nn.Sequential:
    """Residual, attention, residual at the lowest resolution (`middle.{0,1,2}`)."""
    return nn.Sequential(ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim))


def run_seq(layers: nn.Sequential, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
    """Apply layers in order, handing the cache to those that keep state across chunks."""
    for layer in layers:
        check_cancel("in the VAE, between layers")  # one layer of a large frame takes seconds on a CPU
        x = layer(x, cache) if getattr(layer, "takes_cache", False) else layer(x)
    return x


class CausalStack(nn.Module):
    """conv1, then the ``stages`` (attribute names) in order, each run chunk by chunk through the
    cache: the shape of both VAEs' encoders and decoders, which differ only in how they build them."""

    stages: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for name in self.stages:
            x = run_seq(getattr(self, name), x, cache)
        return x


class EncoderStack(CausalStack):
    stages = ("downsamples", "middle", "head")


class DecoderStack(CausalStack):
    stages = ("middle", "upsamples", "head")
