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

import itertools
import logging
import os
import secrets
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
from .video_metadata import add_gif_comment, add_webp_exif, write_ffmetadata

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

# The format a file name asks for (the CLI's --out, a pipeline's write): .mp4 is H.264.
BY_EXTENSION = {".mp4": "video/h264-mp4", ".webm": "video/webm", ".gif": "image/gif", ".webp": "image/webp"}


def format_of(path: str | os.PathLike) -> str:
    """The format ``path``'s extension asks for (``BY_EXTENSION``), or WanInputError."""
    suffix = Path(path).suffix.lower()
    if suffix not in BY_EXTENSION:
        raise WanInputError(f"{short(Path(path).name)}: the file name must end in {', '.join(BY_EXTENSION)}")
    return BY_EXTENSION[suffix]


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
    check_options(format, fps, loop_count, crf, audio)
    frames = _sequence(frames)
    if len(frames) == 0:
        raise WanInputError("no frames to write: the image batch is empty")
    order = list(range(len(frames)))
    if pingpong:
        order += order[-2:0:-1]  # back to frame 1: 2N-2 frames, the ends not doubled
    return write_frames(path, (frames[i] for i in order), count=len(order), fps=fps, format=format,
                        loop_count=loop_count, crf=crf, audio=audio, metadata=metadata, on_frame=on_frame)


def write_frames(
    path: str | os.PathLike,
    frames: Iterable,
    *,
    count: int,
    fps: float,
    format: str,
    loop_count: int = 0,
    crf: int | None = None,
    audio: tuple[Any, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
    on_frame: Callable[[int, int], None] | None = None,
) -> Path:
    """``write_video`` of a stream: ``frames`` yields ``count`` frames [H, W, C] one at a time (a
    generator that decodes them, say), each piped to ffmpeg before the next is asked for, so memory
    is flat in the frame count. ``count`` times the audio and the progress; the other arguments are
    ``write_video``'s."""
    fmt, fps, crf = check_options(format, fps, loop_count, crf, audio)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise WanInputError(f"no frames to write: count must be an integer >= 1, got {count!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise WanInputError(f"output folder does not exist: {path.parent}")
    name_bytes = len(path.stem.encode("utf-8", "surrogatepass")) + len("..12345678.part")
    if name_bytes > NAME_MAX_BYTES:  # the temporary name below must fit the file system too
        raise WanInputError(f"file name {short(path.name)} is too long: {name_bytes} bytes while it is "
                            f"written; the limit is {NAME_MAX_BYTES}")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise WanInputError("no frames to write: the image batch is empty")
    first = _to_rgb24(first, 0)  # its size makes ffmpeg's command
    height, width = first.shape[:2]
    # Not mkstemp: its 0600 mode would survive the rename; O_EXCL still guards against clashes.
    tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.part"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    audio_tmp = meta_tmp = None
    try:
        audio_args: list[str] = []
        if audio is not None:
            audio_tmp = tmp.with_suffix(".f32")
            audio_args = _write_audio(audio_tmp, audio, count / fps)
        if metadata and fmt.muxer in ("mp4", "webm"):
            meta_tmp = tmp.with_suffix(".meta")
            write_ffmetadata(meta_tmp, metadata)
        cmd = _command(fmt, width, height, fps, loop_count, crf, audio_args, meta_tmp, tmp)
        _encode(cmd, itertools.chain([first], frames), count, first.shape, on_frame)
        if metadata and fmt.muxer == "gif":
            add_gif_comment(tmp, metadata)
        elif metadata and fmt.muxer == "webp":
            add_webp_exif(tmp, metadata, width, height)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for extra in (audio_tmp, meta_tmp):
            if extra is not None:
                extra.unlink(missing_ok=True)
    return path


def check_options(format, fps, loop_count=0, crf=None, audio=None) -> tuple[VideoFormat, float, int | None]:
    """(format, fps, crf) ready for ffmpeg, or WanInputError: callers check before making frames."""
    fmt = _format(format)
    fps = _check_fps(fps)
    if not isinstance(loop_count, int) or isinstance(loop_count, bool) or loop_count < 0:
        raise WanInputError(f"loop_count must be an integer >= 0 (0 = loop forever), got {loop_count!r}")
    crf = _check_crf(fmt, format, crf)
    if audio is not None and fmt.audio_codec is None:
        raise WanInputError(f"{format} cannot hold audio; use video/h264-mp4, video/h265-mp4 or video/webm")
    return fmt, fps, crf


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


def _encode(cmd, frames, count: int, shape, on_frame) -> None:
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            try:
                written = 0
                for position, frame in enumerate(frames):
                    check_cancel(f"while writing {position} of {count} frames")
                    if position >= count:
                        raise WanInputError(f"more frames than the {count} announced")
                    if on_frame is not None:
                        on_frame(position, count)
                    frame = _to_rgb24(frame, position)
                    if frame.shape != shape:
                        raise WanInputError(
                            f"frame {position} is {frame.shape[1]}x{frame.shape[0]}, "
                            f"frame 0 is {shape[1]}x{shape[0]}: all frames must have one size"
                        )
                    proc.stdin.write(frame.data)  # the array's own bytes, no copy
                    written += 1
                if written != count:
                    raise WanInputError(f"{written} frames written, {count} announced")
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
