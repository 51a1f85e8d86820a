"""One DiT forward over a ``ParallelLayout``, for the length of a run: ``use_parallel(dit, groups)``.

Only two seams of the model change, and both are put back afterwards:
- each self-attention's ``kernel`` (main and VACE blocks) becomes ``attention.sequence_kernel``
  around the kernel it had (cross-attention needs nothing: its keys are the text, whole on every rank);
- ``embed`` and ``finish``: ``embed`` keeps this rank's CFG half of the batch and its contiguous
  slice of the tokens (with the matching rows of the rotary table, so every token turns by its
  global position, and of per-token modulation); ``finish`` gathers the tokens, runs the head and
  gathers the CFG halves.
Everything between (norms, modulation, cross-attention, FFN, VACE hints) is per token, so it runs
unchanged on a slice. Block swap (module hooks), packed GGUF/fp8 layers, LoRA (weights), step cache,
skip-layer guidance and NAG call ``embed`` / ``run_block`` / ``finish`` or sit inside the blocks, so
they compose; context windows and the two Wan2.2 experts are just other forwards.

Every rank runs the same sampler on the same (gathered) numbers, so all ranks stay in step.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

import torch
import torch.distributed as dist

from ..models.dit.layers import WanSelfAttention
from ..models.dit.state import DiTState
from .attention import sequence_kernel
from .groups import ParallelGroups, split_sizes


@dataclass
class ShardedState(DiTState):
    """A ``DiTState`` holding this rank's tokens (x, x0, VACE streams, rotary rows, per-token e0);
    ``e`` stays whole (the head runs on the gathered tokens)."""

    tokens: int = 0


def _batch_slice(value, batch: int, index: int, parts: int):
    if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == batch:
        n = batch // parts
        return value[index * n:(index + 1) * n]
    return value


def _gather(t: torch.Tensor, group, sizes: list[int], dim: int) -> torch.Tensor:
    """All ranks' slices of ``t`` along ``dim`` (slice i has ``sizes[i]`` rows) joined in rank order."""
    if group is None:
        return t
    top = max(sizes)
    pad = list(t.shape)
    pad[dim] = top - t.shape[dim]
    padded = torch.cat([t, t.new_zeros(pad)], dim=dim).contiguous() if pad[dim] else t.contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, sizes)], dim=dim)


class _Parallel:
    def __init__(self, dit, groups: ParallelGroups):
        self.dit, self.groups = dit, groups
        self.sizes: list[int] = []  # token shards of the forward in progress
        self.cfg_split = False
        self.embed, self.finish = dit.embed, dit.finish  # the model's own (bound) methods

    # -- entry ---------------------------------------------------------------------------------
    def sharded_embed(self, x, t, context, clip_fea=None, y=None, vace_context=None, vace_strength=1.0, **extra):
        g = self.groups
        c = g.coords[0]
        batch, parts = x.shape[0], g.layout.cfg
        # CFG split: only a doubled (cond, uncond) batch splits; a lone pass runs whole on every rank
        self.cfg_split = parts > 1 and batch % parts == 0
        if self.cfg_split:
            x, t, context, clip_fea, y, vace_context = (
                _batch_slice(v, batch, c, parts) for v in (x, t, context, clip_fea, y, vace_context))
        state = self.embed(x, t, context, clip_fea, y, vace_context, vace_strength, **extra)
        if g.sequence is None:
            return state
        tokens = state.x.shape[1]
        self.sizes = split_sizes(tokens, g.layout.sequence)
        start = sum(self.sizes[:g.shard])
        n = self.sizes[g.shard]

        def local(v):
            return v.narrow(1, start, n) if v is not None else None

        e0 = state.e0
        if 1 < e0.shape[1] < tokens:  # per-frame modulation -> per token, so a slice keeps its rows
            per = tokens // e0.shape[1]
            e0 = e0.repeat_interleave(per, dim=1)
        if e0.shape[1] == tokens:
            e0 = local(e0)
        values = {f.name: getattr(state, f.name) for f in fields(DiTState)}
        values.update(x=local(state.x), e0=e0, rope=local(state.rope))
        if state.vace is not None:
            values.update(vace=[local(v) for v in state.vace], x0=local(state.x0))
        return ShardedState(**values, tokens=tokens)

    # -- exit ----------------------------------------------------------------------------------
    def gathered_finish(self, state):
        g = self.groups
        if isinstance(state, ShardedState):
            x = _gather(state.x, g.sequence, self.sizes, dim=1)
            state = DiTState(**{**{f.name: getattr(state, f.name) for f in fields(DiTState)}, "x": x})
        return self._cfg_gather(self.finish(state))

    def _cfg_gather(self, out: torch.Tensor) -> torch.Tensor:
        if not self.cfg_split:
            return out
        return _gather(out, self.groups.cfg, [out.shape[0]] * self.groups.layout.cfg, dim=0)


@contextlib.contextmanager
def use_parallel(dit, groups: ParallelGroups):
    """Within the block, ``dit``'s forwards (and ``embed`` / ``finish`` called directly) run split
    over ``groups`` and return the whole result on every rank; the model is restored afterwards."""
    run = _Parallel(dit, groups)
    kernels = []
    if groups.sequence is not None:
        for module in dit.modules():
            if type(module) is WanSelfAttention:  # not its cross-attention subclass
                kernels.append((module, module.kernel))
                # Python per call (split sizes, collectives): kept out of compiled graphs
                module.kernel = torch.compiler.disable(sequence_kernel(module.kernel, groups, lambda: run.sizes))
    dit.embed, dit.finish = run.sharded_embed, run.gathered_finish
    try:
        yield run
    finally:
        del dit.embed, dit.finish
        for module, kernel in kernels:
            module.kernel = kernel
