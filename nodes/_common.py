"""Shared pieces of the node adapters: type names, model folders, the loaded-model cache, progress.

Not a node module (the leading underscore keeps the registry from scanning it). ComfyUI's own
modules are imported inside functions so that unit tests can import this file without ComfyUI.

The model cache
---------------
Loaders keep what they loaded in ``MODEL_CACHE``, keyed by (kind, real path, mtime, size, LoadOptions):
asking again for the same file with the same options returns the same object, while a file that
was replaced (new mtime or size) is loaded afresh and the stale entry dropped. ComfyUI frees memory
through ``comfy.model_management.free_memory(memory_required, device)`` (also behind
``unload_all_models``, the "Free model and node cache" button and POST /free). ``install_memory_hook``
wraps that function once: after ComfyUI has unloaded its own models, if the device still lacks the
memory asked for, our cached models on that device are moved to their offload device (frees VRAM
even while a graph output still references them); an unload-everything request (a huge
``memory_required``) also empties the cache so host memory can be reclaimed once ComfyUI's node
outputs let go of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from typing import Any, Callable, Hashable

import torch

log = logging.getLogger(__name__)

CATEGORY = "Wan"
WANMODEL = "WANMODEL"
WANTEXTENCODER = "WANTEXTENCODER"
WANCLIPVISION = "WANCLIPVISION"
WANVAE = "WANVAE"
WANTEXTEMBEDS = "WANTEXTEMBEDS"
WANCLIPEMBEDS = "WANCLIPEMBEDS"
WANIMAGEEMBEDS = "WANIMAGEEMBEDS"
WANCONTEXT = "WANCONTEXT"
WANLORA = "WANLORA"

GGUF = ".gguf"
# ComfyUI folder -> extra extensions this pack reads there
_EXTRA_EXTENSIONS = {"diffusion_models": {GGUF}, "text_encoders": {GGUF}}


# ---- input checks (ComfyUI skips its own min/max check for inputs a VALIDATE_INPUTS names) ---------
def out_of_range(name: str, value, low, high) -> str | None:
    """The message for a ``value`` outside [low, high], or None (also when the input is not given)."""
    if value is not None and not low <= value <= high:
        return f"{name} must be between {low} and {high}, got {value}"
    return None


def check_window(size_name: str, size, size_range: tuple, overlap_name: str, overlap, overlap_range: tuple):
    """VALIDATE_INPUTS of a window and its overlap: both in range, the overlap smaller than the window."""
    err = out_of_range(size_name, size, *size_range) or out_of_range(overlap_name, overlap, *overlap_range)
    if err:
        return err
    if size is not None and overlap is not None and overlap >= size:
        return f"{overlap_name} ({overlap}) must be smaller than {size_name} ({size})"
    return True


# ---- model folders -------------------------------------------------------------------------------

def register_gguf_extension() -> None:
    """Let ComfyUI list .gguf files in the DiT and text-encoder folders.

    The folders share one extension set object with every other model folder, so it is replaced by
    a copy for just these folders rather than mutated (which would offer .gguf files to the
    checkpoint loader and every other pack's loaders).
    """
    import folder_paths

    for folder, extra in _EXTRA_EXTENSIONS.items():
        if folder not in folder_paths.folder_names_and_paths:
            continue
        paths, exts = folder_paths.folder_names_and_paths[folder]
        if not extra <= set(exts):
            folder_paths.folder_names_and_paths[folder] = (paths, set(exts) | extra)
            cache = getattr(folder_paths, "filename_list_cache", None)
            if isinstance(cache, dict):
                cache.pop(folder, None)


def list_files(*folders: str) -> list[str]:
    """Model files ComfyUI sees in ``folders`` (names relative to the folder, as widgets hold them)."""
    import folder_paths

    register_gguf_extension()
    names: list[str] = []
    for folder in folders:
        try:
            names += [n for n in folder_paths.get_filename_list(folder) if n not in names]
        except KeyError:
            pass
    return sorted(names)


def full_path(name: str, *folders: str) -> str:
    """The file a widget value names, looked up in ``folders``; WanFileError if it is not there."""
    import folder_paths

    from ..wan.errors import WanFileError

    register_gguf_extension()
    for folder in folders:
        try:
            path = folder_paths.get_full_path(folder, name)
        except KeyError:
            path = None
        if path:
            return path
    raise WanFileError(name, f"file not found in the ComfyUI model folder(s) {', '.join(folders)}")


def identity_of(name: str, *folders: str) -> str:
    """For a loader's IS_CHANGED: changes when the named file is replaced, so ComfyUI re-runs the
    loader (and our cache, keyed the same way, loads the new file) instead of reusing its output."""
    try:
        return repr(file_identity(full_path(name, *folders)))
    except Exception:  # missing: validation reports it
        return name


# ---- devices -------------------------------------------------------------------------------------

def main_device() -> torch.device:
    import comfy.model_management as mm

    return mm.get_torch_device()


def offload_device() -> torch.device:
    import comfy.model_management as mm

    return mm.unet_offload_device()


def make_room(nbytes: int, device: torch.device) -> None:
    """Ask ComfyUI to unload its models until ``nbytes`` are free on ``device`` (no-op on the CPU)."""
    import comfy.model_management as mm

    if torch.device(device).type != "cpu":
        mm.free_memory(nbytes, torch.device(device))


def model_bytes(module: torch.nn.Module) -> int:
    seen = {}
    for t in list(module.parameters()) + list(module.buffers()):
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


# ---- the cache -----------------------------------------------------------------------------------

def file_identity(path: str) -> tuple[str, int, int]:
    """(real path, mtime in ns, size): a file replaced in place gets a new identity."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_mtime_ns, st.st_size


@dataclasses.dataclass
class _Entry:
    value: Any
    offload: torch.device | None


class ModelCache:
    """Loaded models by file identity and options; see the module docstring for how it is freed."""

    def __init__(self):
        self._entries: dict[tuple, _Entry] = {}
        self._lock = threading.RLock()

    def get(self, kind: str, path: str, options: Hashable, load: Callable[[], Any],
            offload: torch.device | None = None) -> Any:
        real, mtime, size = file_identity(path)
        key = (kind, real, mtime, size, options)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                log.debug("Wan: reusing the loaded %s %s", kind, os.path.basename(real))
                return entry.value
            # Drop entries of this kind for the same path whose file has changed since.
            for old in [k for k in self._entries if k[0] == kind and k[1] == real and k[2:4] != (mtime, size)]:
                del self._entries[old]
        value = load()
        with self._lock:
            self._entries[key] = _Entry(value, offload)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def offload(self, device: torch.device) -> int:
        """Move cached models that sit on ``device`` to their offload device; returns how many."""
        moved = 0
        with self._lock:
            for entry in self._entries.values():
                module = _module_of(entry.value)
                if module is None or entry.offload is None:
                    continue
                where = _device_of(module)
                if where is not None and where.type == device.type and where != entry.offload:
                    module.to(entry.offload)
                    moved += 1
        return moved


def _module_of(value) -> torch.nn.Module | None:
    if isinstance(value, torch.nn.Module):
        return value
    inner = getattr(value, "model", None)
    return inner if isinstance(inner, torch.nn.Module) else None


def _device_of(module: torch.nn.Module) -> torch.device | None:
    for t in module.parameters():
        return t.device
    return None


MODEL_CACHE = ModelCache()
_hook_installed = False


def install_memory_hook() -> None:
    """Wrap comfy.model_management.free_memory once so ComfyUI's unload path reaches our cache."""
    global _hook_installed
    if _hook_installed:
        return
    import comfy.model_management as mm

    original = mm.free_memory

    def free_memory(memory_required, device, keep_loaded=()):
        result = original(memory_required, device, keep_loaded)
        try:
            dev = torch.device(device)
            if memory_required >= 1e29:  # unload_all_models
                if dev.type != "cpu":
                    MODEL_CACHE.offload(dev)
                MODEL_CACHE.clear()
            elif dev.type != "cpu" and mm.get_free_memory(dev) < memory_required:
                MODEL_CACHE.offload(dev)
        except Exception:  # never let our bookkeeping break ComfyUI's memory management
            log.exception("Wan: freeing cached models failed")
        return result

    free_memory.__wrapped__ = original
    mm.free_memory = free_memory
    _hook_installed = True


# ---- progress and cancel -------------------------------------------------------------------------

def cancel_check() -> Callable[[], bool]:
    """A cancel callback for wan/: raises ComfyUI's interrupt exception when the user cancels."""
    import comfy.model_management as mm

    def cancel() -> bool:
        mm.throw_exception_if_processing_interrupted()
        return False

    return cancel


@contextlib.contextmanager
def on_device(module: torch.nn.Module, device: torch.device):
    """Run with ``module`` on ``device`` (ComfyUI's compute device), then put it back where it was."""
    home = _device_of(module)
    device = torch.device(device)
    if home is None or home == device:
        yield module
        return
    make_room(model_bytes(module), device)
    module.to(device)
    try:
        yield module
    finally:
        module.to(home)
