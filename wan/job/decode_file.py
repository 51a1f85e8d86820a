"""Decode straight to a file: a latent is decoded one latent frame at a time and each chunk's frames
(uint8, made on the VAE's device) are piped into the video writer before the next is decoded, so
host RAM is flat in the frame count. Formats, audio, metadata, frame rate, atomic output: those of
``wan.video.write_frames`` (the writer Wan Video Combine uses), so one file is the same either way.

Pingpong plays the frames backwards after the forward pass; the forward frames are spooled to an
anonymous file beside the output (deleted when closed) and read back in reverse, one at a time,
instead of being held.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..errors import WanInputError
from ..video import write_frames
from .memory import require, size_inputs


def decode_to_file(
    vae,
    latent: torch.Tensor,
    path: str | os.PathLike,
    *,
    fps: float,
    format: str,
    tile=None,
    loop_count: int = 0,
    pingpong: bool = False,
    crf: int | None = None,
    audio: tuple[Any, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
    on_frame: Callable[[int, int], None] | None = None,
) -> Path:
    """RAW latent [1, C, T, h, w] -> the video file ``path`` (returned), frames [1 + 4(T-1)].

    ``tile``: the VAE's spatial tiling, as ``decode_frames``; the other keywords are
    ``wan.video.write_video``'s. The file's frames equal those of ``write_video(path,
    decode_frames(vae, latent), ...)``: the same conversion to uint8, in the same order.
    """
    if not isinstance(latent, torch.Tensor) or latent.ndim != 5 or latent.shape[0] != 1:
        shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise WanInputError(f"decode to a file takes one video latent [1, C, T, h, w], got {shape}")
    check_stream_decode(vae, latent.shape, tile)
    n = vae.decoded_shape(latent.shape)[2]
    count = n + max(n - 2, 0) if pingpong else n
    path = Path(path)
    spool = tempfile.TemporaryFile(dir=path.parent) if pingpong and n > 2 and path.parent.is_dir() else None
    try:
        return write_frames(path, _frames(vae, latent, tile, spool), count=count, fps=fps, format=format,
                            loop_count=loop_count, crf=crf, audio=audio, metadata=metadata, on_frame=on_frame)
    finally:
        if spool is not None:
            spool.close()


def to_uint8(chunk: torch.Tensor) -> np.ndarray:
    """Decoded frames [3, n, H, W] in -1..1 -> uint8 [n, H, W, 3] on the host, by the same float
    steps as ``decode_frames`` followed by the writer's conversion (so both give equal bytes)."""
    x = chunk.float().clamp(-1, 1)  # one new buffer, then in place: a chunk is ~20 MB at 832x480
    x = x.add_(1).div_(2).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def _frames(vae, latent: torch.Tensor, tile, spool):
    """The decoded frames one by one (uint8 [H, W, 3]); with ``spool``, then backwards from the
    last but one to frame 1."""
    written = 0
    for chunk in vae.decode_chunks(latent, tile, clamp=False):  # to_uint8 clamps
        for frame in to_uint8(chunk[0]):
            if spool is not None:
                spool.write(frame.data)
            written += 1
            yield frame
    if spool is None:
        return
    shape = frame.shape
    size = frame.nbytes
    for index in range(written - 2, 0, -1):
        spool.seek(index * size)
        yield np.frombuffer(spool.read(size), dtype=np.uint8).reshape(shape)


def check_stream_decode(vae, latent_shape, tile=None) -> None:
    """decode_to_file of a latent [shape]: what one chunk needs on the VAE's device. Counted as a
    two-latent-frame ``decode_bytes`` (5 output frames for the chunk's 4: the extra one is less than
    the causal cache that certainly exists at the decoder's last conv), so still a lower bound; the
    host holds one chunk of uint8 frames, which is not counted."""
    b, c, t, h, w = (int(v) for v in latent_shape)
    needs = {str(vae.device): vae.decode_bytes((b, c, min(t, 2), h, w), tile)}
    _b, _c, f, height, width = vae.decoded_shape(latent_shape)
    require(needs, "for the decoder's buffers", "decoding a latent of " + size_inputs(width, height, f),
            "the size of the latent or enable VAE tiling")
