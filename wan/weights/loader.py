"""One entry point for weight files: GGUF or safetensors, chosen by content (``sniff``, the only
format test), never pickles."""

from __future__ import annotations

import os

from ..errors import WanFileError
from .comfy_quant import has_comfy_quant, logical_shapes, unpack_comfy_quant
from .finite import check_finite_weights
from .fp8 import has_fp8, pack_fp8_state_dict
from .gguf import GGUF_MAGIC, read_gguf, read_gguf_header
from .safetensors import read_safetensors, read_safetensors_header

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")


def sniff(path: str) -> str:
    """"gguf", "safetensors" or a WanFileError saying what the file is instead."""
    if not os.path.exists(path):
        raise WanFileError(path, "file not found")
    if os.path.isdir(path):
        raise WanFileError(path, "is a directory, not a weights file")
    size = os.path.getsize(path)
    if size == 0:
        raise WanFileError(path, "file is empty (an interrupted download?)")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    # Content first: a safetensors header length may well start with the byte 0x80 (a pickle's
    # protocol marker), and no pickle has '{' at offset 8.
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or path.lower().endswith(PICKLE_SUFFIXES):
        raise WanFileError(path, "looks like a PyTorch pickle checkpoint (.pt/.pth/.ckpt); only "
                           "safetensors and GGUF files are read, pickles are never unpickled. "
                           "Convert it to safetensors first")
    if head.lstrip()[:1] in (b"<", b"{"):
        raise WanFileError(path, "is a text/HTML file, not weights (a failed download?)")
    raise WanFileError(path, "neither GGUF nor safetensors: its first bytes are neither format's header")


def load_state_dict(path: str | os.PathLike, architectures=("wan",), pack_fp8: bool = True) -> dict:
    """The tensors of a GGUF or safetensors file.

    GGUF quantized tensors come back packed (``is_packed``); so do fp8 safetensors weights when
    ``pack_fp8`` (scaled fp8 markers and scales folded in), and ComfyUI comfy_quant weights
    (``comfy_quant``). ``architectures`` limits which GGUF
    architectures are accepted. A tensor holding NaN or Inf is refused (``finite``).
    """
    path = os.fspath(path)
    kind = sniff(path)
    if kind == "gguf":
        state, _ = read_gguf(path, architectures=architectures)
        check_finite_weights(state, path)
        return state
    state = read_safetensors(path)
    check_finite_weights(state, path)
    if pack_fp8:
        _, metadata = read_safetensors_header(path)
        if has_comfy_quant(state, metadata):  # before the fp8 reading: its scales have other names
            state = unpack_comfy_quant(state, metadata, path)
    if pack_fp8 and has_fp8(state):
        state = pack_fp8_state_dict(state, path)
    return state


def read_header(path: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], dict]:
    """({tensor name: shape}, metadata) of a safetensors or GGUF file, from its header only
    (comfy_quant nvfp4 weights at their logical shape).

    Raises WanFileError for a file that is unreadable, not in either format, or truncated.
    """
    path = os.fspath(path)
    read = read_gguf_header if sniff(path) == "gguf" else read_safetensors_header
    entries, metadata = read(path)
    shapes = {k: tuple(v[1]) for k, v in entries.items()}
    if has_comfy_quant(shapes, metadata):  # packed nvfp4 pairs: the shape the model's layer has
        shapes = logical_shapes(shapes)
    return shapes, metadata
