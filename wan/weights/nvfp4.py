"""NVFP4 weights (ComfyUI's comfy_quant ``nvfp4``): 4-bit E2M1 values in blocks of 16 along a row,
one float8_e4m3fn scale per block and one float32 scale per tensor.

real weight = E2M1 value x (tensor scale x block scale)

In ComfyUI's files (0.8, comfy-kitchen's ``TensorCoreNVFP4Layout``) ``<layer>.weight`` holds two
values per byte, the first of each pair in the high nibble, at the shape padded to multiples of 16;
``<layer>.weight_scale`` holds the block scales in cuBLAS's tiled layout for block-scaled matmuls
(rows padded to 128, block columns to 4, each 128 x 4 tile stored as 32 rows of 16 bytes: scale
(row i, column j) of a tile at byte (i % 32) * 16 + (i // 32) * 4 + j); ``<layer>.weight_scale_2``
is the tensor scale.

Our packed form keeps one uint8 buffer per weight, so it moves, swaps and offloads like every other
packed weight: the value bytes (rows x cols/2) followed by the block scales in row order
(rows x cols/16, untiled at load). Dequantized per forward on any device; no fp4 matmul is used.
"""

from __future__ import annotations

import torch

BLOCK = 16  # values per block scale
TILE_ROWS, TILE_COLS = 128, 4  # the block-scale tile of cuBLAS's layout
# E2M1: sign bit, 2 exponent bits (bias 1), 1 mantissa bit; codes 0-7 positive, 8-15 their negatives
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)

_TABLES: dict = {}


def _roundup(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def nvfp4_nbytes(shape) -> int:
    """Bytes of our packed form for a ``(rows, cols)`` weight (cols a multiple of 16)."""
    rows, cols = (int(s) for s in shape)
    return rows * cols // 2 + rows * cols // BLOCK


def untile_scales(tiled: torch.Tensor, rows: int, blocks: int) -> torch.Tensor:
    """Block scales of a ``rows`` x ``blocks`` matrix from cuBLAS's tiled layout (any shape holding
    the padded tiles' bytes, row-major) -> ``[rows, blocks]`` in row order."""
    tr, tc = _roundup(rows, TILE_ROWS) // TILE_ROWS, _roundup(blocks, TILE_COLS) // TILE_COLS
    flat = tiled.reshape(-1)
    if flat.numel() != tr * tc * TILE_ROWS * TILE_COLS:
        raise ValueError(f"{flat.numel()} block scales do not tile a {rows} x {blocks} matrix "
                         f"({tr * TILE_ROWS} x {tc * TILE_COLS} padded)")
    # storage index [tile row, tile col, i % 32, i // 32, j] -> matrix [tile row, i // 32, i % 32, tile col, j]
    tiles = flat.reshape(tr, tc, 32, TILE_ROWS // 32, TILE_COLS).permute(0, 3, 2, 1, 4)
    return tiles.reshape(tr * TILE_ROWS, tc * TILE_COLS)[:rows, :blocks]


def pack_nvfp4(values: torch.Tensor, tiled_scales: torch.Tensor) -> torch.Tensor:
    """Our one-buffer packed form from ComfyUI's ``weight`` (uint8 [rows, cols/2]) and tiled
    ``weight_scale`` (float8_e4m3fn)."""
    rows, half = values.shape
    scales = untile_scales(tiled_scales.contiguous().view(torch.uint8), rows, half * 2 // BLOCK)
    return torch.cat([values.contiguous().view(torch.uint8).reshape(-1), scales.reshape(-1)])


def block_scales(data: torch.Tensor, shape) -> torch.Tensor:
    """The block scales of packed ``data`` as a float8_e4m3fn ``[rows, cols/16]`` view (no copy)."""
    rows, cols = (int(s) for s in shape)
    return data[rows * cols // 2:].view(torch.float8_e4m3fn).reshape(rows, cols // BLOCK)


def _table(device) -> torch.Tensor:
    # cached per device: building it per call would be a blocking host-to-GPU copy per layer
    t = _TABLES.get(device)
    if t is None:
        t = _TABLES[device] = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=device)
    return t


def dequantize_nvfp4(data: torch.Tensor, shape, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """Packed ``data`` (our form) -> the ``dtype`` weight of ``shape``.

    In float32, as comfy-kitchen's dequantize_nvfp4 computes it in float32 (tensor scale x block
    scale, then value x that product, each rounded once), so float32 results are bit-equal to
    ComfyUI's; other dtypes are one rounding of that float32 weight."""
    rows, cols = (int(s) for s in shape)
    q = data[: rows * cols // 2].reshape(rows, cols // 2)
    codes = torch.stack([q >> 4, q & 0x0F], dim=-1).reshape(rows, cols // BLOCK, BLOCK)
    values = _table(data.device)[codes.long()]
    total = block_scales(data, shape).float().unsqueeze(-1) * scale
    return (values * total).reshape(rows, cols).to(dtype)
