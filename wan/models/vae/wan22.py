"""Wan 2.2 VAE (TI2V-5B): 48 latent channels, 4x16x16 compression, causal in time.

Against Wan 2.1 it folds 2x2 pixel patches into 12 channels before the encoder (and unfolds
after the decoder), adds parameter-free shortcut paths around every down/up level
(`AvgDown3D` / `DupUp3D`), keeps the width through upsampling and has a wider decoder (`dec_dim`).
Official parameter names (`encoder.downsamples.N.downsamples.M`, `decoder.upsamples.N.upsamples.M`).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .base import WanVAEBase
from .layers import (
    CausalConv3d, DecoderStack, EncoderStack, FeatureCache, Resample, ResidualBlock, VAEConfig, causal_head,
    middle_blocks, run_seq,
)

WAN22_VAE = VAEConfig(dim=160, dec_dim=256, z_dim=48)

# Per-channel statistics of the raw latent (official Wan 2.2 / ComfyUI latent_formats.Wan22).
WAN22_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

PATCH = 2


def patchify(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, 2h, 2w] -> [B, 4C, T, h, w]; channel = c*4 + dx*2 + dy (official order)."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // PATCH, PATCH, w // PATCH, PATCH)
    return x.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * PATCH * PATCH, t, h // PATCH, w // PATCH)


def unpatchify(x: torch.Tensor) -> torch.Tensor:
    """Inverse of patchify: [B, 4C, T, h, w] -> [B, C, T, 2h, 2w]."""
    b, c4, t, h, w = x.shape
    x = x.reshape(b, c4 // (PATCH * PATCH), PATCH, PATCH, t, h, w)  # [B, C, dx, dy, T, h, w]
    return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, c4 // (PATCH * PATCH), t, h * PATCH, w * PATCH)


class AvgDown3D(nn.Module):
    """Parameter-free shortcut: fold (ft, fs, fs) neighbourhoods into channels, average groups to out_dim.

    Time is zero-padded at the front to a multiple of ft (so a 1-frame first chunk gives 1 frame).
    """

    def __init__(self, in_dim: int, out_dim: int, factor_t: int, factor_s: int):
        super().__init__()
        self.out_dim, self.ft, self.fs = out_dim, factor_t, factor_s
        self.group = in_dim * factor_t * factor_s * factor_s // out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fs = self.ft, self.fs
        x = F.pad(x, (0, 0, 0, 0, (ft - x.shape[2] % ft) % ft, 0))
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
        x = x.reshape(b, self.out_dim, self.group, t // ft, h // fs, w // fs)
        return x.mean(dim=2)


class DupUp3D(nn.Module):
    """Parameter-free shortcut: repeat channels and unfold them into (ft, fs, fs) neighbourhoods.

    On the first chunk only the last of the ft frames is kept, matching the main path's 1 frame.
    """

    def __init__(self, in_dim: int, out_dim: int, factor_t: int, factor_s: int):
        super().__init__()
        self.out_dim, self.ft, self.fs = out_dim, factor_t, factor_s
        self.repeats = out_dim * factor_t * factor_s * factor_s // in_dim

    def forward(self, x: torch.Tensor, first_chunk: bool) -> torch.Tensor:
        ft, fs = self.ft, self.fs
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1)
        x = x.reshape(b, self.out_dim, ft, fs, fs, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        x = x.reshape(b, self.out_dim, t * ft, h * fs, w * fs)
        return x[:, :, ft - 1:] if first_chunk else x


class Down_ResidualBlock(nn.Module):
    """Residual blocks then an optional downsample, plus the AvgDown3D shortcut around them all."""

    takes_cache = True

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, down: bool):
        super().__init__()
        self.avg_shortcut = AvgDown3D(in_dim, out_dim, 2 if temporal else 1, 2 if down else 1)
        blocks: list[nn.Module] = []
        for _ in range(num_res_blocks):
            blocks.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if down:
            blocks.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        return run_seq(self.downsamples, x, cache) + self.avg_shortcut(x)


class Up_ResidualBlock(nn.Module):
    """Residual blocks then an optional upsample, plus the DupUp3D shortcut when upsampling."""

    takes_cache = True

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, up: bool):
        super().__init__()
        self.avg_shortcut = DupUp3D(in_dim, out_dim, 2 if temporal else 1, 2) if up else None
        blocks: list[nn.Module] = []
        for _ in range(num_res_blocks):
            blocks.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if up:
            blocks.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d", up_dim=out_dim))
        self.upsamples = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        y = run_seq(self.upsamples, x, cache)
        if self.avg_shortcut is not None:
            y = y + self.avg_shortcut(x, cache.first_chunk)
        return y


class Encoder3d(EncoderStack):
    """patches [B, 12, T, H/2, W/2] -> [B, 2*z_dim, T', H/16, W/16]."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        last = len(cfg.dim_mult) - 1
        self.conv1 = CausalConv3d(3 * PATCH * PATCH, dims[0], 3, padding=1)
        self.downsamples = nn.Sequential(*(
            Down_ResidualBlock(
                in_dim, out_dim, cfg.num_res_blocks,
                temporal=i < len(cfg.temperal_downsample) and cfg.temperal_downsample[i] and i != last,
                down=i != last,
            )
            for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:]))
        ))
        out_dim = dims[-1]
        self.middle = middle_blocks(out_dim)
        self.head = causal_head(out_dim, cfg.z_dim * 2)


class Decoder3d(DecoderStack):
    """latent [B, z_dim, T, h, w] -> patches [B, 12, T', 8h, 8w]."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.decoder_dim * m for m in (mult[-1], *mult[::-1])]
        temperal_upsample = cfg.temperal_downsample[::-1]
        last = len(mult) - 1
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = middle_blocks(dims[0])
        self.upsamples = nn.Sequential(*(
            Up_ResidualBlock(
                in_dim, out_dim, cfg.num_res_blocks + 1,
                temporal=i < len(temperal_upsample) and temperal_upsample[i] and i != last,
                up=i != last,
            )
            for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:]))
        ))
        self.head = causal_head(dims[-1], 3 * PATCH * PATCH)


class WanVAE22(WanVAEBase):
    """The Wan 2.2 VAE. encode/decode are documented on WanVAEBase."""

    spatial_compression = 16

    def __init__(self, cfg: VAEConfig = WAN22_VAE):
        super().__init__(cfg, Encoder3d(cfg), Decoder3d(cfg))

    def _encode_chunk(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """pixels [B, 3, 1 or 4, H, W] -> latent mean [B, z_dim, 1, H/16, W/16]."""
        return self.conv1(self.encoder(patchify(x), cache))[:, : self.z_dim]

    def _decode_chunk(self, z: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """latent [B, z_dim, 1, h, w] -> pixels [B, 3, 1 (first chunk) or 4, 16h, 16w]."""
        return unpatchify(self.decoder(self.conv2(z), cache))
