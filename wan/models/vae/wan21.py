"""Wan 2.1 VAE: 16 latent channels, 4x8x8 (time, height, width) compression, causal in time.

Official parameter names (`encoder.downsamples.N`, `decoder.upsamples.N`, `conv1`, `conv2`), so
original and ComfyUI files load unchanged; see vae_loading.py for the diffusers layout.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import WanVAEBase
from .layers import (
    CausalConv3d, DecoderStack, EncoderStack, FeatureCache, Resample, ResidualBlock, VAEConfig, causal_head,
    middle_blocks,
)

WAN21_VAE = VAEConfig(dim=96, z_dim=16)

# Per-channel statistics of the raw latent (official Wan 2.1 / ComfyUI latent_formats.Wan21).
WAN21_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)


class Encoder3d(EncoderStack):
    """pixels [B, 3, T, H, W] -> [B, 2*z_dim, T', H/8, W/8] (mean and log-variance)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                blocks.append(Resample(out_dim, "downsample3d" if cfg.temperal_downsample[i] else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)
        self.middle = middle_blocks(out_dim)
        self.head = causal_head(out_dim, cfg.z_dim * 2)


class Decoder3d(DecoderStack):
    """latent [B, z_dim, T, h, w] -> pixels [B, 3, T', 8h, 8w].

    Each upsampling conv halves the width, so every level after the first starts at half width.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.decoder_dim * m for m in (mult[-1], *mult[::-1])]
        temperal_upsample = cfg.temperal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = middle_blocks(dims[0])
        blocks: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim //= 2
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(mult) - 1:
                blocks.append(Resample(out_dim, "upsample3d" if temperal_upsample[i] else "upsample2d"))
        self.upsamples = nn.Sequential(*blocks)
        self.head = causal_head(out_dim, 3)


class WanVAE(WanVAEBase):
    """The Wan 2.1 VAE. encode/decode are documented on WanVAEBase."""

    spatial_compression = 8

    def __init__(self, cfg: VAEConfig = WAN21_VAE):
        super().__init__(cfg, Encoder3d(cfg), Decoder3d(cfg))

    def _encode_chunk(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """pixels [B, 3, 1 or 4, H, W] -> latent mean [B, z_dim, 1, H/8, W/8]."""
        return self.conv1(self.encoder(x, cache))[:, : self.z_dim]

    def _decode_chunk(self, z: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """latent [B, z_dim, 1, h, w] -> pixels [B, 3, 1 (first chunk) or 4, 8h, 8w]."""
        return self.decoder(self.conv2(z), cache)
