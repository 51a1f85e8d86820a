"""Writing frames to gif / webp / mp4 (H.264, H.265) / webm through imageio-ffmpeg's bundled ffmpeg.

Frames are converted to rgb24 one at a time and piped to ffmpeg, so a clip is never held twice in
memory. The file is written under a hidden temporary name in the target folder and renamed only
once ffmpeg has finished: a failed or interrupted encode leaves nothing behind.

Metadata (ComfyUI's prompt and workflow) goes where ComfyUI's own savers and its frontend look:
- mp4 / webm: one container tag per key (``prompt``, ``workflow``, ...) holding JSON, as core
  ComfyUI's SaveVideo writes them; mp4 needs ``-movflags use_metadata_tags`` to keep custom keys.
- webp: an EXIF chunk with ``"<key>:<json>"`` strings in IFD0 tags 0x0110 (prompt) and 0x010F
  downwards (workflow, then the other keys), as core SaveAnimatedWEBP writes them.
- gif: a GIF comment extension holding one JSON object ``{key: value, ...}`` (GIF has no tags).

libwebp merges identical consecutive frames into one longer frame (as in core ComfyUI's webp
saver): a webp of a still scene holds fewer frames than were given, with the same total duration.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .errors import WanInputError
from .runtime.cancel import check as check_cancel
from .video_checks import NAME_MAX_BYTES, fps_problem, short

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoFormat:
    extension: str
    muxer: str
    codec_args: tuple[str, ...]
    even_size: bool = False  # yuv420p in these codecs needs even width and height
    crf_range: tuple[int, int] | None = None
    default_crf: int | None = None
    audio_codec: tuple[str, ...] | None = None
    loops: bool = False


FORMATS: dict[str, VideoFormat] = {
    "image/gif": VideoFormat(
        "gif", "gif", (), loops=True,
    ),
    "image/webp": VideoFormat(
        "webp", "webp", ("-c:v", "libwebp_anim", "-lossless", "0", "-quality", "90", "-pix_fmt", "yuv420p"),
        loops=True,
    ),
    "video/h264-mp4": VideoFormat(
        "mp4", "mp4", ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "medium"),
        even_size=True, crf_range=(0, 51), default_crf=19, audio_codec=("-c:a", "aac", "-b:a", "192k"),
    ),
    "video/h265-mp4": VideoFormat(
        "mp4", "mp4",
        # hvc1 tag: Apple players refuse the default hev1 tag.
        ("-c:v", "libx265", "-pix_fmt", "yuv420p", "-tag:v", "hvc1", "-x265-params", "log-level=error"),
        even_size=True, crf_range=(0, 51), default_crf=22, audio_codec=("-c:a", "aac", "-b:a", "192k"),
    ),
    "video/webm": VideoFormat(
        "webm", "webm", ("-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "0", "-row-mt", "1"),
        even_size=True, crf_range=(0, 63), default_crf=32, audio_codec=("-c:a", "libopus", "-b:a", "128k"),
    ),
}

# Core ComfyUI's EXIF slots for animated webp: prompt in Model, the rest from Make downwards.
_EXIF_PROMPT_TAG = 0x0110
_EXIF_FIRST_EXTRA_TAG = 0x010F


def extension(format: str) -> str:
    """File extension (no dot) that ``format`` writes."""
    return _format(format).extension


def write_video(
    path: str | os.PathLike,
    frames,
    *,
    fps: float,
    format: str,
    loop_count: int = 0,
    pingpong: bool = False,
    crf: int | None = None,
    audio: tuple[Any, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
    on_frame: Callable[[int, int], None] | None = None,
) -> Path:
    """Encode ``frames`` to ``path`` and return it.

    frames: a [N, H, W, C] tensor/array (C = 3, or 4 with alpha dropped), or a sequence/iterable of
        [H, W, C] frames; float in 0..1 or uint8.
    fps: frames per second (> 0). loop_count: gif/webp repeats, 0 = forever. pingpong: append the
        frames backwards without repeating the ends (2N-2 frames). crf: quality of the video formats
        (lower is better); None picks the format's default.
    audio: (waveform [channels, samples], sample_rate), trimmed to the video's length; mp4/webm only.
    metadata: key -> JSON-able value (or a JSON string), embedded as described in the module doc.
    on_frame: called as on_frame(position, total) before each frame is written; may raise to abort.
    """
    fmt = _format(format)
    fps = _check_fps(fps)
    if not isinstance(loop_count, int) or isinstance(loop_count, bool) or loop_count < 0:
        raise WanInputError(f"loop_count must be an integer >= 0 (0 = loop forever), got {loop_count!r}")
    crf = _check_crf(fmt, format, crf)
    if audio is not None and fmt.audio_codec is None:
        raise WanInputError(f"{format} cannot hold audio; use video/h264-mp4, video/h265-mp4 or video/webm")
    frames = _sequence(frames)
    if len(frames) == 0:
        raise WanInputError("no frames to write: the image batch is empty")
    first = _to_rgb24(frames[0], 0)
    height, width = first.shape[:2]
    order = list(range(len(frames)))
    if pingpong:
        order += order[-2:0:-1]  # back to frame 1: 2N-2 frames, the ends not doubled

    path = Path(path)
    if not path.parent.is_dir():
        raise WanInputError(f"output folder does not exist: {path.parent}")
    name_bytes = len(path.stem.encode("utf-8", "surrogatepass")) + len("..12345678.part")
    if name_bytes > NAME_MAX_BYTES:  # the temporary name below must fit the file system too
        raise WanInputError(f"file name {short(path.name)} is too long: {name_bytes} bytes while it is "
                            f"written; the limit is {NAME_MAX_BYTES}")
    # Not mkstemp: its 0600 mode would survive the rename; O_EXCL still guards against clashes.
    tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.part"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    audio_tmp = meta_tmp = None
    try:
        audio_args: list[str] = []
        if audio is not None:
            audio_tmp = tmp.with_suffix(".f32")
            audio_args = _write_audio(audio_tmp, audio, len(order) / fps)
        if metadata and fmt.muxer in ("mp4", "webm"):
            meta_tmp = tmp.with_suffix(".meta")
            _write_ffmetadata(meta_tmp, metadata)
        cmd = _command(fmt, width, height, fps, loop_count, crf, audio_args, meta_tmp, tmp)
        _encode(cmd, frames, order, first, on_frame)
        if metadata and fmt.muxer == "gif":
            _add_gif_comment(tmp, metadata)
        elif metadata and fmt.muxer == "webp":
            _add_webp_exif(tmp, metadata, width, height)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for extra in (audio_tmp, meta_tmp):
            if extra is not None:
                extra.unlink(missing_ok=True)
    return path


def _format(format: str) -> VideoFormat:
    try:
        return FORMATS[format]
    except (KeyError, TypeError):
        raise WanInputError(f"unknown video format {format!r}; expected one of {sorted(FORMATS)}") from None


def _check_fps(fps) -> float:
    if problem := fps_problem(fps):
        raise WanInputError(problem)
    return float(fps)


def _check_crf(fmt: VideoFormat, format: str, crf) -> int | None:
    if fmt.crf_range is None or crf is None:
        return fmt.default_crf
    if problem := crf_problem(format, crf):
        raise WanInputError(problem)
    return crf


def crf_problem(format: str, crf) -> str | None:
    """Why ``crf`` cannot be the quality of ``format``'s codec (h264/h265 0..51, webm 0..63), or
    None; crf None (the codec's default) and the formats without a crf (gif, webp) take any."""
    fmt = FORMATS.get(format) if isinstance(format, str) else None
    if fmt is None:
        return f"unknown video format {format!r}; expected one of {sorted(FORMATS)}"
    if fmt.crf_range is None or crf is None:
        return None
    low, high = fmt.crf_range
    if not isinstance(crf, int) or isinstance(crf, bool) or not low <= crf <= high:
        return f"crf for {format} must be an integer in {low}..{high}, got {crf!r}"
    return None


def _sequence(frames):
    """Indexable view of ``frames`` holding references only (a tensor or array is used as is)."""
    if hasattr(frames, "shape"):
        if len(frames.shape) != 4:
            raise WanInputError(f"frames must be [N, H, W, C], got shape {tuple(frames.shape)}")
        return frames
    if isinstance(frames, (list, tuple)):
        return frames
    if isinstance(frames, Iterable):
        return list(frames)
    raise WanInputError(f"frames must be a tensor, an array or a sequence of frames, got {type(frames).__name__}")


def _to_rgb24(frame, index: int) -> np.ndarray:
    """One [H, W, C] float 0..1 or uint8 frame -> contiguous uint8 [H, W, 3]."""
    shape = tuple(getattr(frame, "shape", ()))
    if len(shape) != 3 or shape[2] not in (3, 4) or shape[0] < 1 or shape[1] < 1:
        raise WanInputError(f"frame {index} must be [H, W, 3] (or 4 with alpha), got shape {shape}")
    if hasattr(frame, "detach"):  # torch, imported only when the caller already has it
        import torch

        frame = frame.detach()[..., :3]
        if frame.dtype == torch.uint8:
            return np.ascontiguousarray(frame.cpu().numpy())
        if not frame.dtype.is_floating_point:
            raise WanInputError(f"frame {index} must be float (0..1) or uint8, got {frame.dtype}")
        frame = frame.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
        return np.ascontiguousarray(frame.cpu().numpy())
    frame = np.asarray(frame)[..., :3]
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    if not np.issubdtype(frame.dtype, np.floating):
        raise WanInputError(f"frame {index} must be float (0..1) or uint8, got {frame.dtype}")
    return np.ascontiguousarray(np.clip(np.round(frame.astype(np.float32) * 255.0), 0, 255).astype(np.uint8))


def _write_audio(path: Path, audio, duration: float) -> list[str]:
    """Write interleaved float32 samples to ``path``; return ffmpeg's input arguments for them."""
    try:
        waveform, rate = audio
    except (TypeError, ValueError):
        raise WanInputError("audio must be (waveform [channels, samples], sample_rate)") from None
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().float().cpu().numpy()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2 or waveform.shape[0] < 1 or waveform.shape[1] < 1:
        raise WanInputError(f"audio waveform must be [channels, samples], got shape {waveform.shape}")
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise WanInputError(f"audio sample rate must be a positive integer, got {rate!r}")
    # Audio longer than the clip would stretch the file's duration past the last frame.
    waveform = waveform[:, : max(1, round(duration * rate))]
    np.ascontiguousarray(waveform.T).tofile(path)
    return ["-f", "f32le", "-ar", str(rate), "-ac", str(waveform.shape[0]), "-i", str(path)]


def _write_ffmetadata(path: Path, metadata: Mapping[str, Any]) -> None:
    """ffmpeg's FFMETADATA file: on ffmpeg's command line a big graph's workflow exceeds the OS's limit."""
    def escape(text: str) -> str:
        for ch in "\\=;#\n":
            text = text.replace(ch, "\\" + ch)
        return text

    lines = [";FFMETADATA1"] + [f"{escape(str(key))}={escape(_json(value))}" for key, value in metadata.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _command(fmt, width, height, fps, loop_count, crf, audio_args, metadata_file, out: Path) -> list[str]:
    import imageio_ffmpeg

    rate = Fraction(fps).limit_denominator(1001)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(rate), "-i", "-",
        *audio_args,
    ]
    if metadata_file is not None:  # the last input: after the frames (0) and the audio (1), if any
        cmd += ["-f", "ffmetadata", "-i", str(metadata_file)]
    filters = []
    if fmt.even_size and (width % 2 or height % 2):
        log.warning(
            "%dx%d frames padded to %dx%d: %s needs even width and height",
            width, height, width + width % 2, height + height % 2, fmt.codec_args[1],
        )
        filters.append("pad=ceil(iw/2)*2:ceil(ih/2)*2")
    if fmt.muxer == "gif":
        # One palette for the whole clip: ffmpeg's default fixed palette bands badly.
        filters.append("split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse")
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += list(fmt.codec_args)
    if crf is not None:
        cmd += ["-crf", str(crf)]
    if fmt.loops:
        cmd += ["-loop", str(loop_count)]
    if audio_args:
        cmd += ["-map", "0:v:0", "-map", "1:a:0", *fmt.audio_codec]
    if metadata_file is not None:
        if not audio_args:
            cmd += ["-map", "0:v:0"]
        cmd += ["-map_metadata", "2" if audio_args else "1"]
        if fmt.muxer == "mp4":
            cmd += ["-movflags", "+use_metadata_tags+faststart"]
    cmd += ["-f", fmt.muxer, str(out)]
    return cmd


def _encode(cmd, frames, order, first, on_frame) -> None:
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            converted = {0: first}
            try:
                for position, index in enumerate(order):
                    check_cancel(f"while writing {position} of {len(order)} frames")
                    if on_frame is not None:
                        on_frame(position, len(order))
                    frame = converted.pop(index, None)
                    if frame is None:
                        frame = _to_rgb24(frames[index], index)
                    if frame.shape != first.shape:
                        raise WanInputError(
                            f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                            f"frame 0 is {first.shape[1]}x{first.shape[0]}: all frames must have one size"
                        )
                    proc.stdin.write(frame.tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg stopped early; its exit status and message say why
            code = _wait(proc)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()
            raise RuntimeError(f"ffmpeg failed (exit {code}): {message[-2000:] or 'no message'}")


def _wait(proc: subprocess.Popen) -> int:
    """ffmpeg's exit status; it may still be encoding the frames it holds: the cancel hook is polled."""
    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            check_cancel("while the encoder finishes the video")


def _json(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _add_gif_comment(path: Path, metadata: Mapping[str, Any]) -> None:
    """Insert a comment extension after the GIF's header and global colour table."""
    data = path.read_bytes()
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise RuntimeError(f"ffmpeg wrote no GIF header to {path.name}")
    flags = data[10]
    at = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    text = json.dumps({key: _loads(value) for key, value in metadata.items()}).encode("utf-8")
    blocks = b"".join(bytes([len(chunk)]) + chunk for chunk in (text[i : i + 255] for i in range(0, len(text), 255)))
    comment = b"\x21\xfe" + blocks + b"\x00"
    # A comment needs GIF89a; ffmpeg writes 89a whenever it loops or animates, but be sure.
    path.write_bytes(b"GIF89a" + data[6:at] + comment + data[at:])


def _loads(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _add_webp_exif(path: Path, metadata: Mapping[str, Any], width: int, height: int) -> None:
    """Append an EXIF chunk (flagged in VP8X) to the RIFF/WEBP file ffmpeg wrote."""
    from PIL import Image

    exif = Image.Exif()
    tag = _EXIF_FIRST_EXTRA_TAG
    for key, value in metadata.items():
        if key == "prompt":
            exif[_EXIF_PROMPT_TAG] = f"prompt:{_json(value)}"
        else:
            exif[tag] = f"{key}:{_json(value)}"
            tag -= 1
    payload = exif.tobytes()
    if payload.startswith(b"Exif\x00\x00"):
        payload = payload[6:]  # the WebP chunk holds the bare TIFF structure, as Pillow writes it
    data = bytearray(path.read_bytes())
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise RuntimeError(f"ffmpeg wrote no RIFF/WEBP header to {path.name}")
    if data[12:16] != b"VP8X":
        # A simple (single-image) WebP: the extended header that announces EXIF must be added.
        vp8x = bytes([0, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        data[12:12] = b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    data[20] |= 0x08  # VP8X flags: EXIF present
    data += b"EXIF" + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))
