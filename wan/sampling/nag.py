"""Normalized attention guidance (NAG; Chen et al. 2025, arXiv 2505.21179): the negative prompt
applied inside the DiT's text cross-attention, so it works at cfg 1 (distilled few-step models).

In every text cross-attention, with Z+ the attention output for the positive prompt and Z- for the
negative (same queries), per token (L1 norm over the channels):
``Z~ = Z+ + scale * (Z+ - Z-)``; ``r = |Z~|_1 / |Z+|_1``; ``Z^ = Z~ * min(r, tau) / r``;
``Z = alpha * Z^ + (1 - alpha) * Z+``. The image path of I2V cross-attention (CLIP tokens) is not
guided: its output is added to Z before the output projection, as without NAG. ComfyUI-NAG writes
the extrapolation as ``Z+ * s - Z- * (s - 1)``: its ``nag_scale`` is this ``scale`` + 1.

For one run (``use_nag``), like Enhance-A-Video: each cross-attention's ``kernel`` is wrapped to
keep the queries and the text attention output of the current call, and a forward hook replaces the
module's output by the guided one; the DiT forward of the chain is wrapped to embed the negative
prompt with the model's own text embedding. Everything is removed afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import WanInputError
from ..finite import check_fields
from ..runtime.attention_wrap import AttentionWrap, wrapped_for_run


@dataclass(frozen=True)
class NAGOptions:
    """scale: extrapolation away from the negative prompt (0: off); tau: the largest norm ratio
    |Z~|/|Z+| kept; alpha: how much of the guided feature is blended into the positive one."""

    scale: float = 10.0
    tau: float = 2.5
    alpha: float = 0.25

    def __post_init__(self):
        check_fields(self, "NAG")
        if self.scale < 0:
            raise WanInputError(f"NAG scale must be >= 0, got {self.scale}")
        if not self.tau > 0:
            raise WanInputError(f"NAG tau must be > 0, got {self.tau}")
        if not 0.0 <= self.alpha <= 1.0:
            raise WanInputError(f"NAG alpha must lie in [0, 1], got {self.alpha}")


def nag_combine(z_pos: torch.Tensor, z_neg: torch.Tensor, args: NAGOptions) -> torch.Tensor:
    """Guided attention features from Z+ and Z- [..., C] (norms over the last dimension)."""
    z = z_pos + args.scale * (z_pos - z_neg)
    ratio = z.abs().sum(-1, keepdim=True) / z_pos.abs().sum(-1, keepdim=True)
    # ratio nan (both norms 0) keeps z; inf (|Z+| = 0) clips it to 0
    z = z * torch.where(ratio > args.tau, args.tau / ratio, torch.ones_like(ratio))
    return args.alpha * z + (1 - args.alpha) * z_pos


class _NAG(AttentionWrap):
    name = "NAG"

    def __init__(self, dit, args: NAGOptions, negative: torch.Tensor):
        super().__init__()
        self.dit, self.args, self.negative = dit, args, negative
        self.context: torch.Tensor | None = None  # the embedded negative prompt of the forward in progress
        self.calls: dict[int, list] = {}  # per module: (q, out) of each kernel call of its forward
        self._kernels_of: dict[int, Callable] = {}  # the unwrapped kernel of each module

    def wrap(self, forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        dit = self.dit

        embedded = {}  # the negative prompt through the text embedding, once per run and device

        def guided(step, x, t, context, **kw):
            if x.device not in embedded:
                neg = self.negative.to(device=x.device)
                if neg.shape[1] < dit.cfg.text_len:
                    neg = F.pad(neg, (0, 0, 0, dit.cfg.text_len - neg.shape[1]))
                embedded[x.device] = dit.text_embedding(neg.to(dit.compute_dtype))
            self.context = embedded[x.device]
            try:
                return forward(step, x, t, context, **kw)
            finally:
                self.context = None
                self.calls.clear()

        return guided

    def modules(self):
        return [block.cross_attn for block in (*self.dit.blocks, *getattr(self.dit, "vace_blocks", ()))]

    def kernel_for(self, module, inner):
        self._kernels_of[id(module)] = inner

        def kernel(q, k, v):
            out = inner(q, k, v)
            if self.context is not None:
                self.calls.setdefault(id(module), []).append((q, out))
            return out
        return kernel

    def after(self, module, args, output):
        calls = self.calls.pop(id(module), None)
        if self.context is None or not calls:
            return output
        (q, z_pos), rest = calls[0], calls[1:]  # the text call comes first, then the image one
        neg = self.context.expand(q.shape[0], -1, -1)
        k = module._heads(module.norm_k(module.k(neg)), q.dtype)
        v = module._heads(module.v(neg), q.dtype)
        z_neg = self._kernels_of[id(module)](q, k, v)
        z = nag_combine(z_pos.flatten(2), z_neg.flatten(2), self.args)
        for _, z_img in rest:
            z = z + z_img.flatten(2)
        return module.o(z)


@contextlib.contextmanager
def use_nag(dit, args: NAGOptions | None, negative: torch.Tensor | None):
    """Within the block, the text cross-attentions of ``dit`` are guided away from ``negative``
    (raw text embeddings [1, L, text_dim]) in the forwards that go through the function it yields:
    ``wrap(forward) -> forward``. ``args`` None or scale 0: nothing changes."""
    active = args is not None and args.scale != 0
    if active and negative is None:
        raise WanInputError("NAG needs a negative prompt embedding; encode one")
    with wrapped_for_run(_NAG(dit, args, negative) if active else None) as wrap:
        yield wrap
