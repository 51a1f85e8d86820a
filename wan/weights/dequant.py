"""GGML block dequantizers in torch, one per quant type, all with the same signature.

Each function takes the packed bytes as a uint8 tensor ``[n_blocks, type_size]`` on any device
and returns float32 ``[n_blocks, block_size]``. The arithmetic is done in float32 in the same
order as ggml's reference (and gguf-py's numpy port), so results are bit-exact; the caller casts
to the compute dtype afterwards. Everything is whole-tensor torch ops: no Python loop over blocks,
so the cost on a GPU is a few memory-bound kernels per weight.
"""

from __future__ import annotations

from typing import Callable

import torch

QK_K = 256

# name -> (ggml type id, elements per block, bytes per block)
QUANT_TYPES: dict[str, tuple[int, int, int]] = {
    "F32": (0, 1, 4),
    "F16": (1, 1, 2),
    "BF16": (30, 1, 2),
    "Q4_0": (2, 32, 18),
    "Q4_1": (3, 32, 20),
    "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34),
    "Q2_K": (10, QK_K, 84),
    "Q3_K": (11, QK_K, 110),
    "Q4_K": (12, QK_K, 144),
    "Q5_K": (13, QK_K, 176),
    "Q6_K": (14, QK_K, 210),
    "IQ4_NL": (20, 32, 18),
    "IQ4_XS": (23, QK_K, 136),
}
TYPE_NAMES: dict[int, str] = {v[0]: k for k, v in QUANT_TYPES.items()}

IQ4_VALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


def _f16(b: torch.Tensor) -> torch.Tensor:
    """[n, 2] bytes -> [n, 1] float32 from little-endian fp16."""
    return b.contiguous().view(torch.float16).float()


_CONSTANTS: dict = {}


def _shifts(values, b: torch.Tensor, shape) -> torch.Tensor:
    # cached per device: building it each call would be a blocking host-to-GPU copy per layer
    key = (tuple(values), tuple(shape), b.device)
    t = _CONSTANTS.get(key)
    if t is None:
        t = _CONSTANTS[key] = torch.tensor(values, dtype=torch.uint8, device=b.device).reshape(shape)
    return t


def _nibbles(qs: torch.Tensor, n: int, groups: int, width: int) -> torch.Tensor:
    """Low nibbles of each ``width``-byte group first, then its high nibbles: [n, groups, 2*width]."""
    q = qs.reshape(n, groups, 1, width) >> _shifts([0, 4], qs, (1, 1, 2, 1))
    return (q & 0x0F).reshape(n, groups, 2 * width)


def _bits(qh: torch.Tensor, n: int, rows: int, width: int) -> torch.Tensor:
    """Bit j of each byte of ``qh`` [n, width] as plane j: [n, 8*rows... ] -> [n, 8, width]."""
    q = qh.reshape(n, 1, width) >> _shifts(list(range(8)), qh, (1, 8, 1))
    return q & 1


def dq_f32(b: torch.Tensor) -> torch.Tensor:
    return b.contiguous().view(torch.float32)


def dq_f16(b: torch.Tensor) -> torch.Tensor:
    return b.contiguous().view(torch.float16).float()


def dq_bf16(b: torch.Tensor) -> torch.Tensor:
    return b.contiguous().view(torch.bfloat16).float()


def dq_q8_0(b: torch.Tensor) -> torch.Tensor:
    d = _f16(b[:, :2])
    return b[:, 2:].contiguous().view(torch.int8).float() * d


def dq_q4_0(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d = _f16(b[:, :2])
    q = _nibbles(b[:, 2:], n, 1, 16).reshape(n, 32).float() - 8.0
    return d * q


def dq_q4_1(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    q = _nibbles(b[:, 4:], n, 1, 16).reshape(n, 32).float()
    return d * q + m


def _q5_values(qh: torch.Tensor, qs: torch.Tensor, n: int) -> torch.Tensor:
    # qh is a little-endian uint32: bit j is the 5th bit of element j
    high = _bits(qh, n, 1, 4).transpose(1, 2).reshape(n, 32)
    return (_nibbles(qs, n, 1, 16).reshape(n, 32) | (high << 4)).float()


def dq_q5_0(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d = _f16(b[:, :2])
    return d * (_q5_values(b[:, 2:6], b[:, 6:], n) - 16.0)


def dq_q5_1(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    return d * _q5_values(b[:, 4:8], b[:, 8:], n) + m


def dq_q2_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    scales, qs = b[:, :16], b[:, 16:80]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    dl = (d * (scales & 0x0F).float()).reshape(n, 16, 1)
    ml = (dmin * (scales >> 4).float()).reshape(n, 16, 1)
    q = (qs.reshape(n, 2, 1, 32) >> _shifts([0, 2, 4, 6], b, (1, 1, 4, 1))) & 3
    return (dl * q.reshape(n, 16, 16).float() - ml).reshape(n, QK_K)


def dq_q3_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    hmask, qs, scales = b[:, :32], b[:, 32:96], b[:, 96:108]
    d = _f16(b[:, 108:110])
    low = (scales[:, :8].reshape(n, 1, 8) >> _shifts([0, 4], b, (1, 2, 1))).reshape(n, 16)
    high = (scales[:, 8:].reshape(n, 1, 4) >> _shifts([0, 2, 4, 6], b, (1, 4, 1))).reshape(n, 16)
    sc = ((low & 0x0F) | ((high & 3) << 4)).float() - 32.0
    dl = (d * sc).reshape(n, 16, 1)
    ql = (qs.reshape(n, 2, 1, 32) >> _shifts([0, 2, 4, 6], b, (1, 1, 4, 1))).reshape(n, 16, 16) & 3
    qh = (hmask.reshape(n, 1, 1, 32) >> _shifts(list(range(8)), b, (1, 1, 8, 1))).reshape(n, 16, 16) & 1
    # a set high bit means "no offset"; a clear one subtracts 4
    q = ql.float() - ((qh ^ 1) << 2).float()
    return (dl * q).reshape(n, QK_K)


def _k_scale_min(scales: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 six-bit scales and 8 six-bit mins packed in 12 bytes (Q4_K, Q5_K)."""
    s = scales.reshape(n, 3, 4)
    d, m, md = s[:, 0], s[:, 1], s[:, 2]
    sc = torch.cat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc.float(), mn.float()


def dq_q4_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _k_scale_min(b[:, 4:16], n)
    dl = (d * sc).reshape(n, 8, 1)
    ml = (dmin * mn).reshape(n, 8, 1)
    q = _nibbles(b[:, 16:], n, 4, 32).reshape(n, 8, 32).float()
    return (dl * q - ml).reshape(n, QK_K)


def dq_q5_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _k_scale_min(b[:, 4:16], n)
    dl = (d * sc).reshape(n, 8, 1)
    ml = (dmin * mn).reshape(n, 8, 1)
    ql = _nibbles(b[:, 48:], n, 4, 32).reshape(n, 8, 32)
    qh = _bits(b[:, 16:48], n, 1, 32)
    q = (ql | (qh << 4)).float()
    return (dl * q - ml).reshape(n, QK_K)


def dq_q6_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    ql, qh = b[:, :128], b[:, 128:192]
    scales = b[:, 192:208].contiguous().view(torch.int8).float()
    d = _f16(b[:, 208:210])
    dl = (d * scales).reshape(n, 16, 1)
    low = _nibbles(ql, n, 2, 64).reshape(n, 2, 2, 64).reshape(n, 8, 32)
    high = ((qh.reshape(n, 2, 1, 32) >> _shifts([0, 2, 4, 6], b, (1, 1, 4, 1))) & 3).reshape(n, 8, 32)
    q = (low | (high << 4)).float() - 32.0
    return (dl * q.reshape(n, 16, 16)).reshape(n, QK_K)


def _iq4_lookup(idx: torch.Tensor) -> torch.Tensor:
    key = ("iq4", idx.device)
    table = _CONSTANTS.get(key)
    if table is None:
        table = _CONSTANTS[key] = torch.tensor(IQ4_VALUES, dtype=torch.float32, device=idx.device)
    return table[idx.long()]


def dq_iq4_nl(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d = _f16(b[:, :2])
    return d * _iq4_lookup(_nibbles(b[:, 2:], n, 1, 16).reshape(n, 32))


def dq_iq4_xs(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d = _f16(b[:, :2])
    sh = b[:, 2:4].to(torch.int32)
    sh = sh[:, :1] | (sh[:, 1:2] << 8)  # little-endian uint16
    high = (sh >> _shifts(range(0, 16, 2), b, (1, 8)).to(torch.int32)) & 3
    low = (b[:, 4:8].reshape(n, 4, 1) >> _shifts([0, 4], b, (1, 1, 2))).reshape(n, 8).to(torch.int32) & 0x0F
    dl = (d * ((low | (high << 4)).float() - 32.0)).reshape(n, 8, 1)
    q = _nibbles(b[:, 8:], n, 8, 16).reshape(n, 8, 32)
    return (dl * _iq4_lookup(q)).reshape(n, QK_K)


Dequantizer = Callable[[torch.Tensor], torch.Tensor]

DEQUANTIZERS: dict[str, Dequantizer] = {
    "F32": dq_f32,
    "F16": dq_f16,
    "BF16": dq_bf16,
    "Q8_0": dq_q8_0,
    "Q5_1": dq_q5_1,
    "Q5_0": dq_q5_0,
    "Q4_1": dq_q4_1,
    "Q4_0": dq_q4_0,
    "Q6_K": dq_q6_k,
    "Q5_K": dq_q5_k,
    "Q4_K": dq_q4_k,
    "Q3_K": dq_q3_k,
    "Q2_K": dq_q2_k,
    "IQ4_NL": dq_iq4_nl,
    "IQ4_XS": dq_iq4_xs,
}


def packed_nbytes(qtype: str, shape) -> int:
    """Bytes that ``shape`` elements take in ``qtype`` (the row length must fill whole blocks)."""
    _, block, size = QUANT_TYPES[qtype]
    numel = 1
    for s in shape:
        numel *= int(s)
    return numel // block * size


def dequantize(data: torch.Tensor, qtype: str, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Packed uint8 ``data`` of type ``qtype`` -> a ``dtype`` tensor of logical ``shape``."""
    _, _, type_size = QUANT_TYPES[qtype]
    blocks = data.reshape(-1, type_size)
    return DEQUANTIZERS[qtype](blocks).reshape(shape).to(dtype)
