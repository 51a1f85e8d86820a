"""Spatial tiling for the VAEs, and the chunked encode/decode driver both VAEs share.

Tiling works inside the temporal loop: every tile keeps its own `FeatureCache`, each chunk is run
tile by tile and blended, so decoded frames can still be streamed chunk by chunk. Seams are hidden
by weighting each tile with a linear ramp over the overlap on the sides that have a neighbour and
dividing by the summed weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ...errors import WanInputError
from ...runtime.cancel import check as check_cancel
from .layers import CausalConv3d, FeatureCache, VAEConfig


@dataclass(frozen=True)
class Tiling:
    """Spatial tiles of `tile_px` pixels a side overlapping by `overlap_px` pixels."""

    tile_px: int = 256
    overlap_px: int = 64

    def __post_init__(self):
        if self.tile_px <= 0 or not 0 <= self.overlap_px < self.tile_px:
            raise WanInputError(
                f"VAE tiling needs tile_px > 0 and 0 <= overlap_px < tile_px, got tile_px={self.tile_px}, "
                f"overlap_px={self.overlap_px}"
            )


def as_tiling(tile) -> Tiling | None:
    """None, a Tiling, or a (tile_px, overlap_px) pair."""
    if tile is None or isinstance(tile, Tiling):
        return tile
    try:
        tile_px, overlap_px = tile
    except (TypeError, ValueError):
        raise WanInputError(f"tile must be None, a Tiling or (tile_px, overlap_px), got {tile!r}") from None
    return Tiling(int(tile_px), int(overlap_px))


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, size), the last flush with the end."""
    if tile >= size:
        return [0]
    return list(range(0, size - tile, tile - overlap)) + [size - tile]


def _ramp(length: int, ramp: int, before: bool, after: bool) -> torch.Tensor:
    w = torch.ones(length)
    if ramp > 0:
        up = torch.arange(1, ramp + 1, dtype=torch.float32) / (ramp + 1)
        if before:
            w[:ramp] = up
        if after:
            w[-ramp:] = torch.minimum(w[-ramp:], up.flip(0))
    return w


ChunkFn = Callable[[torch.Tensor, FeatureCache], torch.Tensor]


class Untiled:
    """Runs a chunk function over the whole frame with one cache."""

    def __init__(self):
        self.cache = FeatureCache()

    def __call__(self, fn: ChunkFn, x: torch.Tensor) -> torch.Tensor:
        y = fn(x, self.cache)
        self.cache.end_chunk()
        return y


class Tiled:
    """Runs a chunk function tile by tile over a grid and blends the results.

    Positions are counted in latent pixels: the input of a chunk function is `in_unit` pixels per
    latent pixel (the compression for encode, 1 for decode) and its output `out_unit`.
    """

    def __init__(self, grid_hw: tuple[int, int], tile: int, overlap: int, in_unit: int, out_unit: int):
        gh, gw = grid_hw
        self.in_unit, self.out_unit = in_unit, out_unit
        self.th, self.tw = min(tile, gh), min(tile, gw)
        ys, xs = tile_starts(gh, self.th, overlap), tile_starts(gw, self.tw, overlap)
        self.tiles = [(y, x) for y in ys for x in xs]
        self.caches = [FeatureCache() for _ in self.tiles]
        ramp = overlap * out_unit
        self.masks = []
        self.weight = torch.zeros(gh * out_unit, gw * out_unit)
        for y, x in self.tiles:
            wy = _ramp(self.th * out_unit, ramp, y > 0, y + self.th < gh)
            wx = _ramp(self.tw * out_unit, ramp, x > 0, x + self.tw < gw)
            mask = wy[:, None] * wx[None, :]
            self.masks.append(mask)
            self.weight[y * out_unit:(y + self.th) * out_unit, x * out_unit:(x + self.tw) * out_unit] += mask

    def __call__(self, fn: ChunkFn, x: torch.Tensor) -> torch.Tensor:
        iu, ou = self.in_unit, self.out_unit
        acc = None
        for n, ((y, x0), cache, mask) in enumerate(zip(self.tiles, self.caches, self.masks)):
            check_cancel(f"in the VAE, before tile {n + 1} of {len(self.tiles)}")
            part = fn(x[..., y * iu:(y + self.th) * iu, x0 * iu:(x0 + self.tw) * iu], cache)
            if acc is None:
                b, c, t = part.shape[:3]
                acc = torch.zeros(b, c, t, *self.weight.shape, dtype=torch.float32, device=part.device)
            acc[..., y * ou:(y + self.th) * ou, x0 * ou:(x0 + self.tw) * ou] += part.float() * mask.to(part.device)
            cache.end_chunk()
        return (acc / self.weight.to(acc.device)).to(part.dtype)


class WanVAEBase(nn.Module):
    """Chunked encode/decode and tiling shared by Wan 2.1 and 2.2, on RAW latents (the DiT's
    normalised space is ``wan.job.conditioning.normalize_latent``'s business).

    Subclasses provide `_encode_chunk(pixels, cache) -> latent mean` and
    `_decode_chunk(latent, cache) -> pixels`, plus `spatial_compression`.
    """

    temporal_compression = 4
    spatial_compression: int

    def __init__(self, cfg: VAEConfig, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.encoder = encoder
        self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)  # -> mean and log-variance
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = decoder

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _tile_grid(self, tile, grid_hw: tuple[int, int]) -> tuple[int, int] | None:
        """(tile side, overlap) in latent pixels, or None where the frame is not tiled."""
        tiling = as_tiling(tile)
        if tiling is None:
            return None
        s = self.spatial_compression
        size = max(1, tiling.tile_px // s)
        if size >= max(grid_hw):
            return None
        return size, min(tiling.overlap_px // s, size - 1)

    def _runner(self, tile, grid_hw: tuple[int, int], in_unit: int, out_unit: int):
        grid = self._tile_grid(tile, grid_hw)
        return Untiled() if grid is None else Tiled(grid_hw, *grid, in_unit, out_unit)

    # -- sizes, for checking a job against the memory available before it allocates (wan.job.memory)
    def decoded_shape(self, latent_shape) -> tuple[int, int, int, int, int]:
        """The video ``decode`` makes of a latent of ``latent_shape``."""
        b, _c, t, h, w = (int(n) for n in latent_shape)
        s = self.spatial_compression
        return b, 3, 1 + 4 * (t - 1), h * s, w * s

    def _stage_bytes(self, wide: int, narrow: int, frames: int, batch: int, pixels: int) -> int:
        # the full-resolution conv between `wide` channels and `narrow` (3 colours, folded 2x2 into 12
        # by Wan 2.2): its wide activation and the next layer's output exist at once, over `pixels`
        per_pixel = wide * 3 // max(narrow, 1)
        return 2 * batch * per_pixel * frames * pixels * self.dtype.itemsize

    def decode_bytes(self, latent_shape, tile=None) -> int:
        """A lower bound of the bytes ``decode`` holds at once on the VAE's device: the video it
        returns, and for the largest chunk the decoder's last stage input with its norm's output
        (per tile, plus the float32 blend of the chunk when tiled)."""
        b, _c, t, h, w = (int(n) for n in latent_shape)
        out = self.decoded_shape(latent_shape)
        s, frames = self.spatial_compression, 4 if t > 1 else 1
        grid = self._tile_grid(tile, (h, w))
        tile_px = out[3] * out[4] if grid is None else (min(grid[0], h) * s) * (min(grid[0], w) * s)
        head = self.decoder.head[-1]
        work = self._stage_bytes(head.in_channels, head.out_channels, frames, b, tile_px)
        blend = 0 if grid is None else b * 3 * frames * out[3] * out[4] * 4
        return b * 3 * out[2] * out[3] * out[4] * self.dtype.itemsize + work + blend

    def encode_bytes(self, video_shape, tile=None) -> int:
        """A lower bound of the working bytes ``encode`` holds at once on the VAE's device besides
        its input: the encoder's first stage output with the next layer's, for a chunk of 4 frames
        (1 for a single frame), per tile."""
        b, _c, f, h, w = (int(n) for n in video_shape)
        s, frames = self.spatial_compression, 4 if f > 1 else 1
        grid = self._tile_grid(tile, (h // s, w // s))
        tile_px = h * w if grid is None else (min(grid[0], h // s) * s) * (min(grid[0], w // s) * s)
        conv = self.encoder.conv1
        return self._stage_bytes(conv.out_channels, conv.in_channels, frames, b, tile_px)

    @torch.no_grad()
    def encode(self, video: torch.Tensor, tile=None) -> torch.Tensor:
        """video [B, 3, 1+4k, H, W] in -1..1 -> raw latent mean [B, z_dim, 1+k, H/s, W/s].

        Frames are encoded 1, then 4 at a time; `tile` = (tile_px, overlap_px) tiles space.
        """
        if video.ndim != 5 or video.shape[1] != 3:
            raise WanInputError(f"VAE encode expects video [B, 3, F, H, W], got shape {tuple(video.shape)}")
        b, _, f, h, w = video.shape
        if f % 4 != 1:
            raise WanInputError(f"VAE encode needs 1 + 4k frames (1, 5, 9, ...), got {f}")
        chunks = [video[:, :, :1]] + [video[:, :, i:i + 4] for i in range(1, f, 4)]
        return torch.cat(list(self.encode_chunks(iter(chunks), (h, w), tile, total=len(chunks))), dim=2)

    @torch.no_grad()
    def encode_chunks(self, chunks, size_hw: tuple[int, int], tile=None, total: int | None = None):
        """The streaming ``encode``: ``chunks`` yields video [B, 3, n, H, W] in -1..1, 1 frame
        first and 4 after that (the encoder's causal steps); yields each one's latent [B, z_dim, 1,
        H/s, W/s]. Only one chunk of frames is needed at a time: a long control video is encoded
        without all of it in float at once."""
        s = self.spatial_compression
        h, w = size_hw
        if h % s or w % s:
            raise WanInputError(f"VAE encode needs height and width divisible by {s}, got {h}x{w}")
        run = self._runner(tile, (h // s, w // s), in_unit=s, out_unit=1)
        of = "" if total is None else f" of {total}"
        for n, chunk in enumerate(chunks):
            check_cancel(f"in the VAE encode, before chunk {n + 1}{of}")
            want = 1 if n == 0 else 4
            if chunk.ndim != 5 or chunk.shape[1] != 3 or chunk.shape[2] != want or tuple(chunk.shape[3:]) != (h, w):
                raise WanInputError(f"VAE encode chunk {n + 1} must be [B, 3, {want}, {h}, {w}], "
                                    f"got shape {tuple(chunk.shape)}")
            yield run(self._encode_chunk, chunk.to(device=self.device, dtype=self.dtype))

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, tile=None, frame_callback=None, clamp: bool = True):
        """raw latent [B, z_dim, T, h, w] -> video [B, 3, 1+4(T-1), h*s, w*s] in -1..1.

        One latent frame is decoded at a time (1 video frame, then 4 per latent frame). With
        `frame_callback`, each decoded chunk [B, 3, 1 or 4, H, W] is handed to it instead of kept,
        and None is returned, so memory stays flat in the frame count (``decode_chunks`` is the
        same as a generator).
        """
        s = self.spatial_compression
        self._check_latent(latent)
        b, _, t, h, w = latent.shape
        out = None
        if frame_callback is None:
            out = torch.empty(b, 3, 1 + 4 * (t - 1), h * s, w * s, dtype=self.dtype, device=self.device)
        pos = 0
        for y in self.decode_chunks(latent, tile, clamp):
            if frame_callback is not None:
                frame_callback(y)
            else:
                out[:, :, pos:pos + y.shape[2]] = y
            pos += y.shape[2]
        return out

    @torch.no_grad()
    def decode_chunks(self, latent: torch.Tensor, tile=None, clamp: bool = True):
        """``decode`` as a generator: yields each decoded chunk [B, 3, 1 (the first) or 4, H, W]
        in -1..1, one latent frame's worth, on the VAE's device."""
        self._check_latent(latent)
        b, _, t, h, w = latent.shape
        z = latent.to(device=self.device, dtype=self.dtype)
        run = self._runner(tile, (h, w), in_unit=1, out_unit=self.spatial_compression)
        for i in range(t):
            check_cancel(f"in the VAE decode, before latent frame {i + 1} of {t}")
            y = run(self._decode_chunk, z[:, :, i:i + 1])
            yield y.clamp(-1.0, 1.0) if clamp else y

    def _check_latent(self, latent: torch.Tensor) -> None:
        if latent.ndim != 5 or latent.shape[1] != self.z_dim:
            raise WanInputError(
                f"VAE decode expects a latent [B, {self.z_dim}, T, h, w], got shape {tuple(latent.shape)}"
            )
        if latent.shape[2] < 1:
            raise WanInputError("VAE decode needs at least one latent frame, got 0")
