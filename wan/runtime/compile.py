"""torch.compile of the DiT blocks, one block at a time.

Each block is compiled with PyTorch's own ``nn.Module.compile``, which compiles the module call and
leaves ``forward`` and the module tree as they are (state dict, LoRA and block swap see the same
block). The call runs the block's hooks and its ``forward`` as separate frames: hooks that must
stay eager (block swap's) are marked ``torch.compiler.disable``; the blocks share one ``forward``
code object, so the same graph serves every block of the same shape. Inputs that change from one step or prompt to the next (latent,
timestep, text embedding) are tensors of unchanged shape, which dynamo's guards accept without
recompiling; a new video size compiles once more (or not at all with ``dynamic=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import WanInputError

BACKENDS = ("inductor", "cudagraphs", "aot_eager", "eager")
MODES = ("default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")


@dataclass(frozen=True)
class TorchCompileArgs:
    """Options of ``compile_blocks`` (what the WanTorchCompileArgs node returns).

    ``dynamic``: None lets dynamo decide (static first, dynamic after a size change), True/False
    force it. ``compile_vace``: also compile the VACE blocks. ``cache_size_limit``: dynamo's
    per-code recompile limit is raised to at least this (40 blocks share one code object).
    """

    backend: str | Callable = "inductor"
    mode: str = "default"
    fullgraph: bool = False
    dynamic: bool | None = None
    compile_vace: bool = True
    cache_size_limit: int = 64

    def __post_init__(self):
        if isinstance(self.backend, str) and self.backend not in BACKENDS:
            raise WanInputError(f"compile backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.mode not in MODES:
            raise WanInputError(f"compile mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if isinstance(self.backend, str) and self.backend != "inductor" and self.mode != "default":
            raise WanInputError(f"compile mode {self.mode!r} is an inductor option; backend is {self.backend!r}")


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
