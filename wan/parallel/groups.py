"""The process groups of a ``ParallelLayout`` over an initialised torch.distributed world, and the
split of a token sequence over the sequence ranks.

Every rank must create every group in the same order (``torch.distributed.new_group`` is
collective), so ``ParallelGroups.build`` makes them all on every rank and keeps its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist

from .layout import ParallelLayout


def split_sizes(length: int, parts: int) -> list[int]:
    """``length`` tokens over ``parts`` ranks, contiguous, the first ``length % parts`` one longer:
    an uneven split is exact (no padding tokens that attention would have to mask)."""
    base, extra = divmod(length, parts)
    return [base + (i < extra) for i in range(parts)]


@dataclass
class ParallelGroups:
    """This rank's place in the layout and its groups (None where a degree is 1)."""

    layout: ParallelLayout
    rank: int
    sequence: object | None  # the ulysses x ring ranks of this CFG half
    ulysses: object | None
    ring: object | None
    cfg: object | None
    ring_ranks: tuple[int, ...] = ()  # global ranks of this rank's ring, by ring index

    @property
    def coords(self) -> tuple[int, int, int]:
        return self.layout.coords(self.rank)

    @property
    def shard(self) -> int:
        """Index of this rank's token shard within its sequence group."""
        _, r, u = self.coords
        return r * self.layout.ulysses + u

    @classmethod
    def build(cls, layout: ParallelLayout) -> "ParallelGroups":
        """Groups of ``layout`` over the default process group (which must have ``layout.size`` ranks)."""
        layout.check_world(dist.get_world_size())
        rank = dist.get_rank()
        c0, r0, u0 = layout.coords(rank)
        C, R, U = layout.cfg, layout.ring, layout.ulysses
        mine: dict[str, object] = {}
        ring_ranks: tuple[int, ...] = ()

        def make(name: str, ranks: list[int], needed: bool):
            group = dist.new_group(ranks) if needed else None
            if rank in ranks:
                mine[name] = group
            return ranks

        for c in range(C):
            make("sequence", [layout.rank_of(c, r, u) for r in range(R) for u in range(U)], R * U > 1)
            for r in range(R):
                make("ulysses", [layout.rank_of(c, r, u) for u in range(U)], U > 1)
            for u in range(U):
                ranks = make("ring", [layout.rank_of(c, r, u) for r in range(R)], R > 1)
                if c == c0 and u == u0:
                    ring_ranks = tuple(ranks)
        for r in range(R):
            for u in range(U):
                make("cfg", [layout.rank_of(c, r, u) for c in range(C)], C > 1)
        return cls(layout, rank, mine.get("sequence"), mine.get("ulysses"), mine.get("ring"), mine.get("cfg"),
                   ring_ranks)

    @classmethod
    def single(cls, group=None) -> "ParallelGroups":
        """Degree 1 over ``group`` (default: the world, which must have one rank): the parallel path
        with every collective present, for measuring its overhead."""
        return cls(ParallelLayout(), 0, group or dist.group.WORLD, group or dist.group.WORLD, None, None, (0,))
