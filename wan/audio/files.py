"""Decoding an audio file through imageio-ffmpeg's bundled ffmpeg (a dependency already, for video).

ffmpeg writes the first audio stream as a float32 WAV to a pipe, whose ``fmt`` chunk gives the
channel count and sample rate: no ffprobe (imageio-ffmpeg ships none) and no parsing of ffmpeg's
human-readable log. Nothing is written to disk.
"""

from __future__ import annotations

import os
import struct
import subprocess

import numpy as np
import torch

from ..errors import WanFileError

# A guard against a small file that decodes to hours (a hostile or broken header): 20 minutes of
# 48 kHz stereo float is ~0.5 GB, longer than any clip a video is made for.
MAX_SECONDS = 1200.0
_WAVE_FLOAT = 3
_WAVE_EXTENSIBLE = 0xFFFE


def _chunks(data: bytes, path: str):
    """(id, payload) of each RIFF chunk; the data chunk's size is unknown when ffmpeg writes to a
    pipe (it cannot seek back to fill it in), so ``data`` runs to the end of the stream."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WanFileError(path, "ffmpeg produced no audio (not an audio file, or no audio stream)")
    at = 12
    while at + 8 <= len(data):
        cid, size = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        if cid == b"data":
            yield cid, data[at + 8:]
            return
        yield cid, data[at + 8:at + 8 + size]
        at += 8 + size + (size & 1)


def _parse_wav(data: bytes, path: str) -> tuple[torch.Tensor, int]:
    fmt = samples = None
    for cid, payload in _chunks(data, path):
        if cid == b"fmt ":
            fmt = payload
        elif cid == b"data":
            samples = payload
    if fmt is None or len(fmt) < 16 or samples is None:
        raise WanFileError(path, "ffmpeg's decoded stream has no format or no samples")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag not in (_WAVE_FLOAT, _WAVE_EXTENSIBLE) or bits != 32 or channels < 1 or rate < 1:
        raise WanFileError(path, f"unexpected decoded format (tag {tag}, {bits} bits, {channels} channels, {rate} Hz)")
    frames = len(samples) // (4 * channels)
    if frames == 0:
        raise WanFileError(path, "the file holds no audio samples (empty or truncated)")
    pcm = np.frombuffer(samples, dtype="<f4", count=frames * channels).reshape(frames, channels)
    return torch.from_numpy(pcm.T.copy()), int(rate)


def load_audio(path: str | os.PathLike, timeout: float | None = 600.0,
               max_seconds: float = MAX_SECONDS) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of ``path``: (float32 waveform [channels, samples] in -1..1 for
    integer sources, sample rate). A missing, empty, truncated or non-audio file, or one longer than
    ``max_seconds``, is a WanFileError naming it."""
    import imageio_ffmpeg

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WanFileError(path, "audio file not found")
    if os.path.getsize(path) == 0:
        raise WanFileError(path, "the audio file is empty")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
           "-i", path, "-map", "0:a:0", "-vn", "-t", f"{max_seconds + 1:g}", "-f", "wav", "-acodec", "pcm_f32le", "-"]
    try:
        run = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WanFileError(path, f"decoding took over {timeout:g} s (a hostile or damaged file?)") from None
    if run.returncode != 0:
        message = run.stderr.decode("utf-8", "replace").strip().splitlines()
        why = message[-1][-300:] if message else f"exit {run.returncode}"
        raise WanFileError(path, f"not a readable audio file (ffmpeg: {why})")
    waveform, rate = _parse_wav(run.stdout, path)
    if waveform.shape[1] > max_seconds * rate:
        raise WanFileError(path, f"the audio is longer than {max_seconds:g} s, the most this loader reads")
    if not torch.isfinite(waveform).all():
        raise WanFileError(path, "the decoded audio holds NaN or infinite samples")
    return waveform, rate
