"""Weight files with one tensor made non-finite, for the load-time checks: safetensors rewritten by
the safetensors library, GGUF patched in place through gguf-py's own reader (the first block of a
quantized tensor set to 0xFF bytes, which makes each of its fp16 scales NaN whatever the layout)."""

from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from safetensors import safe_open
from safetensors.torch import save_file


def poison_safetensors(path, name: str, value: float = float("nan")) -> Path:
    """Sets element 0 of tensor ``name`` to ``value`` (fp8 tensors: the byte 0x7F, e4m3fn's NaN)."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        sd = {k: f.get_tensor(k) for k in f.keys()}
    t = sd[name].clone()
    if t.dtype == torch.float8_e4m3fn:
        t.view(torch.uint8).view(-1)[0] = 0x7F
    else:
        t.view(-1)[0] = value
    sd[name] = t
    save_file(sd, str(path), metadata=meta)
    return Path(path)


def poison_gguf(path, name: str) -> str:
    """Makes tensor ``name`` of a GGUF non-finite in place; returns its ggml type name."""
    reader = GGUFReader(str(path), "r+")
    tensor = next(t for t in reader.tensors if t.name == name)
    data = tensor.data
    if tensor.tensor_type.name in ("F32", "F16", "BF16") and data.dtype != np.uint8:
        data.reshape(-1)[0] = np.nan
    else:
        data.reshape(-1).view(np.uint8)[: data.shape[-1] if data.ndim > 1 else 64] = 0xFF
    reader.data.flush()
    return tensor.tensor_type.name
