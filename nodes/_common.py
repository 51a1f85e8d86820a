"""Shared pieces of the node adapters: type names, model folders, the loaded-model cache, progress.

Not a node module (the leading underscore keeps the registry from scanning it). ComfyUI's own
modules are imported inside functions so that unit tests can import this file without ComfyUI.

The model cache and ComfyUI's memory management
-----------------------------------------------
Loaders keep what they loaded in ``MODEL_CACHE``, keyed by (kind, real path, mtime, size, LoadOptions):
asking again for the same file with the same options returns the same object, while a file that
was replaced (new mtime or size) is loaded afresh and the stale entry dropped.

Each cached model is handed to ComfyUI's own model management through its public API, the same in
ComfyUI 0.3.75 and 0.8.0, instead of patching any of its functions:

- it is wrapped in a ``comfy.model_patcher.ModelPatcher`` (load device: ComfyUI's torch device;
  offload device: the loader's) around a small holder module (``_Held``) that moves the model
  whole when ComfyUI calls ``to``. The holder keeps the model weakly and does not register it as
  a submodule, so ComfyUI neither keeps it alive nor walks or splits its layers (ours do not cast
  weights per call the way ComfyUI's lowvram mode needs), and its bookkeeping attributes land on
  the holder, not on the library's classes;
- ``on_device`` calls ``comfy.model_management.load_models_gpu([patcher], force_full_load=True)``
  before a node computes: ComfyUI frees room among its own and our models as for any of its own,
  and our models are listed in its ``current_loaded_models``, so its ``free_memory``,
  ``unload_all_models``, the "Free model and node cache" button and POST /free unload ours like
  its own;
- ComfyUI's documented ``CallbacksMP.ON_DETACH`` callback of the patcher tells the cache when
  ComfyUI has unloaded a model: from then on the cache holds it only weakly, as ComfyUI holds its
  own models, so it lives as long as ComfyUI's node outputs refer to it. After POST /free (which
  also resets ComfyUI's node cache) it is garbage-collected and the next job reads the file
  again; while a cached graph still holds it, asking for it again makes the entry strong again
  and ``load_models_gpu`` brings it back.
- A model with block swap streams its blocks itself: its holder never moves it (ComfyUI would
  bring every block to the GPU at once) and it is registered with ComfyUI at load, with size 0,
  only so that ComfyUI's unloads reach the cache.

The cache keeps a RAM budget (``_cache_budget``): past it, the least recently used models are
dropped (not those a node computes with or ComfyUI holds loaded on its compute device); a dropped
model lives on only while something else (ComfyUI's node cache) refers to it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import weakref
from typing import Any, Callable, Hashable

import torch

from ..wan.runtime.cancel import cancel_hook
from ..wan.runtime.host_memory import release_soon
from ._cache_budget import cache_budget, on_compute_device, to_evict

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


def model_bytes(module: torch.nn.Module, on: str | None = None) -> int:
    """Bytes of the module's parameters and buffers (``on``: only those on that device type)."""
    seen = {}
    for t in list(module.parameters()) + list(module.buffers()):
        if on is None or t.device.type == on:
            seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


# ---- the cache -----------------------------------------------------------------------------------

def file_identity(path: str) -> tuple[str, int, int]:
    """(real path, mtime in ns, size): a file replaced in place gets a new identity."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_mtime_ns, st.st_size


class _Held(torch.nn.Module):
    """The module a ModelPatcher manages for one cached model (see the module docstring)."""

    def __init__(self, module: torch.nn.Module, movable: bool):
        super().__init__()
        self._ref = weakref.ref(module)
        self._movable = movable

    def to(self, *args, **kwargs):
        module = self._ref()
        if self._movable and module is not None:
            module.to(*args, **kwargs)
        return self


def _patcher(module: torch.nn.Module, offload: torch.device | None, on_unload: Callable[[], None]):
    """A ModelPatcher over ``module``; ``offload`` None: block swap (ComfyUI must not move it)."""
    import comfy.model_management as mm
    from comfy.model_patcher import ModelPatcher
    from comfy.patcher_extension import CallbacksMP

    movable = offload is not None
    patcher = ModelPatcher(_Held(module, movable), load_device=mm.get_torch_device(),
                           offload_device=offload if movable else mm.unet_offload_device(),
                           size=model_bytes(module) if movable else 0)

    def detached(_patcher, unpatch_all: bool) -> None:
        if unpatch_all:  # an unload (False: a clone replaced it, or the patcher is being deleted)
            on_unload()

    patcher.add_callback(CallbacksMP.ON_DETACH, detached)
    return patcher


class _Entry:
    """One cached value; ``value`` is None while only ComfyUI's references keep it (``ref``)."""

    def __init__(self, value: Any, offload: torch.device | None):
        module = _module_of(value)
        self.used = 0  # the cache's clock at the last use (least recently used out first)
        self.busy = 0  # nodes computing with it now (on_device)
        self.value = value
        self.ref = None if module is None else weakref.ref(value)
        self.swapped = module is not None and offload is None
        self.patcher = None if module is None else _patcher(module, offload, self.release)
        self.home = None if module is None else _device_of(module)
        if module is not None:  # its memory (pinned block-swap copies too) back to the system when it goes
            weakref.finalize(module, release_soon)

    def release(self) -> None:
        """ComfyUI unloaded the model: hold it only weakly from now on."""
        self.value = None

    def peek(self) -> Any:
        return self.value if self.value is not None or self.ref is None else self.ref()

    def live(self) -> Any:
        """The value, held strongly again (it is in use), or None once it has been collected."""
        self.value = self.peek()
        return self.value


class ModelCache:
    """Loaded models by file identity and options; see the module docstring for how it is freed."""

    def __init__(self, budget: int | None = None):
        self._entries: dict[tuple, _Entry] = {}
        self._lock = threading.RLock()
        self._clock = itertools.count(1)
        self.budget = budget  # bytes of host RAM; None: cache_budget() at each eviction

    def get(self, kind: str, path: str, options: Hashable, load: Callable[[], Any],
            offload: torch.device | None = None) -> Any:
        """The cached value or ``load()``'s. A torch model (or an object with one as ``.model``) is
        handed to ComfyUI's memory management; ``offload``: where ComfyUI unloads it to (None: the
        model swaps blocks itself and is never moved)."""
        real, mtime, size = file_identity(path)
        key = (kind, real, mtime, size, options)
        with self._lock:
            entry = self._entries.get(key)
            value = None if entry is None else entry.live()
            if value is None:
                # Drop entries of this kind for the same path whose file has changed since, and
                # entries whose model ComfyUI unloaded and nothing refers to any more.
                for old in [k for k, e in self._entries.items() if k == key or e.peek() is None or (
                        k[0] == kind and k[1] == real and k[2:4] != (mtime, size))]:
                    del self._entries[old]
        if value is not None:
            log.debug("Wan: reusing the loaded %s %s", kind, os.path.basename(real))
        else:
            self.evict(reserve=size)  # room for what the file will take
            value = load()
            entry = _Entry(value, offload)
            with self._lock:
                self._entries[key] = entry
        self.touch(entry)
        self.evict(keep=entry)
        if entry.swapped:
            _load_models([entry.patcher])  # listed with ComfyUI: no node loads a block-swapped model
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> int:
        """Drop every entry (Wan Unload Models); returns how many there were. A model lives on only
        while something else (a ComfyUI node output) still refers to it."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
        return count

    def touch(self, entry: _Entry) -> None:
        entry.used = next(self._clock)

    def evict(self, keep: _Entry | None = None, reserve: int = 0) -> None:
        """Drop least recently used entries until the models held strongly (plus ``reserve`` bytes)
        fit the RAM budget; ``keep``, busy entries and those ComfyUI holds loaded stay."""
        budget = cache_budget() if self.budget is None else self.budget
        if budget is None:
            return
        with self._lock:
            held = {k: e for k, e in self._entries.items() if e.value is not None}
            sizes = {k: 0 if (m := _module_of(e.value)) is None else model_bytes(m, on="cpu") for k, e in held.items()}
            kept = lambda k: held[k] is keep or held[k].busy or (  # noqa: E731
                held[k].patcher is not None and on_compute_device(held[k].patcher, _module_of(held[k].value)))
            for key in to_evict([(k, e.used, sizes[k]) for k, e in held.items()], budget, reserve, kept):
                del self._entries[key]
                log.info("Wan: model cache over its RAM budget of %.1f GB: dropped the %s %s (%.1f GB)",
                         budget / 1e9, key[0], os.path.basename(key[1]), sizes[key] / 1e9)

    def entry_of(self, module: torch.nn.Module) -> _Entry | None:
        with self._lock:
            for entry in self._entries.values():
                if entry.patcher is not None and _module_of(entry.peek()) is module:
                    return entry
        return None


def _module_of(value) -> torch.nn.Module | None:
    if isinstance(value, torch.nn.Module):
        return value
    inner = getattr(value, "model", None)
    return inner if isinstance(inner, torch.nn.Module) else None


def _device_of(module: torch.nn.Module) -> torch.device | None:
    for t in module.parameters():
        return t.device
    return None


def _load_models(patchers: list) -> None:
    import comfy.model_management as mm

    # Full load: our layers compute with their weights where they are (no per-call casting).
    mm.load_models_gpu(patchers, force_full_load=True)


MODEL_CACHE = ModelCache()


# ---- progress and cancel -------------------------------------------------------------------------

def cancel_check() -> Callable[[], bool]:
    """A cancel callback for wan/: raises ComfyUI's interrupt exception when the user cancels."""
    import comfy.model_management as mm

    def cancel() -> bool:
        mm.throw_exception_if_processing_interrupted()
        return False

    return cancel


@contextlib.contextmanager
def cancellable():
    """Within the block, the library's cancel points (between DiT blocks, attention chunks, VAE layers
    and frames, video frames: ``wan.runtime.cancel``) raise ComfyUI's interrupt when the user cancels."""
    with cancel_hook(cancel_check()):
        yield


@contextlib.contextmanager
def on_device(module: torch.nn.Module, device: torch.device):
    """Run with ``module`` on ``device`` (ComfyUI's compute device), then put it back where it lives.

    A cached model is loaded through ComfyUI (``load_models_gpu``, which frees room among all loaded
    models) and, if it lives on its offload device between runs, unloaded to it afterwards; it stays
    known to ComfyUI either way. Anything else is moved by hand.
    """
    device = torch.device(device)
    entry = MODEL_CACHE.entry_of(module)
    if entry is None or entry.patcher.load_device != device:
        home = _device_of(module)
        if home is None or home == device:
            yield module
            return
        make_room(model_bytes(module), device)
        module.to(device)
        try:
            yield module
        finally:
            module.to(home)
        return
    entry.live()
    MODEL_CACHE.touch(entry)
    entry.busy += 1
    _load_models([entry.patcher])
    try:
        yield module
    finally:
        entry.busy -= 1
        if entry.home is not None and entry.home != device:
            # Back to where it lives between runs, keeping ComfyUI's accounting: the patcher's
            # own unload (no detach callback: this is not ComfyUI asking for memory).
            entry.patcher.unpatch_model(entry.home)
