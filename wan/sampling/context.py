"""Context windows: denoise a long video as overlapping windows of latent frames and fuse the results.

The window lists and fuse weights are those of ComfyUI's ``comfy/context_windows.py`` (0.3.75) for
the same parameters, so a workflow gives the same video in both; the schedules there descend from
AnimateDiff-Evolved. Uniform schedules move their windows each step (by a bit-reversed fraction of
the step index) so the seams do not stay in place.

Units: ``ContextOptions`` holds latent frames. ``ContextOptions.from_pixel_frames`` converts pixel
frames as ComfyUI's "WAN Context Windows" node does: ``length = (frames - 1) // 4 + 1``,
``overlap = (overlap - 1) // 4 + 1`` (0 stays 0); the stride is a count of dilation levels and is
not converted. (Kijai's WanVideoWrapper uses ``overlap // 4`` and ``stride // 4`` instead; its window
lists differ for the same pixel inputs.)

Frames are dim 2 of latents [B, C, F, H, W].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import WanInputError
from ..finite import check_fields
from ..values import refuse, window_problem
from .step import Step

SCHEDULES = ("uniform_standard", "uniform_looped", "static_standard", "batched")
FUSE_METHODS = ("pyramid", "flat", "overlap-linear")
FRAME_DIM = 2
CONTEXT_FRAMES_RANGE, CONTEXT_OVERLAP_RANGE = (1, 1001), (0, 1000)  # pixel frames, as the node takes them


@dataclass(frozen=True)
class ContextOptions:
    """Window parameters in latent frames (see the module docstring for the pixel-frame conversion)."""

    context_length: int = 21
    context_overlap: int = 8
    context_stride: int = 1
    schedule: str = "static_standard"
    fuse_method: str = "pyramid"
    closed_loop: bool = False

    def __post_init__(self):
        check_fields(self, "context")
        if self.context_length < 1:
            raise WanInputError(f"context_length must be >= 1 latent frame, got {self.context_length}")
        if not 0 <= self.context_overlap < self.context_length:
            raise WanInputError(
                f"context_overlap must be in [0, context_length={self.context_length}), got {self.context_overlap}"
            )
        if self.context_stride < 1:
            raise WanInputError(f"context_stride must be >= 1, got {self.context_stride}")
        if self.schedule not in SCHEDULES:
            raise WanInputError(f"unknown context schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if self.fuse_method not in FUSE_METHODS:
            raise WanInputError(
                f"unknown context fuse method {self.fuse_method!r}; expected one of {', '.join(FUSE_METHODS)}"
            )

    @classmethod
    def from_pixel_frames(cls, context_frames: int = 81, context_overlap: int = 30, **kwargs) -> "ContextOptions":
        """Options from pixel-frame counts, converted as ComfyUI's WAN context-window node does;
        refused in the units given (``pixel_window_problem``)."""
        refuse(pixel_window_problem(context_frames, context_overlap))
        length, overlap = latent_window(context_frames, context_overlap)
        return cls(context_length=length, context_overlap=overlap, **kwargs)


def latent_window(context_frames: int, context_overlap: int) -> tuple[int, int]:
    """(length, overlap) in latent frames of a window given in pixel frames (ComfyUI's conversion)."""
    return max((context_frames - 1) // 4 + 1, 1), max((context_overlap - 1) // 4 + 1, 0)


def pixel_window_problem(context_frames, context_overlap) -> str | None:
    """Why a window of ``context_frames`` pixel frames overlapping by ``context_overlap`` cannot be
    used, in those units (the latent conversion can make a smaller overlap as long as the window:
    4 frames overlapping by 3 are both 1 latent frame), or None; None values are not judged."""
    problem = window_problem("context_frames", context_frames, CONTEXT_FRAMES_RANGE,
                             "context_overlap", context_overlap, CONTEXT_OVERLAP_RANGE)
    if problem or context_frames is None or context_overlap is None:
        return problem
    length, overlap = latent_window(context_frames, context_overlap)
    if overlap >= length:
        return (f"context_overlap ({context_overlap}) covers {overlap} latent frame(s), as many as context_frames "
                f"({context_frames}) does (4 pixel frames make a latent frame after the first): give context_frames "
                f"of at least {4 * overlap + 1} or a smaller context_overlap")
    return None


def ordered_halving(step: int) -> float:
    """The 64-bit bit-reversal of ``step`` as a fraction of 2**64: 0, 1/2, 1/4, 3/4, 1/8, ..."""
    return int(f"{step:064b}"[::-1], 2) / (1 << 64)


def _stride_levels(num_frames: int, o: ContextOptions) -> int:
    return min(o.context_stride, int(math.ceil(math.log2(num_frames / o.context_length))) + 1)


def _uniform(num_frames: int, o: ContextOptions, step: int, closed_loop: bool) -> list[list[int]]:
    """Windows of every dilation 1, 2, 4, ... (up to the stride), wrapping around the end."""
    windows = []
    phase = ordered_halving(step)
    for level in range(_stride_levels(num_frames, o)):
        dilation = 1 << level
        pad = int(round(num_frames * phase))
        end = num_frames + pad + (0 if closed_loop else -o.context_overlap)
        for start in range(int(phase * dilation) + pad, end, o.context_length * dilation - o.context_overlap):
            windows.append([e % num_frames for e in range(start, start + o.context_length * dilation, dilation)])
    return windows


def _rolls_over(window: list[int], num_frames: int) -> int | None:
    """Position where a wrapped window jumps back to an earlier frame, or None."""
    prev = -1
    for i, v in enumerate(window):
        v %= num_frames
        if v < prev:
            return i
        prev = v
    return None


def _shift_to_end(window: list[int], num_frames: int) -> None:
    """Unwrap a window to start at frame 0, then slide it to end on the last frame (in place)."""
    first = window[0]
    for i, v in enumerate(window):
        window[i] = (v - first + num_frames) % num_frames
    delta = num_frames - window[-1] - 1
    for i in range(len(window)):
        window[i] += delta


def _uniform_standard(num_frames: int, o: ContextOptions, step: int) -> list[list[int]]:
    """Uniform windows where a window that wraps is slid back to end on the last frame instead, a
    window starting at the wrap point is added if the next one misses it, and duplicates dropped."""
    windows = _uniform(num_frames, o, step, closed_loop=False)
    duplicates = []
    i = 0
    while i < len(windows):
        roll = _rolls_over(windows[i], num_frames)
        if roll is not None:
            wrapped_to = windows[i][roll]
            _shift_to_end(windows[i], num_frames)
            if wrapped_to not in windows[(i + 1) % len(windows)]:
                windows.insert(i + 1, list(range(wrapped_to, wrapped_to + o.context_length)))
        if any(windows[i] == windows[j] for j in range(i)):
            duplicates.append(i)
        i += 1
    for i in reversed(duplicates):
        windows.pop(i)
    return windows


def _static_standard(num_frames: int, o: ContextOptions) -> list[list[int]]:
    """Fixed windows every (length - overlap) frames, the last one moved back to end on the last frame."""
    windows = []
    for start in range(0, num_frames, o.context_length - o.context_overlap):
        if start + o.context_length >= num_frames:
            start = num_frames - o.context_length
            windows.append(list(range(start, start + o.context_length)))
            break
        windows.append(list(range(start, start + o.context_length)))
    return windows


def context_windows(num_frames: int, options: ContextOptions, step: int = 0) -> list[list[int]]:
    """Latent-frame index lists of the windows for sampling step ``step``."""
    o = options
    if num_frames < o.context_length or (num_frames == o.context_length and o.schedule != "uniform_looped"):
        return [list(range(num_frames))]
    if o.schedule == "uniform_looped":
        return _uniform(num_frames, o, step, closed_loop=o.closed_loop)
    if o.schedule == "uniform_standard":
        return _uniform_standard(num_frames, o, step)
    if o.schedule == "static_standard":
        return _static_standard(num_frames, o)
    return [list(range(s, min(s + o.context_length, num_frames))) for s in range(0, num_frames, o.context_length)]


def context_weights(window: Sequence[int], num_frames: int, options: ContextOptions) -> torch.Tensor:
    """float32 fuse weights [len(window)] of one window's frames."""
    length = len(window)
    if options.fuse_method == "flat":
        return torch.ones(length)
    if options.fuse_method == "pyramid":
        # rises by one per frame from each edge: 1, 2, ..., peak, ..., 2, 1
        half = (length + 1) // 2
        ramp = list(range(1, half + 1))
        return torch.tensor(ramp + ramp[: length - half][::-1], dtype=torch.float32)
    # overlap-linear: ramps across the expected overlap, except at the ends of the video
    weights = torch.ones(length)
    n = min(options.context_overlap, length)
    if n > 0 and min(window) > 0:
        weights[:n] = torch.linspace(1e-37, 1, n)
    if n > 0 and max(window) < num_frames - 1:
        weights[-n:] = torch.linspace(1, 1e-37, n)
    return weights


def slice_frames(cond: Any, window: Sequence[int], num_frames: int) -> Any:
    """Conditioning for one window: every video-shaped tensor [B, C, F, H, W] with F == num_frames
    (I2V image latents and masks, VACE context, ...) indexed by the window's frames along dim 2,
    through dicts, lists and tuples; everything else (text, CLIP features, scalars) unchanged."""
    if isinstance(cond, torch.Tensor):
        if cond.ndim == 5 and cond.shape[FRAME_DIM] == num_frames:
            return cond[:, :, list(window)]
        return cond
    if isinstance(cond, dict):
        return {k: slice_frames(v, window, num_frames) for k, v in cond.items()}
    if isinstance(cond, (list, tuple)):
        return type(cond)(slice_frames(v, window, num_frames) for v in cond)
    return cond


def make_context_denoiser(
    denoise_fn: Callable[..., torch.Tensor],
    options: ContextOptions,
    num_latent_frames: int,
) -> Callable[..., torch.Tensor]:
    """A denoiser ``fn(x, step, *extra)`` over latents [B, C, F, H, W] that runs
    ``denoise_fn(x_window, step, window_indices, *extra)`` per window and fuses the outputs with the
    window weights (weighted mean per frame, as ComfyUI does).

    ``denoise_fn`` slices its own conditioning (``slice_frames``). Uniform windows move with
    ``step.index``, the step of the run as the sampler counts it. When a single window covers all
    frames in order, ``denoise_fn``'s output is returned as is, so windowing a short video changes
    nothing.
    """

    def denoise(x: torch.Tensor, step: Step, *extra) -> torch.Tensor:
        if x.shape[FRAME_DIM] != num_latent_frames:
            raise WanInputError(
                f"context windows were set up for {num_latent_frames} latent frames, got latents {tuple(x.shape)}"
            )
        everything = list(range(num_latent_frames))
        if num_latent_frames <= options.context_length:  # ComfyUI does not window these either
            return denoise_fn(x, step, everything, *extra)
        windows = context_windows(num_latent_frames, options, step.index)
        if windows == [everything]:
            return denoise_fn(x, step, everything, *extra)
        fused = counts = None
        for window in windows:
            out = denoise_fn(x[:, :, window], step, window, *extra)
            if fused is None:
                fused = torch.zeros(out.shape[:2] + (num_latent_frames,) + out.shape[3:], dtype=out.dtype,
                                    device=out.device)
                counts = torch.zeros(1, 1, num_latent_frames, 1, 1, dtype=torch.float32, device=out.device)
            w = context_weights(window, num_latent_frames, options).to(out.device).view(1, 1, -1, 1, 1)
            fused[:, :, window] += out * w
            counts[:, :, window] += w
        return fused / counts

    return denoise
