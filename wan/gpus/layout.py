"""What the Wan Multi-GPU node asks for: which devices and which parallel layout, checked before any
actor starts (an unknown layout, a GPU asked for that is not there)."""

from __future__ import annotations

import dataclasses

from ..errors import WanInputError
from ..parallel.layout import ParallelLayout

# ulysses: sequence parallel, all-to-all around attention (heads must divide by the degree);
# ring: sequence parallel by passing key/value blocks round a ring (any degree);
# cfg: the conditional and unconditional passes on different ranks (2 ranks);
# cfg+ulysses / cfg+ring: their product (e.g. 4 GPUs = 2 CFG x 2 sequence).
LAYOUTS = ("ulysses", "ring", "cfg", "cfg+ulysses", "cfg+ring")


@dataclasses.dataclass(frozen=True)
class MultiGpuOptions:
    """devices: CUDA indices (cuda) or as many CPU ranks (cpu, gloo: the tests and CPU-only machines)."""

    devices: tuple[int, ...]
    layout: str = "ulysses"
    backend: str = "cuda"  # "cuda" (NCCL) or "cpu" (gloo)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise WanInputError(f"layout {self.layout!r}: expected one of {', '.join(LAYOUTS)}")
        if self.backend not in ("cuda", "cpu"):
            raise WanInputError(f"backend {self.backend!r}: expected 'cuda' or 'cpu'")
        if len(self.devices) < 1 or len(set(self.devices)) != len(self.devices):
            raise WanInputError(f"gpus {list(self.devices)}: expected distinct device indices, at least one")
        if self.layout.startswith("cfg") and len(self.devices) % 2:
            raise WanInputError(f"layout {self.layout!r} splits cond and uncond over 2 ranks (or 2 x N): "
                                f"{len(self.devices)} devices do not split; use an even count or 'ulysses'/'ring'")

    @property
    def world_size(self) -> int:
        return len(self.devices)

    def parallel_layout(self) -> ParallelLayout:
        """The degrees this layout name means for this many devices (the heads are checked by the job)."""
        n = self.world_size
        if self.layout == "cfg" and n != 2:
            raise WanInputError(f"layout 'cfg' runs cond and uncond on 2 GPUs, not {n}; use 'cfg+ulysses' "
                                "or 'cfg+ring' for more")
        cfg = 2 if self.layout.startswith("cfg") else 1
        seq = n // cfg
        return ParallelLayout(cfg=cfg, ring=seq if self.layout.endswith("ring") else 1,
                              ulysses=seq if self.layout.endswith("ulysses") else 1)

    def check_present(self, available: int) -> None:
        """Every device asked for exists (``available``: CUDA devices this process sees)."""
        if self.backend == "cuda" and max(self.devices) >= available:
            raise WanInputError(f"gpus {list(self.devices)}: only {available} CUDA device(s) here "
                                f"(indices 0-{available - 1})" if available else
                                f"gpus {list(self.devices)}: no CUDA device here")


def parse_gpus(text: str) -> tuple[int, ...] | None:
    """"0,2,3" -> (0, 2, 3); "" -> None (use a count instead)."""
    text = text.strip()
    if not text:
        return None
    try:
        gpus = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError as error:
        raise WanInputError(f"gpus {text!r}: expected device indices separated by commas, e.g. 0,1") from error
    if any(g < 0 for g in gpus):
        raise WanInputError(f"gpus {text!r}: device indices are 0 or more")
    return gpus
