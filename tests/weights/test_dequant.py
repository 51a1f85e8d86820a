"""Our torch dequantizers against gguf-py's numpy reference, bit for bit, on random valid blocks."""

import zlib

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from wan.weights.dequant import DEQUANTIZERS, dequantize, packed_nbytes  # noqa: E402

# byte ranges of the fp16 scale fields in each block type (from ggml's block structs)
F16_FIELDS = {
    "Q4_0": [(0, 2)], "Q4_1": [(0, 4)], "Q5_0": [(0, 2)], "Q5_1": [(0, 4)], "Q8_0": [(0, 2)],
    "Q2_K": [(80, 84)], "Q3_K": [(108, 110)], "Q4_K": [(0, 4)], "Q5_K": [(0, 4)],
    "Q6_K": [(208, 210)], "IQ4_NL": [(0, 2)], "IQ4_XS": [(0, 2)],
}


def sizes(qtype: str) -> tuple[int, int]:
    """(elements, bytes) per block, from gguf-py's table."""
    return gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, qtype)]


def random_blocks(qtype: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random bytes whose float fields hold finite values (so NaN != NaN cannot hide a bug)."""
    block, size = sizes(qtype)
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    if qtype in ("F32", "F16", "BF16"):
        vals = rng.standard_normal((n_blocks, block)).astype(np.float32) * 100
        if qtype == "F32":
            return vals.view(np.uint8)
        if qtype == "F16":
            return vals.astype(np.float16).view(np.uint8)
        return (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    for a, b in F16_FIELDS[qtype]:
        vals = (rng.standard_normal((n_blocks, (b - a) // 2)) * 4).astype(np.float16)
        raw[:, a:b] = vals.view(np.uint8)
    return raw


@pytest.mark.parametrize("qtype", list(DEQUANTIZERS))
def test_bit_exact_against_gguf_py(qtype):
    rng = np.random.default_rng(zlib.crc32(qtype.encode()))
    block, size = sizes(qtype)
    rows, blocks_per_row = 6, 4
    raw = random_blocks(qtype, rows * blocks_per_row, rng).reshape(rows, blocks_per_row * size)
    ref = gguf.quants.dequantize(raw, getattr(gguf.GGMLQuantizationType, qtype))
    ours = dequantize(torch.from_numpy(raw.copy()), qtype, (rows, blocks_per_row * block))
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    # compare the bit patterns, so even -0.0 vs 0.0 would count as a difference
    assert np.array_equal(ours.numpy().view(np.uint32), ref.astype(np.float32).view(np.uint32))


def test_table_has_every_listed_type():
    required = {"F32", "F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q6_K", "Q5_K",
                "Q4_K", "Q3_K", "Q2_K"}
    assert required <= set(DEQUANTIZERS)


@pytest.mark.parametrize("qtype", list(DEQUANTIZERS))
def test_packed_nbytes_matches_gguf_py(qtype):
    block, _ = sizes(qtype)
    shape = (3, 5, 2 * block)
    byte_shape = gguf.quant_shape_to_byte_shape(shape, getattr(gguf.GGMLQuantizationType, qtype))
    assert packed_nbytes(qtype, shape) == int(np.prod(byte_shape))


def test_dequantize_casts_to_requested_dtype():
    rng = np.random.default_rng(1)
    raw = random_blocks("Q8_0", 8, rng).reshape(2, 4 * 34)
    ref = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0))
    out = dequantize(torch.from_numpy(raw.copy()), "Q8_0", (2, 128), torch.bfloat16)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, ref.to(torch.bfloat16))
