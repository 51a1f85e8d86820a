"""On paper: the Ulysses all-to-all volume of one DiT block and a simple speed-up model (the README's
"More than one GPU" table comes from ``scaling_rows``).

Model: a step's compute divides by the number of ranks; each block adds 4 all-to-alls (q, k, v in,
attention output back) that do not overlap compute, each moving (degree - 1) / degree of a rank's
[tokens / degree, dim] activations; time = bytes / link bandwidth. CFG parallel (degree 2) moves only
the final latent and halves the work of a step at cfg > 1.
"""

from __future__ import annotations

from dataclasses import dataclass

# Measured seconds per DiT forward (batch 1, 480x832x81 = 32,760 tokens, one H100, bf16 / scaled
# fp8 for 14B; README "Speed and memory", bench/gpu.py)
H100_FORWARD_480P = {"1.3B": 0.572, "14B": 2.60}
MODELS = {"1.3B": dict(dim=1536, ffn=8960, blocks=30, heads=12), "14B": dict(dim=5120, ffn=13824, blocks=40, heads=40)}
LINKS = {"NVLink": 450e9, "PCIe 4": 25e9}  # bytes/s per GPU


def latent_tokens(width: int, height: int, frames: int) -> int:
    """DiT tokens of a Wan 2.1 video: VAE stride 4x8x8, patch 1x2x2."""
    return ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)


@dataclass(frozen=True)
class Volume:
    per_rank: float  # bytes one rank sends per block per forward
    total: float  # bytes all ranks send together


def alltoall_volume(tokens: int, dim: int, degree: int, batch: int = 1, bytes_per_value: int = 2) -> Volume:
    """The 4 all-to-alls of one block's self-attention under Ulysses ``degree``."""
    shard = batch * tokens / degree * dim * bytes_per_value  # one activation of one rank
    per_rank = 4 * shard * (degree - 1) / degree
    return Volume(per_rank, per_rank * degree)


def forward_flops(tokens: int, dim: int, ffn: int, text: int = 512) -> float:
    """Multiply-adds x2 of one block: projections, FFN, cross-attention and the two attentions."""
    linear = tokens * (2 * 4 * dim * dim + 2 * 2 * dim * ffn + 2 * 2 * dim * dim)
    return linear + 4 * tokens * tokens * dim + 4 * tokens * text * dim


def forward_seconds(model: str, tokens: int) -> float:
    """A forward's time at ``tokens``, scaled from the measured 480p forward by the FLOP count."""
    m = MODELS[model]
    ref = latent_tokens(832, 480, 81)
    return H100_FORWARD_480P[model] * forward_flops(tokens, m["dim"], m["ffn"]) / forward_flops(ref, m["dim"], m["ffn"])


def speedup(model: str, tokens: int, cfg: int, ulysses: int, bandwidth: float) -> float:
    """Step time of one GPU at cfg > 1 (two forwards) over the layout's step time."""
    m = MODELS[model]
    t = forward_seconds(model, tokens)
    comm = m["blocks"] * alltoall_volume(tokens, m["dim"], ulysses).per_rank / bandwidth
    return 2 * t / ((2 // cfg) * (t / ulysses + comm))


def scaling_rows():
    """(model, size, tokens, MB per rank per block at degree 2/4/8, {(gpus, link): speed-up}) rows."""
    sizes = {"480p": (832, 480), "720p": (1280, 720)}
    rows = []
    for model, m in MODELS.items():
        for size, (w, h) in sizes.items():
            n = latent_tokens(w, h, 81)
            mb = {d: alltoall_volume(n, m["dim"], d).per_rank / 1e6 for d in (2, 4, 8)}
            ups = {}
            for gpus in (2, 4, 8):
                cfg = 1 if gpus == 2 else 2  # at cfg > 1 the CFG split costs nothing: take it first
                u = gpus // cfg
                for link, bw in LINKS.items():
                    ups[(gpus, link)] = (speedup(model, n, cfg, u, bw), f"cfg={cfg},ulysses={u}" if cfg > 1 else f"ulysses={u}")
            rows.append((model, size, n, mb, ups))
    return rows
