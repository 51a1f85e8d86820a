"""A decoder as cheap as a Wan VAE can be at full size, for decode-to-a-file tests (no tests here).

Wan 2.1's real compression (4x time, 8x space: its ``Resample`` layers up 2x in time and space twice,
causal in time through the feature cache, then a plain 2x in space), driven chunk by chunk by
``WanVAEBase``, with 4 channels and without the residual and attention stages, which cost a quarter
of a second per 832x480 frame on a CPU at any width. Run as a script (``python
stream_vae.py FRAMES OUT``) it decodes a latent of that many frames at 832x480 straight to OUT and
prints its own peak RSS (VmHWM) in bytes: the test runs it in a fresh process per size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from wan.job.decode_file import decode_to_file
from wan.models.vae.base import WanVAEBase
from wan.models.vae.layers import CausalConv3d, DecoderStack, Resample, VAEConfig


class CheapDecoder(DecoderStack):
    def __init__(self, z_dim: int = 16, width: int = 4):
        super().__init__()
        self.conv1 = CausalConv3d(z_dim, width, 1)
        self.middle = nn.Sequential()
        # the two 3d resamples make the 4x in time (and 4x in space); a plain 2x makes the rest
        self.upsamples = nn.Sequential(Resample(width, "upsample3d", up_dim=width),
                                       Resample(width, "upsample3d", up_dim=width))
        self.head = nn.Sequential(nn.Upsample(scale_factor=(1.0, 2.0, 2.0)), CausalConv3d(width, 3, 1))


class CheapVAE(WanVAEBase):
    spatial_compression = 8

    def __init__(self, scale: float = 0.3):
        super().__init__(VAEConfig(dim=1, z_dim=16), nn.Module(), CheapDecoder())
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * scale)

    def _decode_chunk(self, z, cache):
        return self.decoder(self.conv2(z), cache)


def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(frames: int, out: str) -> None:
    torch.set_num_threads(1)
    vae = CheapVAE(scale=0.05).eval()  # small weights: soft frames, which the encoder takes quickly
    t = (frames - 1) // 4 + 1
    # One latent frame repeated as a stride-0 view: the input takes no memory at any length, so the
    # peak is the decode-and-write path's alone (a real latent is 1/12 of its float frames' bytes).
    # Smooth (a few slow waves per channel), so the encoder has little to do and the test stays quick.
    yy, xx = torch.meshgrid(torch.linspace(0, 3, 60), torch.linspace(0, 3, 104), indexing="ij")
    waves = torch.stack([torch.sin(yy * (1 + c % 4) + xx * (1 + c // 4)) for c in range(16)])
    latent = waves[None, :, None].expand(1, 16, t, 60, 104)
    decode_to_file(vae, latent, out, fps=16, format="video/h264-mp4")
    print(peak_rss())


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
