"""Self-attention kernels over a token sequence split across ranks. Each has the contract of
``models.dit.attention.Kernel``: ``(q, k, v)`` [B, L_local, H, D] -> [B, L_local, H, D], so it
replaces a module's ``kernel`` attribute and nothing else of the model changes.

Ulysses (DeepSpeed-Ulysses): one all-to-all turns "my tokens, all heads" into "all tokens, my
heads" (q, k and v in one message), the wrapped kernel (SDPA, flash, sage ...) attends, and a second
all-to-all brings the heads back. Ring: key/value blocks travel around the ring while each rank
attends its queries to the block it holds; partial results are combined by their log-sum-exp
(online softmax) in fp32, exact up to rounding. Used together (ulysses x ring), the Ulysses
exchange runs first and the ring works on the gathered chunk with this rank's heads.

Token counts per rank may differ by one (``groups.split_sizes``), so the exchanges carry explicit
split sizes; ``sizes()`` gives the current forward's shard sizes over the sequence group.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from ..models.dit.attention import Kernel
from .groups import ParallelGroups

# fp32 scores held at once by the ring kernel per query chunk (elements): 64 Mi = 256 MiB
_RING_SCORES = 1 << 26


def ulysses_kernel(inner: Kernel, groups: ParallelGroups, sizes: Callable[[], list[int]]) -> Kernel:
    """``inner`` run on all tokens of 1/ulysses of the heads, between two all-to-alls."""
    U = groups.layout.ulysses
    group = groups.ulysses

    def kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, n, heads, d = q.shape
        h = heads // U
        r = groups.coords[1]
        members = sizes()[r * U:(r + 1) * U]  # tokens of each rank of my Ulysses group
        send = torch.stack([q, k, v]).view(3, b, n, U, h, d).permute(3, 0, 1, 2, 4, 5).contiguous()
        counts = [3 * b * m * h * d for m in members]
        recv = q.new_empty(sum(counts))
        dist.all_to_all_single(recv, send.view(-1), counts, [3 * b * n * h * d] * U, group=group)
        qkv = torch.cat([p.view(3, b, m, h, d) for p, m in zip(recv.split(counts), members)], dim=2)
        out = inner(qkv[0], qkv[1], qkv[2])  # [B, L_group, h, D]
        back = torch.cat([p.reshape(-1) for p in out.split(members, dim=1)])
        recv = q.new_empty(U * b * n * h * d)
        dist.all_to_all_single(recv, back, [b * n * h * d] * U, [b * m * h * d for m in members], group=group)
        return recv.view(U, b, n, h, d).permute(1, 2, 0, 3, 4).reshape(b, n, heads, d)

    return kernel


def _partial(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of q [B, h, Lq, D] to one block k, v [B, h, Lk, D], fp32: (out, lse [B, h, Lq])."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    top = scores.amax(-1, keepdim=True)
    p = (scores - top).exp_()
    total = p.sum(-1, keepdim=True)
    return (p @ v) / total, (top + total.log()).squeeze(-1)


def _merge(out, lse, o_b, lse_b):
    if out is None:
        return o_b, lse_b
    new = torch.logaddexp(lse, lse_b)
    return out * (lse - new).exp().unsqueeze(-1) + o_b * (lse_b - new).exp().unsqueeze(-1), new


def ring_attention_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out, lse):
    """Fold one key/value block into the running (out, lse) of queries q, all [B, h, L, D] fp32,
    in query chunks so that the scores stay bounded."""
    b, h, lq, _ = q.shape
    rows = max(1, _RING_SCORES // max(1, b * h * k.shape[2]))
    if rows >= lq:
        return _merge(out, lse, *_partial(q, k, v))
    outs, lses = [], []
    for start in range(0, lq, rows):
        sl = slice(start, start + rows)
        o, l = _merge(None if out is None else out[:, :, sl], None if lse is None else lse[:, :, sl],
                      *_partial(q[:, :, sl], k, v))
        outs.append(o)
        lses.append(l)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def ring_kernel(groups: ParallelGroups, sizes: Callable[[], list[int]]) -> Kernel:
    """Attention of this rank's queries to the keys of every rank of its ring (any head count)."""
    R, U = groups.layout.ring, groups.layout.ulysses
    ranks = groups.ring_ranks
    group = groups.ring

    def kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, n, h, d = q.shape
        me = groups.coords[1]
        shard = sizes()
        chunk = [sum(shard[i * U:(i + 1) * U]) for i in range(R)]  # tokens each ring index holds
        qf = q.transpose(1, 2).float()
        kv = torch.stack([k, v]).transpose(2, 3).float().contiguous()  # [2, B, h, L, D]
        out = lse = None
        for step in range(R):
            pending = None
            if step < R - 1:  # pass my current block on while attending to it
                src = (me - step - 1) % R
                incoming = kv.new_empty(2, b, h, chunk[src], d)
                pending = dist.batch_isend_irecv([
                    dist.P2POp(dist.isend, kv, ranks[(me + 1) % R], group),
                    dist.P2POp(dist.irecv, incoming, ranks[(me - 1) % R], group),
                ])
            out, lse = ring_attention_step(qf, kv[0], kv[1], out, lse)
            if pending is not None:
                for work in pending:
                    work.wait()
                kv = incoming
        return out.transpose(1, 2).to(q.dtype)

    return kernel


def sequence_kernel(inner: Kernel, groups: ParallelGroups, sizes: Callable[[], list[int]]) -> Kernel:
    """The kernel of a module under ``groups``' layout: Ulysses around ``inner``, ring instead of
    ``inner`` (the ring needs each block's log-sum-exp, which the wrapped kernels do not return)."""
    lay = groups.layout
    core = ring_kernel(groups, sizes) if lay.ring > 1 else inner
    return ulysses_kernel(core, groups, sizes) if lay.ulysses > 1 or lay.ring == 1 else core
