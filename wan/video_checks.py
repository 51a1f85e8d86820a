"""The checks of what names and times a video file: the frame rate's range and a filename prefix
(length of each name in bytes as the file system counts them, total length, depth, characters).
One place for both, so the nodes' VALIDATE_INPUTS, their save path and ``wan.video.write_video``
give the same message."""

from __future__ import annotations

import os

# The nodes' frame_rate widget range; outside it ffmpeg fails on its own (1e-9, 1e300) or writes
# a clip of 0.00 s (1e9).
FPS_RANGE = (0.01, 240.0)
NAME_MAX_BYTES = 255  # one file or folder name, as Linux, macOS and Windows (in UTF-16 units) cap it
# what a prefix's file name gets: "_00001_" from ComfyUI's counter, then ".{stem}.{8 hex}.part"
# while write_video writes it (".webm" when done is shorter)
FILE_NAME_OVERHEAD = len("_00001_") + len("..12345678.part")
PREFIX_MAX_BYTES = 1024  # a whole prefix: far inside PATH_MAX (4096) whatever the output folder
PREFIX_MAX_CHARS = PREFIX_MAX_BYTES
PREFIX_MAX_DEPTH = 16  # names in a prefix (15 subfolder levels); deeper nesting recursed in makedirs


def fps_problem(fps) -> str | None:
    """Why ``fps`` cannot be a clip's frame rate (the nodes' widget range), or None if it can."""
    low, high = FPS_RANGE
    try:
        value = float(fps)
    except (TypeError, ValueError, OverflowError):
        return f"frame_rate must be a number from {low} to {high:g} frames per second, got {fps!r}"
    if not low <= value <= high:  # NaN fails too; 1e-9 and 1e300 would reach ffmpeg's own parser
        return f"frame_rate must be from {low} to {high:g} frames per second, got {fps!r}"
    return None


def prefix_problem(prefix) -> str | None:
    """Why ``prefix`` cannot name a file inside an output folder (ComfyUI's filename_prefix: file
    name prefix with optional subfolders), or None if it can. The one check of a prefix: the
    nodes' VALIDATE_INPUTS and save path use it, and write_video checks the name it is given."""
    if not isinstance(prefix, str) or not prefix.strip():
        return "filename_prefix is empty"
    if len(prefix) > PREFIX_MAX_CHARS * 4:  # before any per-character work on a huge value
        return f"filename_prefix is {len(prefix)} characters long; the limit is {PREFIX_MAX_BYTES} bytes"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in prefix):
        return "filename_prefix contains control characters (NUL, newline, ...)"
    if any("\ud800" <= ch <= "\udfff" for ch in prefix):
        return "filename_prefix contains a lone surrogate (an invalid character no file name can hold)"
    if os.path.isabs(prefix) or prefix.startswith(("/", "\\")) or os.path.splitdrive(prefix)[0]:
        return f"filename_prefix must be relative to the output folder, got the absolute path {short(prefix)}"
    size = len(prefix.encode("utf-8"))
    if size > PREFIX_MAX_BYTES:
        return f"filename_prefix is {size} bytes long (as UTF-8); the limit is {PREFIX_MAX_BYTES}"
    parts = prefix.replace("\\", "/").split("/")
    if len(parts) > PREFIX_MAX_DEPTH:
        return f"filename_prefix has {len(parts) - 1} subfolder levels; the limit is {PREFIX_MAX_DEPTH - 1}"
    normalised = os.path.normpath("/".join(parts)).split(os.sep)
    if normalised and normalised[0] == "..":
        return f"filename_prefix {short(prefix)} points outside the output folder ('..' is not allowed)"
    # Names are counted in bytes as the file system counts them (255 a name); the file name also
    # gets the counter and extension, and while it is written the writer's hidden temporary name.
    # Every name as written counts, also one a later '..' steps out of: the saver creates it.
    for i, part in enumerate(parts):
        limit = NAME_MAX_BYTES - (FILE_NAME_OVERHEAD if i == len(parts) - 1 else 0)
        size = len(part.encode("utf-8"))
        if size > limit:
            what = "file name" if i == len(parts) - 1 else "folder name"
            return f"filename_prefix has a {what} of {size} bytes (as UTF-8); the limit is {limit}"
    return None


def short(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."
