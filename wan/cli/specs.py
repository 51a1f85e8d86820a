"""The value types of ``python -m wan generate``'s flags: each text -> the library's value, or
argparse's error naming what was expected."""

from __future__ import annotations

import argparse

from ..errors import WanError
from ..parallel.layout import ParallelLayout
from ..runtime.blockswap import AUTO
from ..sampling.context import ContextOptions

CONTEXT_OVERLAP = 16  # pixel frames, the Wan Context Options node's default


def lora_spec(text: str) -> tuple[str, float]:
    """``FILE`` or ``FILE:STRENGTH`` -> (file, strength); a tail that is not a number is part of the name."""
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return text, 1.0


def context_spec(text: str) -> ContextOptions:
    """``FRAMES`` or ``FRAMES:OVERLAP`` in pixel frames -> the windows the Wan Context Options node makes."""
    frames, _, overlap = text.partition(":")
    try:
        return ContextOptions.from_pixel_frames(int(frames), int(overlap) if overlap else CONTEXT_OVERLAP)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FRAMES or FRAMES:OVERLAP (pixel frames), got {text!r}") from None
    except WanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def timesteps_spec(text: str) -> tuple[float, ...]:
    """``1000,750,500,250`` -> DiT timesteps on the 1000 scale (lightx2v's denoising_step_list)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated timesteps such as 1000,750,500,250, "
                                         f"got {text!r}") from None


def cfg_spec(text: str) -> float | tuple[float, ...]:
    """``CFG`` or one cfg per step, ``2,1,1,1``."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or numbers separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected a cfg")
    return values[0] if len(values) == 1 and "," not in text else values


def layers_spec(text: str) -> tuple[int, ...]:
    """``9`` or ``7,8,9``: DiT block indices."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected block indices separated by commas, got {text!r}") from None


def parallel_spec(text: str) -> ParallelLayout:
    try:
        return ParallelLayout.parse(text)
    except WanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def block_swap_spec(text: str) -> int | str:
    """``auto`` (the memory plan decides per job) or a number of blocks >= 0."""
    if text == AUTO:
        return AUTO
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected auto or a number of blocks >= 0, got {text!r}")
    return n
