"""Validated, lazy reading of safetensors files.

The header is checked completely before any tensor is touched: its 8-byte length must fit the
file, it must be a JSON object, every dtype must be known, and every tensor's byte range must
match its shape, lie inside the data section and not overlap another. Only then is the file
memory-mapped (copy-on-write) and each tensor made a view of the map, so an ``assign=True`` load
never holds a second full copy of the weights.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct

import torch

from ..errors import WanFileError, brief

# safetensors dtype name -> (torch dtype, bytes per element)
DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F8_E4M3": (torch.float8_e4m3fn, 1),
    "F8_E5M2": (torch.float8_e5m2, 1),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
    "U16": (torch.uint16, 2),
    "U32": (torch.uint32, 4),
    "U64": (torch.uint64, 8),
}

# A real header is a few MB at most (one JSON entry per tensor); a larger claim is corruption.
MAX_HEADER_BYTES = 100 * 1024 * 1024


def _file_size(path: str) -> int:
    if not os.path.exists(path):
        raise WanFileError(path, "file not found")
    if os.path.isdir(path):
        raise WanFileError(path, "is a directory, not a weights file")
    return os.path.getsize(path)


def _parse_header(path: str) -> tuple[dict, dict, int, int]:
    """Returns (entries name -> (dtype name, shape, begin, end), metadata, data start, file size)."""
    size = _file_size(path)
    if size < 8:
        raise WanFileError(path, f"too short for a safetensors file ({size} bytes; truncated or empty)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise WanFileError(
                path, f"header length {n} does not fit the file ({size} bytes): not a safetensors "
                "file, or truncated")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and Python's own refusal of integers of over 4300
        # digits; RecursionError deep nesting. Neither message is quoted: it would quote the file.
        why = "an integer of over 4300 digits" if "digits" in str(exc) else exc.__class__.__name__
        raise WanFileError(path, f"header is not valid JSON ({why}): not a safetensors file, or "
                           "corrupt") from None
    if not isinstance(header, dict):
        raise WanFileError(path, "header is not a JSON object: corrupt safetensors file")
    data_start = 8 + n
    data_len = size - data_start
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise WanFileError(path, "__metadata__ must map strings to strings")
    entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
    for key, info in header.items():
        name = brief(key)
        if not isinstance(info, dict):
            raise WanFileError(path, f"tensor {name}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise WanFileError(path, f"tensor {name}: unknown dtype {brief(dtype)} "
                               f"(known: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(
                type(d) is int and 0 <= d < 2**48 for d in shape) or len(shape) > 8:
            raise WanFileError(path, f"tensor {name}: bad shape {brief(shape)} (want at most 8 integers "
                               "0..2^48)")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets)):
            raise WanFileError(path, f"tensor {name}: bad data_offsets {brief(offsets)} (two integers)")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise WanFileError(path, f"tensor {name}: data_offsets {brief(offsets)} lie outside the "
                               f"data section ({data_len} bytes): truncated or corrupt file")
        expected = math.prod(shape) * DTYPES[dtype][1]
        if end - begin != expected:
            raise WanFileError(path, f"tensor {name}: {end - begin} bytes stored but shape "
                               f"{shape} x {dtype} needs {expected}")
        entries[key] = (dtype, tuple(shape), begin, end)
    spans = sorted((b, e, k) for k, (_, _, b, e) in entries.items() if e > b)
    for (b0, e0, k0), (b1, _, k1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise WanFileError(path, f"tensors {brief(k0)} and {brief(k1)} overlap in the file "
                               f"(bytes {b1}..{e0}): corrupt file")
    return entries, metadata, data_start, size


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict]:
    """Cheap inspection: ({name: (safetensors dtype name, shape)}, metadata) without reading data."""
    path = os.fspath(path)
    entries, metadata, _, _ = _parse_header(path)
    return {k: (d, s) for k, (d, s, _, _) in entries.items()}, metadata


def read_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a validated safetensors file, as views of a private memory map.

    Pages are read only when a tensor is used; writing to a tensor copies its pages (the file is
    never modified). With ``device`` other than CPU each tensor is copied there.
    """
    path = os.fspath(path)
    entries, _, data_start, size = _parse_header(path)
    out: dict[str, torch.Tensor] = {}
    if size == data_start or not entries:
        buf = None
    else:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    for name, (dtype, shape, begin, end) in entries.items():
        tdtype, itemsize = DTYPES[dtype]
        count = (end - begin) // itemsize
        if count == 0:
            t = torch.empty(shape, dtype=tdtype)
        else:
            # frombuffer on uint8 then view: works for dtypes frombuffer cannot build (fp8, bool)
            t = torch.frombuffer(buf, dtype=torch.uint8, count=end - begin, offset=data_start + begin)
            if (data_start + begin) % itemsize:
                t = t.clone()  # misaligned for its dtype: kernels may assume alignment
            t = t.view(tdtype).reshape(shape)
        if torch.device(device).type != "cpu":
            t = t.to(device)
        out[name] = t
    return out
