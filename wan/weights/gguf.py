"""Validated GGUF reading: our own bounded header walk, then views of a private memory map.

gguf-py's reader trusts the counts and lengths it reads (a hostile tensor count or string length
makes it allocate or loop without bound, and it turns every array item into its own numpy view), so
it never reads a file here: we walk the whole header ourselves with every count and length checked
against the bytes that remain, and check every tensor's type, shape, offset and size against the
data section. Metadata arrays are bounded: a tokenizer's arrays by a vocabulary size no real
tokenizer reaches, any other long array is stepped over without being read (none that we use is
long). Any problem becomes a ``WanFileError`` naming the file and the problem, never quoting it.

Wan files follow ComfyUI-GGUF's conventions: architecture "wan", the original tensor names,
small and sensitive tensors stored F32/F16/BF16 (returned as plain tensors), quantized 2-D
weights returned as ``PackedTensor`` (still their file bytes, memory-mapped), and an optional
``comfy.gguf.orig_shape.<name>`` key giving the logical shape of a reshaped tensor.
"""

from __future__ import annotations

import mmap
import os
import struct
import warnings

import numpy as np
import torch
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from ..errors import WanFileError, brief
from .dequant import DEQUANTIZERS
from .packed import PackedTensor

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_DIMS = 5  # ggml stops at 4, but Wan GGUFs store patch_embedding as a 5-D tensor
MAX_ARRAY_NESTING = 3
# tokenizer.ggml.* arrays are read whole: UMT5 has 256,384 pieces, the largest released vocabularies
# about 262k; a longer one is no real tokenizer's. Other arrays longer than MAX_KEPT_ARRAY are
# skipped (recorded as a SkippedArray): nothing this pack reads keeps more than a shape in one.
MAX_VOCABULARY = 1 << 20
MAX_KEPT_ARRAY = 1 << 16
TOKENIZER_PREFIX = "tokenizer."
ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."
PLAIN_TYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
INT_TYPES = {24: ("I8", torch.int8, 1), 25: ("I16", torch.int16, 2), 26: ("I32", torch.int32, 4),
             27: ("I64", torch.int64, 8), 28: ("F64", torch.float64, 8)}

# value type id -> (struct format, size) for scalars; 8 = string, 9 = array
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
          10: "<u8", 11: "<i8", 12: "<f8"}
# smallest encoding of one value of each type, to bound counts before looping over them
_MIN_SIZE = {**{k: v[1] for k, v in _SCALARS.items()}, 8: 8, 9: 12}

ARCH_DESCRIPTIONS = {"wan": "Wan diffusion model", "t5": "T5/UMT5 text encoder",
                     "t5encoder": "T5/UMT5 text encoder"}


class SkippedArray(tuple):
    """What stands for a metadata array too long to be kept: (item type id, length)."""


class _Cursor:
    """Bounded reads over the header bytes; running past the end is a truncation error."""

    def __init__(self, path: str, buf, size: int):
        self.path, self.buf, self.size, self.pos = path, buf, size, 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise WanFileError(self.path, f"truncated or corrupt: {what} at byte {self.pos} needs "
                               f"{n} bytes but the file has {self.size - self.pos} left")

    def scalar(self, fmt: str, size: int, what: str):
        self.need(size, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return v

    def u32(self, what: str) -> int:
        return self.scalar("<I", 4, what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", 8, what)

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        self.need(n, f"{what} ({n} bytes)")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WanFileError(self.path, f"{what} at byte {self.pos - n} is not UTF-8: corrupt file") from None

    def count(self, what: str, min_item: int) -> int:
        """A count of items of at least ``min_item`` bytes each, checked against what remains."""
        n = self.u64(what)
        if n * min_item > self.size - self.pos:
            raise WanFileError(self.path, f"{what} {n} cannot fit in the {self.size - self.pos} bytes "
                               "left: corrupt or hostile file")
        return n

    def skip_string(self, what: str) -> None:
        n = self.u64(f"length of {what}")
        self.need(n, f"{what} ({n} bytes)")
        self.pos += n

    def value(self, vtype: int, what: str, depth: int = 0, limit: int = MAX_KEPT_ARRAY, keep: bool = True):
        """One value; arrays longer than ``limit`` come back as a SkippedArray, stepped over unread.
        With ``keep`` False the value is only stepped over (its bytes still checked)."""
        if vtype in _SCALARS:
            return self.scalar(*_SCALARS[vtype], what)
        if vtype == 8:
            return self.string(what) if keep else self.skip_string(what)
        if vtype != 9:
            raise WanFileError(self.path, f"{what}: unknown value type {vtype}")
        if depth >= MAX_ARRAY_NESTING:
            raise WanFileError(self.path, f"{what}: arrays nested deeper than {MAX_ARRAY_NESTING}")
        itype = self.u32(f"{what} item type")
        if itype not in _MIN_SIZE:
            raise WanFileError(self.path, f"{what}: unknown array item type {itype}")
        n = self.count(f"{what} array length", _MIN_SIZE[itype])
        keep = keep and n <= limit
        if itype in _NUMPY:
            size = n * _MIN_SIZE[itype]
            arr = np.frombuffer(self.buf, dtype=_NUMPY[itype], count=n, offset=self.pos) if keep else None
            self.pos += size
            if arr is None:
                return SkippedArray((itype, n))
            return arr.astype(bool).tolist() if itype == 7 else arr.tolist()
        items = [self.value(itype, f"{what}[{i}]", depth + 1, limit, keep) for i in range(n)]
        return items if keep else SkippedArray((itype, n))


def _parse(path: str) -> tuple[dict, list, dict, int, int]:
    """Walks and validates the header. Returns (metadata, tensor infos, version, data start, size).

    Tensor infos are (name, ggml type id, dims in ggml order, offset, byte size, logical shape).
    """
    if not os.path.exists(path):
        raise WanFileError(path, "file not found")
    if os.path.isdir(path):
        raise WanFileError(path, "is a directory, not a GGUF file")
    size = os.path.getsize(path)
    if size < 24:
        raise WanFileError(path, f"too short for a GGUF file ({size} bytes; truncated or empty)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        # numpy views of the map must be gone before it closes: _Cursor only copies values out
        cur = _Cursor(path, buf, size)
        if bytes(buf[:4]) != GGUF_MAGIC:
            raise WanFileError(path, "not a GGUF file (no GGUF magic at its start)")
        cur.pos = 4
        version = cur.u32("version")
        if version & 0xFFFF == 0 and version:
            raise WanFileError(path, "big-endian GGUF files are not supported")
        if version not in SUPPORTED_VERSIONS:
            raise WanFileError(path, f"GGUF version {version} is not supported (expected 2 or 3)")
        # each tensor info takes at least 8 (name len) + 4 + 8 (one dim) + 4 + 8 bytes
        n_tensors = cur.count("tensor count", 32)
        n_kv = cur.count("metadata key count", 13)
        metadata: dict = {}
        for i in range(n_kv):
            key = cur.string(f"metadata key #{i}")
            vtype = cur.u32(f"type of metadata {brief(key)}")
            if key in metadata:
                raise WanFileError(path, f"metadata key {brief(key)} appears twice")
            what = f"metadata {brief(key)}"
            if key.startswith(TOKENIZER_PREFIX):
                value = cur.value(vtype, what, limit=MAX_VOCABULARY)
                if isinstance(value, SkippedArray):
                    raise WanFileError(path, f"{what} holds {value[1]} items; no tokenizer has more "
                                       f"than {MAX_VOCABULARY}: corrupt or hostile file")
            else:
                value = cur.value(vtype, what)
            metadata[key] = value
        infos = []
        for i in range(n_tensors):
            name = cur.string(f"name of tensor #{i}")
            quoted = brief(name)
            n_dims = cur.u32(f"dimension count of {quoted}")
            if not 1 <= n_dims <= MAX_DIMS:
                raise WanFileError(path, f"tensor {quoted} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
            dims = [cur.u64(f"dimension of {quoted}") for _ in range(n_dims)]
            ttype = cur.u32(f"type of {quoted}")
            offset = cur.u64(f"offset of {quoted}")
            infos.append((name, dims, ttype, offset))
        header_end = cur.pos
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise WanFileError(path, f"general.alignment {brief(alignment)} is not a power of two")
    data_start = -(-header_end // alignment) * alignment
    if data_start > size:
        raise WanFileError(path, f"truncated: tensor data would start at byte {data_start} "
                           f"but the file has {size} bytes")
    tensors = _check_tensors(path, infos, metadata, alignment, size - data_start)
    return metadata, tensors, version, data_start, size


def _sizes(ttype: int):
    """(name, block size, type size) of a ggml type id, or None if unknown."""
    if ttype in INT_TYPES:
        return INT_TYPES[ttype][0], 1, INT_TYPES[ttype][2]
    try:
        qt = GGMLQuantizationType(ttype)
    except ValueError:
        return None
    block, tsize = GGML_QUANT_SIZES[qt]
    return qt.name, block, tsize


def _check_tensors(path: str, infos: list, metadata: dict, alignment: int, data_len: int) -> list:
    out, seen = [], set()
    for name, dims, ttype, offset in infos:
        if name in seen:
            raise WanFileError(path, f"tensor {brief(name)} appears twice")
        seen.add(name)
        sizes = _sizes(ttype)
        if sizes is None:
            raise WanFileError(path, f"tensor {brief(name)} has unknown type id {ttype}")
        tname, block, tsize = sizes
        if any(d < 1 or d > 2**40 for d in dims):
            raise WanFileError(path, f"tensor {brief(name)} has bad dimensions {dims}")
        numel = 1
        for d in dims:
            numel *= d
        if dims[0] % block:
            raise WanFileError(path, f"tensor {brief(name)}: row length {dims[0]} is not a multiple of "
                               f"the {tname} block size {block}")
        nbytes = numel // block * tsize
        if offset % alignment:
            raise WanFileError(path, f"tensor {brief(name)}: offset {offset} is not aligned to {alignment}")
        if offset + nbytes > data_len:
            raise WanFileError(path, f"tensor {brief(name)}: bytes {offset}..{offset + nbytes} ({tname} "
                               f"{list(reversed(dims))}) lie past the end of the data section "
                               f"({data_len} bytes): truncated or corrupt file")
        shape = tuple(reversed(dims))
        orig = metadata.get(ORIG_SHAPE_PREFIX + name)
        if orig is not None:
            if not (isinstance(orig, list) and 0 < len(orig) <= MAX_DIMS and all(type(v) is int and v >= 1 for v in orig)):
                raise WanFileError(path, f"{ORIG_SHAPE_PREFIX}{brief(name)} is not a list of 1 to {MAX_DIMS} positive ints: {brief(orig)}")
            if int(np.prod(orig, dtype=object)) != numel:
                raise WanFileError(path, f"{ORIG_SHAPE_PREFIX}{brief(name)} = {brief(orig)} does not match the "
                                   f"tensor's {numel} elements")
            shape = tuple(orig)
        out.append((name, tname, ttype, offset, nbytes, shape))
    spans = sorted((o, o + n, k) for k, _, _, o, n, _ in out if n)
    for (b0, e0, k0), (b1, _, k1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise WanFileError(path, f"tensors {brief(k0)} and {brief(k1)} overlap in the file (data bytes "
                               f"{b1}..{e0}): corrupt file")
    return out


def _check_architecture(path: str, metadata: dict, names, architectures) -> str:
    arch = metadata.get("general.architecture")
    if arch is not None and not isinstance(arch, str):
        raise WanFileError(path, "general.architecture is not a string: corrupt GGUF file")
    if arch is None and "wan" in architectures and _looks_like_wan(names):
        arch = "wan"  # files written by tools that set no architecture (ComfyUI-GGUF accepts them)
    if arch not in architectures:
        kind = ARCH_DESCRIPTIONS.get(arch, "a model this pack does not run") if arch else "unknown"
        wanted = " or ".join(f"{a!r} ({ARCH_DESCRIPTIONS.get(a, a)})" for a in architectures)
        raise WanFileError(path, f"GGUF architecture is {brief(arch)} ({kind}); expected {wanted}")
    if arch == "wan" and not any(n.endswith("patch_embedding.weight") for n in names):
        raise WanFileError(path, "the 5-D tensor patch_embedding.weight is missing. This looks like "
                           "an old split conversion (5-D tensors kept in a separate file), which is "
                           "not supported: use a GGUF that contains patch_embedding")
    return arch


def _looks_like_wan(names) -> bool:
    return any(n.endswith("patch_embedding.weight") for n in names) and any(
        ".self_attn.q.weight" in n for n in names)


def read_gguf_header(path: str | os.PathLike) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict]:
    """Cheap, validated inspection: ({name: (type name, logical shape)}, metadata); no tensor data."""
    path = os.fspath(path)
    metadata, tensors, _, _, _ = _parse(path)
    return {t[0]: (t[1], t[5]) for t in tensors}, metadata


def read_gguf(path: str | os.PathLike, architectures=("wan",)) -> tuple[dict, dict]:
    """(state dict, metadata) of a validated GGUF file whose architecture is one of ``architectures``.

    F32/F16/BF16 (and integer) tensors come back as plain tensors; quantized ones as
    ``PackedTensor`` holding the memory-mapped file bytes (pages are read when first used).
    """
    path = os.fspath(path)
    metadata, tensors, _, data_start, _ = _parse(path)
    _check_architecture(path, metadata, [t[0] for t in tensors], tuple(architectures))
    for name, tname, *_ in tensors:
        if tname not in DEQUANTIZERS and tname not in {v[0] for v in INT_TYPES.values()}:
            raise WanFileError(path, f"tensor {brief(name)} uses quant type {tname}, which this pack cannot "
                               f"dequantize (supported: {', '.join(DEQUANTIZERS)})")
    # copy-on-write map: tensors are writable for torch, the file is never changed
    mapped = np.memmap(path, dtype=np.uint8, mode="c")
    state: dict = {}
    for name, tname, ttype, offset, nbytes, shape in tensors:
        raw = mapped[data_start + offset:data_start + offset + nbytes]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.from_numpy(raw)
        if tname in PLAIN_TYPES:
            state[name] = data.view(PLAIN_TYPES[tname]).reshape(shape)
        elif ttype in INT_TYPES:
            state[name] = data.view(INT_TYPES[ttype][1]).reshape(shape)
        else:
            state[name] = PackedTensor(data, tname, shape)
    return state, metadata
