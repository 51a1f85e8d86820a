"""The rules for the numbers a user types: video sizes, frame counts, steps and seeds.

One function per kind of value, each returning the message for a value it refuses (or None), so
the option objects (and with them the CLI and the Python API) raise it as a WanInputError and the
nodes return the same words from VALIDATE_INPUTS for widget values and raise them when a linked
value reaches the node. The ranges are the nodes' widget ranges: a value past a widget's own range
is refused however it arrives. The video's own values (frame rate, crf, file name prefix) are ruled
on beside the writer, in ``wan.video``.
"""

from __future__ import annotations

from numbers import Integral, Real

from .errors import WanInputError
from .finite import number_problem

SIZE_RANGE = (16, 8192)  # pixels, width and height
FRAMES_RANGE = (1, 1025)  # pixel frames, 1 + 4k
TEMPORAL = 4  # pixel frames per latent frame after the first
STEPS_RANGE = (1, 10000)
SEED_RANGE = (0, 0xFFFFFFFFFFFFFFFF)  # ComfyUI's seed widgets


def range_problem(name: str, value, low, high, integer: bool = False) -> str | None:
    """Why ``value`` of input ``name`` is not a (whole, with ``integer``) finite number in
    [low, high], or None; None is not judged (a linked input at validation time)."""
    if value is None:
        return None
    if number_problem(name, value):  # NaN compares false with everything: name it
        return number_problem(name, value)
    if isinstance(value, bool) or not isinstance(value, Integral if integer else Real):
        kind = "a whole number" if integer else "a number"
        return f"{name} must be {kind} from {low} to {high}, got {value!r}"
    if not low <= value <= high:
        return f"{name} must be between {low} and {high}, got {value}"
    return None


def size_problem(name: str, value, multiple: int = 16) -> str | None:
    """A width or height in pixels: SIZE_RANGE and a multiple of ``multiple``."""
    problem = range_problem(name, value, *SIZE_RANGE, integer=True)
    if problem is None and value is not None and value % multiple:
        problem = f"{name} must be a multiple of {multiple}, got {value}"
    return problem


def frames_problem(name: str, value) -> str | None:
    """A pixel frame count: FRAMES_RANGE and 1 + 4k."""
    problem = range_problem(name, value, *FRAMES_RANGE, integer=True)
    if problem is None and value is not None and value % TEMPORAL != 1:
        problem = f"{name} must be 1 + 4k (1, 5, 9, ..., 81), got {value}"
    return problem


def steps_problem(value, name: str = "steps") -> str | None:
    """A step count: a whole number in STEPS_RANGE (1e9 steps would allocate the schedule first)."""
    return range_problem(name, value, *STEPS_RANGE, integer=True)


def seed_problem(value, name: str = "seed") -> str | None:
    """A seed: a whole number in SEED_RANGE (ComfyUI's seed widgets; torch takes 64 bits)."""
    return range_problem(name, value, *SEED_RANGE, integer=True)


def window_problem(size_name: str, size, size_range: tuple, overlap_name: str, overlap, overlap_range: tuple
                   ) -> str | None:
    """A window and its overlap (VAE tiles, context windows): both whole numbers in range, the overlap
    smaller than the window."""
    problem = first_problem(range_problem(size_name, size, *size_range, integer=True),
                            range_problem(overlap_name, overlap, *overlap_range, integer=True))
    if problem is None and size is not None and overlap is not None and overlap >= size:
        problem = f"{overlap_name} ({overlap}) must be smaller than {size_name} ({size})"
    return problem


def first_problem(*problems: str | None) -> str | None:
    """The first message of ``problems`` that is not None: one message per refusal."""
    return next((p for p in problems if p), None)


def refuse(problem: str | None) -> None:
    """Raise WanInputError(problem) when there is one."""
    if problem:
        raise WanInputError(problem)
