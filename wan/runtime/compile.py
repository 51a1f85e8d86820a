"""torch.compile of the DiT blocks, one block at a time.

Each block is compiled with PyTorch's own ``nn.Module.compile``, which compiles the module call and
leaves ``forward`` and the module tree as they are (state dict, LoRA and block swap see the same
block). The call runs the block's hooks and its ``forward`` as separate frames: hooks that must
stay eager (block swap's) are marked ``torch.compiler.disable``; the blocks share one ``forward``
code object, so the same graph serves every block of the same shape. Inputs that change from one step or prompt to the next (latent,
timestep, text embedding) are tensors of unchanged shape, which dynamo's guards accept without
recompiling; a new video size compiles once more (or not at all with ``dynamic=True``).

Caches: inductor's default is a bare ``/tmp/torchinductor_<user>``. When these options compile,
inductor's and Triton's caches go under ``cache_dir`` (the nodes give ComfyUI's user folder; else
the user's cache folder, ``$XDG_CACHE_HOME`` or ``~/.cache``, as platformdirs picks on Linux)
unless the user chose them (TORCHINDUCTOR_CACHE_DIR / TRITON_CACHE_DIR set to anything but
torch's own default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from ..errors import WanInputError

BACKENDS = ("inductor", "cudagraphs", "aot_eager", "eager")
MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")
CACHE_FOLDER = "comfyui-wan-nodes"
CACHE_ENV = {"TORCHINDUCTOR_CACHE_DIR": "torchinductor", "TRITON_CACHE_DIR": "triton"}  # variable -> subfolder


@dataclass(frozen=True)
class TorchCompileArgs:
    """Options of ``compile_blocks`` (what the WanTorchCompileArgs node returns).

    ``dynamic``: None lets dynamo decide (static first, dynamic after a size change), True/False
    force it. ``compile_vace``: also compile the VACE blocks. ``cache_size_limit``: dynamo's
    per-code recompile limit is raised to at least this (40 blocks share one code object).
    ``cache_dir``: the folder for the compile caches (see the module docstring); None: the user's
    cache folder.
    """

    backend: str | Callable = "inductor"
    mode: str = "default"
    fullgraph: bool = False
    dynamic: bool | None = None
    compile_vace: bool = True
    cache_size_limit: int = 64
    cache_dir: str | None = None

    def __post_init__(self):
        if isinstance(self.backend, str) and self.backend not in BACKENDS:
            raise WanInputError(f"compile backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.mode not in MODES:
            raise WanInputError(f"compile mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if isinstance(self.backend, str) and self.backend != "inductor" and self.mode != "default":
            raise WanInputError(f"compile mode {self.mode!r} is an inductor option; backend is {self.backend!r}")


def user_cache_dir() -> Path:
    """This pack's folder in the user's cache folder (outside ComfyUI)."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / CACHE_FOLDER


def _chosen_by_user(variable: str) -> bool:
    value = os.environ.get(variable)
    if not value:
        return False
    if variable == "TORCHINDUCTOR_CACHE_DIR":  # inductor writes its /tmp default back into the variable
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        return os.path.abspath(value) != os.path.abspath(default_cache_dir())
    return True


def use_cache_dir(root: str | os.PathLike | None) -> dict[str, str]:
    """Point inductor's and Triton's caches under ``root`` (None: ``user_cache_dir()``) unless the
    user chose them; returns the folder in effect for each variable."""
    root = Path(root) if root is not None else user_cache_dir()
    for variable, sub in CACHE_ENV.items():
        if not _chosen_by_user(variable):
            os.environ[variable] = str(root / sub)
    return {variable: os.environ[variable] for variable in CACHE_ENV}


def _compile_module(module: nn.Module, args: TorchCompileArgs) -> None:
    kw = dict(backend=args.backend, fullgraph=args.fullgraph, dynamic=args.dynamic)
    if args.backend == "inductor":
        kw["mode"] = args.mode
    module.compile(**kw)


def compile_blocks(dit: nn.Module, args: TorchCompileArgs | None) -> nn.Module:
    """Compile every block of ``dit`` (``nn.Module.compile``; compiled lazily, at the first call)."""
    if args is None:
        return dit
    import torch._dynamo

    use_cache_dir(args.cache_dir)  # before the first compile reads it (compiling is lazy)
    cfg = torch._dynamo.config
    limit = max(args.cache_size_limit, 2 * len(dit.blocks) + 8)
    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < limit:
            setattr(cfg, name, limit)
    for block in dit.blocks:
        _compile_module(block, args)
    if args.compile_vace:
        for block in getattr(dit, "vace_blocks", ()):
            _compile_module(block, args)
    return dit
