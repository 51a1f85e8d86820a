"""GGML block dequantizers in torch, one per quant type, all with the same signature.

Each function takes the packed bytes as a uint8 tensor ``[n_blocks, type_size]`` on any device
and returns float32 ``[n_blocks, block_size]``. The arithmetic is done in float32 in the same
order as ggml's reference (and gguf-py's numpy port), so results are bit-exact; the caller casts
to the compute dtype afterwards. Everything is whole-tensor torch ops: no Python loop over blocks,
so the cost on a GPU is a few memory-bound kernels per weight.

Block sizes, QK_K and the IQ4 code book come from gguf-py, and each function splits a block into
the fields of ggml's block struct by name (``d, dmin, scales, qs`` ...), in gguf-py's order.
"""

from __future__ import annotations

from typing import Callable

import torch
from gguf.constants import GGML_QUANT_SIZES, QK_K, GGMLQuantizationType
from gguf.quants import IQ4_NL

# IQ4's non-linear 4-bit code book, as gguf-py (and ggml's kvalues_iq4nl) defines it
IQ4_VALUES = IQ4_NL.kvalues


def quant_sizes(qtype: str) -> tuple[int, int]:
    """(elements, bytes) per block of GGML type ``qtype`` ("Q4_K", "F16", ...), from gguf-py."""
    return GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]


def _split(b: torch.Tensor, *widths: int) -> list[torch.Tensor]:
    """The fields of ``[n, type_size]`` blocks in struct order: one per width, then the rest
    (``np.hsplit`` as gguf-py's quants.py uses it)."""
    fields, start = [], 0
    for w in widths:
        fields.append(b[:, start:start + w])
        start += w
    fields.append(b[:, start:])
    return fields


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
    d, qs = _split(b, 2)
    return qs.contiguous().view(torch.int8).float() * _f16(d)


def dq_q4_0(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, qs = _split(b, 2)
    q = _nibbles(qs, n, 1, 16).reshape(n, 32).float() - 8.0
    return _f16(d) * q


def dq_q4_1(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, m, qs = _split(b, 2, 2)
    q = _nibbles(qs, n, 1, 16).reshape(n, 32).float()
    return _f16(d) * q + _f16(m)


def _q5_values(qh: torch.Tensor, qs: torch.Tensor, n: int) -> torch.Tensor:
    # qh is a little-endian uint32: bit j is the 5th bit of element j
    high = _bits(qh, n, 1, 4).transpose(1, 2).reshape(n, 32)
    return (_nibbles(qs, n, 1, 16).reshape(n, 32) | (high << 4)).float()


def dq_q5_0(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, qh, qs = _split(b, 2, 4)
    return _f16(d) * (_q5_values(qh, qs, n) - 16.0)


def dq_q5_1(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, m, qh, qs = _split(b, 2, 2, 4)
    return _f16(d) * _q5_values(qh, qs, n) + _f16(m)


def dq_q2_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    scales, qs, d, dmin = _split(b, QK_K // 16, QK_K // 4, 2)
    dl = (_f16(d) * (scales & 0x0F).float()).reshape(n, 16, 1)
    ml = (_f16(dmin) * (scales >> 4).float()).reshape(n, 16, 1)
    q = (qs.reshape(n, 2, 1, 32) >> _shifts([0, 2, 4, 6], b, (1, 1, 4, 1))) & 3
    return (dl * q.reshape(n, 16, 16).float() - ml).reshape(n, QK_K)


def dq_q3_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    hmask, qs, scales, d = _split(b, QK_K // 8, QK_K // 4, 12)
    lscales, hscales = _split(scales, 8)
    low = (lscales.reshape(n, 1, 8) >> _shifts([0, 4], b, (1, 2, 1))).reshape(n, 16)
    high = (hscales.reshape(n, 1, 4) >> _shifts([0, 2, 4, 6], b, (1, 4, 1))).reshape(n, 16)
    sc = ((low & 0x0F) | ((high & 3) << 4)).float() - 32.0
    dl = (_f16(d) * sc).reshape(n, 16, 1)
    ql = (qs.reshape(n, 2, 1, 32) >> _shifts([0, 2, 4, 6], b, (1, 1, 4, 1))).reshape(n, 16, 16) & 3
    qh = (hmask.reshape(n, 1, 1, 32) >> _shifts(list(range(8)), b, (1, 1, 8, 1))).reshape(n, 16, 16) & 1
    # a set high bit means "no offset"; a clear one subtracts 4
    q = ql.float() - ((qh ^ 1) << 2).float()
    return (dl * q).reshape(n, QK_K)


K_SCALE_SIZE = 12  # bytes of the packed 6-bit scales and mins of Q4_K and Q5_K


def _k_scale_min(scales: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 six-bit scales and 8 six-bit mins packed in 12 bytes (Q4_K, Q5_K)."""
    s = scales.reshape(n, 3, 4)
    d, m, m_d = s[:, 0], s[:, 1], s[:, 2]
    sc = torch.cat([d & 0x3F, (m_d & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (m_d >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc.float(), mn.float()


def dq_q4_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, dmin, scales, qs = _split(b, 2, 2, K_SCALE_SIZE)
    sc, mn = _k_scale_min(scales, n)
    dl = (_f16(d) * sc).reshape(n, 8, 1)
    ml = (_f16(dmin) * mn).reshape(n, 8, 1)
    q = _nibbles(qs, n, 4, 32).reshape(n, 8, 32).float()
    return (dl * q - ml).reshape(n, QK_K)


def dq_q5_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, dmin, scales, qh, qs = _split(b, 2, 2, K_SCALE_SIZE, QK_K // 8)
    sc, mn = _k_scale_min(scales, n)
    dl = (_f16(d) * sc).reshape(n, 8, 1)
    ml = (_f16(dmin) * mn).reshape(n, 8, 1)
    ql = _nibbles(qs, n, 4, 32).reshape(n, 8, 32)
    q = (ql | (_bits(qh, n, 1, 32) << 4)).float()
    return (dl * q - ml).reshape(n, QK_K)


def dq_q6_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    ql, qh, scales, d = _split(b, QK_K // 2, QK_K // 4, QK_K // 16)
    dl = (_f16(d) * scales.contiguous().view(torch.int8).float()).reshape(n, 16, 1)
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
    d, qs = _split(b, 2)
    return _f16(d) * _iq4_lookup(_nibbles(qs, n, 1, 16).reshape(n, 32))


def dq_iq4_xs(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    d, scales_h, scales_l, qs = _split(b, 2, 2, QK_K // 64)
    sh = scales_h.to(torch.int32)
    sh = sh[:, :1] | (sh[:, 1:2] << 8)  # little-endian uint16
    high = (sh >> _shifts(range(0, 16, 2), b, (1, 8)).to(torch.int32)) & 3
    low = (scales_l.reshape(n, 4, 1) >> _shifts([0, 4], b, (1, 1, 2))).reshape(n, 8).to(torch.int32) & 0x0F
    dl = (_f16(d) * ((low | (high << 4)).float() - 32.0)).reshape(n, 8, 1)
    q = _nibbles(qs, n, 8, 16).reshape(n, 8, 32)
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


# The fp16 fields of each block, (first byte, count): ``d`` and, where the type has one, ``dmin``/``m``
# (adjacent in every layout above). Every other field is an integer, so a block dequantizes to
# non-finite values exactly when one of these is NaN/Inf: a file's quantized weights are checked by
# reading these bytes alone.
F16_FIELDS: dict[str, tuple[int, int]] = {
    "Q8_0": (0, 1), "Q5_1": (0, 2), "Q5_0": (0, 1), "Q4_1": (0, 2), "Q4_0": (0, 1),
    "Q6_K": (QK_K // 2 + QK_K // 4 + QK_K // 16, 1), "Q5_K": (0, 2), "Q4_K": (0, 2),
    "Q3_K": (QK_K // 8 + QK_K // 4 + 12, 1), "Q2_K": (QK_K // 16 + QK_K // 4, 2),
    "IQ4_NL": (0, 1), "IQ4_XS": (0, 1),
}


def block_scales(data: torch.Tensor, qtype: str) -> torch.Tensor:
    """The fp16 scale fields (``F16_FIELDS``) of packed ``data`` as an [n_blocks, count] fp16 view,
    or, for the plain types, all of ``data`` as its floats; no copy."""
    if qtype in ("F32", "F16", "BF16"):
        return data.view({"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[qtype])
    start, count = F16_FIELDS[qtype]
    blocks = data.reshape(-1, quant_sizes(qtype)[1])
    return blocks[:, start:start + 2 * count].view(torch.float16)


def packed_nbytes(qtype: str, shape) -> int:
    """Bytes that ``shape`` elements take in ``qtype`` (the row length must fill whole blocks)."""
    block, size = quant_sizes(qtype)
    numel = 1
    for s in shape:
        numel *= int(s)
    return numel // block * size


def dequantize(data: torch.Tensor, qtype: str, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Packed uint8 ``data`` of type ``qtype`` -> a ``dtype`` tensor of logical ``shape``."""
    _, type_size = quant_sizes(qtype)
    blocks = data.reshape(-1, type_size)
    return DEQUANTIZERS[qtype](blocks).reshape(shape).to(dtype)
