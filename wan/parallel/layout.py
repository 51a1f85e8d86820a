"""How one video is split over several processes: ``ParallelLayout`` (CFG x ring x Ulysses degrees),
its command-line spelling, and the checks against a model's head count and the process count that
run before any job.

A layout of size 1 (the default) is a plain single-process run. Rank ``g`` of ``size`` processes
has coordinates ``(cfg_index, ring_index, ulysses_index)`` with the Ulysses index fastest, so the
Ulysses ranks of a group are neighbours (on one machine, NVLink) and CFG halves are furthest apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WanInputError

KEYS = ("cfg", "ulysses", "ring")


@dataclass(frozen=True)
class ParallelLayout:
    """Degrees of the three splits: ``cfg`` (1 or 2: cond and uncond on different ranks),
    ``ulysses`` (heads split by an all-to-all around self-attention; must divide the head count),
    ``ring`` (key/value blocks passed around a ring; any head count). ``size`` = their product =
    the number of processes."""

    cfg: int = 1
    ulysses: int = 1
    ring: int = 1

    def __post_init__(self):
        for key in KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WanInputError(f"parallel {key}={value!r}: expected a whole number >= 1")
        if self.cfg > 2:
            raise WanInputError(f"parallel cfg={self.cfg}: CFG splits cond and uncond, so its degree is 1 or 2")

    @property
    def size(self) -> int:
        return self.cfg * self.ulysses * self.ring

    @property
    def sequence(self) -> int:
        """Ranks that share one video's tokens (ulysses x ring)."""
        return self.ulysses * self.ring

    def coords(self, rank: int) -> tuple[int, int, int]:
        """(cfg index, ring index, ulysses index) of global ``rank``."""
        c, s = divmod(rank, self.sequence)
        r, u = divmod(s, self.ulysses)
        return c, r, u

    def rank_of(self, c: int, r: int, u: int) -> int:
        return c * self.sequence + r * self.ulysses + u

    def check_heads(self, num_heads: int, model: str = "the diffusion model") -> None:
        """WanInputError unless the Ulysses degree divides ``num_heads``."""
        if num_heads % self.ulysses:
            fits = [d for d in range(1, self.ulysses + 1) if num_heads % d == 0 and self.ulysses % d == 0]
            best = max(fits)
            raise WanInputError(
                f"parallel ulysses={self.ulysses} does not divide the {num_heads} attention heads of {model}; "
                f"use ulysses={best},ring={self.ring * self.ulysses // best} (ring attention takes the rest) "
                f"or a Ulysses degree that divides {num_heads}")

    def check_world(self, world_size: int) -> None:
        """WanInputError unless the layout uses exactly ``world_size`` processes."""
        if self.size != world_size:
            raise WanInputError(
                f"parallel layout {self.spec()} needs {self.size} processes, but {world_size} "
                f"{'was' if world_size == 1 else 'were'} started (torchrun --nproc-per-node {self.size})")

    def spec(self) -> str:
        """The command-line spelling, e.g. ``cfg=2,ulysses=2``."""
        parts = [f"{k}={getattr(self, k)}" for k in KEYS if getattr(self, k) != 1]
        return ",".join(parts) or "ulysses=1"

    @classmethod
    def parse(cls, text: str) -> "ParallelLayout":
        """``ulysses=2,cfg=2`` / ``ring=3`` / ``cfg=2,ulysses=2,ring=2`` -> a layout (missing keys: 1)."""
        values: dict[str, int] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in KEYS:
                raise WanInputError(f"--parallel {text!r}: expected KEY=N items separated by commas, "
                                    f"KEY one of {', '.join(KEYS)} (e.g. ulysses=2,cfg=2)")
            if key in values:
                raise WanInputError(f"--parallel {text!r}: {key} given twice")
            try:
                values[key] = int(value)
            except ValueError:
                raise WanInputError(f"--parallel {text!r}: {key}={value!r} is not a whole number") from None
        if not values:
            raise WanInputError(f"--parallel {text!r}: give at least one of {', '.join(KEYS)}")
        return cls(**values)

    @classmethod
    def auto(cls, world_size: int, num_heads: int, cfg_parallel: bool) -> "ParallelLayout":
        """A layout for ``world_size`` processes: CFG over 2 when asked and even, then the largest
        Ulysses degree that divides both the heads and the rest, ring for what remains."""
        cfg = 2 if cfg_parallel and world_size % 2 == 0 else 1
        seq = world_size // cfg
        ulysses = max(d for d in range(1, seq + 1) if seq % d == 0 and num_heads % d == 0)
        return cls(cfg=cfg, ulysses=ulysses, ring=seq // ulysses)
