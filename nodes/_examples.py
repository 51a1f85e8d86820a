"""The bundled workflows' example input images (``workflows/inputs/``), copied into ComfyUI's input
folder at pack import wherever a file of that name is missing, so every bundled workflow opens in
the frontend and runs without a missing-image error. A file the user already has is never replaced.

Not a node module (the leading underscore keeps the registry from scanning it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parent.parent / "workflows" / "inputs"
SUFFIXES = (".png", ".wav")  # images, and the speech clip of the audio-driven workflows


def place_example_inputs(input_dir: str | os.PathLike | None = None) -> list[str]:
    """Copy each example image missing from ``input_dir`` (default: ComfyUI's input folder) there;
    returns the names copied. A folder that cannot be written is logged, never raised: the pack must
    load all the same."""
    if input_dir is None:
        import folder_paths

        input_dir = folder_paths.get_input_directory()
    target = Path(input_dir)
    placed = []
    for src in sorted(p for p in EXAMPLES.iterdir() if p.suffix in SUFFIXES):
        dst = target / src.name
        if dst.exists():
            continue
        part = target / f".{src.name}.part"
        try:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, part)
            os.replace(part, dst)  # whole or not at all: ComfyUI may list the folder meanwhile
            placed.append(src.name)
        except OSError as error:
            log.warning("Wan: could not place the example input %s in %s (%s)", src.name, target, error)
            with contextlib.suppress(OSError):  # nothing to clean where the folder is unusable
                part.unlink()
    if placed:
        log.info("Wan: example inputs %s placed in %s", ", ".join(placed), target)
    return placed
