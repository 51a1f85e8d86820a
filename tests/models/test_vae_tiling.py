"""Spatial tiling of the VAEs.

The blend itself is checked exactly with a local chunk function (a tiled pass of a per-pixel
function must reproduce the untiled pass). Tiled decode/encode of the tiny random-weight VAEs is
compared with untiled by PSNR over the -1..1 range: the middle attention block is global, so a tile
sees a different context and random weights amplify that. On a 4x6 latent cut into two 4-latent
tiles overlapping by 2 we require >= 15 dB (measured: decode 20 / 23 dB, encode 27 / 34 dB for
2.1 / 2.2) and 6 dB closer
to untiled than the decode of an unrelated latent (measured ~13 dB: random weights' biases make
all outputs alike).
"""

import math

import pytest
import torch
from vae_fixtures import TINY21, TINY22, random_weights

from wan.errors import WanInputError
from wan.models.vae.wan21 import WanVAE
from wan.models.vae.wan22 import WanVAE22
from wan.models.vae.base import Tiled, Tiling, Untiled, as_tiling, tile_starts
from wan.models.vae.layers import FeatureCache

MIN_PSNR_DB = 15.0


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4.0 / ((a - b) ** 2).mean().item())


def test_tile_starts_cover_and_overlap():
    assert tile_starts(10, 4, 1) == [0, 3, 6]
    assert tile_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    assert tile_starts(4, 8, 2) == [0]


@pytest.mark.parametrize("grid,tile,overlap", [((7, 9), 3, 1), ((8, 8), 4, 2), ((5, 12), 5, 0)])
def test_blend_reproduces_a_local_function_exactly(grid, tile, overlap):
    # A per-pixel function (x2 nearest upsample, then a per-pixel nonlinearity) does not care where
    # the tile edges fall, so the blended tiled result must equal the untiled one.
    def fn(x, cache: FeatureCache):
        return torch.tanh(x.repeat_interleave(2, -1).repeat_interleave(2, -2) * 3)

    x = torch.randn(2, 3, 1, *grid)
    tiled = Tiled(grid, tile, overlap, in_unit=1, out_unit=2)
    torch.testing.assert_close(tiled(fn, x), Untiled()(fn, x), rtol=1e-6, atol=1e-6)
    assert len(tiled.caches) == len(tile_starts(grid[0], min(tile, grid[0]), overlap)) * len(
        tile_starts(grid[1], min(tile, grid[1]), overlap))


def test_tiling_arguments():
    assert as_tiling(None) is None
    assert as_tiling((64, 16)) == Tiling(64, 16)
    with pytest.raises(WanInputError, match="overlap_px"):
        Tiling(32, 32)
    with pytest.raises(WanInputError, match="tile must be"):
        as_tiling("big")


@pytest.mark.parametrize("cls,cfg", [(WanVAE, TINY21), (WanVAE22, TINY22)], ids=["2.1", "2.2"])
def test_tiled_decode_and_encode_close_to_untiled(cls, cfg):
    torch.set_num_threads(2)
    vae = cls(cfg).eval()
    vae.load_state_dict(random_weights(vae.state_dict(), seed=5))
    s = vae.spatial_compression
    z = torch.randn(1, cfg.z_dim, 2, 4, 6)
    full = vae.decode(z)
    # A tile as large as the frame is the untiled path.
    assert torch.equal(vae.decode(z, tile=(6 * s, 2 * s)), full)
    chunks = []
    vae.decode(z, tile=(4 * s, 2 * s), frame_callback=chunks.append)
    tiled = torch.cat(chunks, 2)
    assert tiled.shape == full.shape
    other = vae.decode(torch.randn_like(z))
    assert psnr(tiled, full) >= MIN_PSNR_DB
    assert psnr(tiled, full) > psnr(other, full) + 6

    video = torch.rand(1, 3, 5, 4 * s, 6 * s) * 2 - 1
    lat = vae.encode(video)
    lat_tiled = vae.encode(video, tile=(4 * s, 2 * s))
    scale = lat.abs().max()
    assert lat_tiled.shape == lat.shape
    assert psnr(lat_tiled / scale, lat / scale) >= MIN_PSNR_DB
