"""Writing Wan GGUF files the way ComfyUI-GGUF's converter lays them out.

Architecture "wan", the official tensor names, and only the 2-D weights inside the blocks
quantized. The sensitive or small tensors keep their precision: patch embeddings and every
``modulation`` as F32, 1-D tensors and tensors of at most 1024 elements as F32, and the text/time
embeddings, time projection, image embedding and head in their source dtype. The file is written
under a temporary name in the destination folder, fsynced and renamed, so a failure never leaves
a half-written file behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Callable

import numpy as np
import torch

from ..errors import WanFileError, WanInputError
from .dequant import packed_nbytes, quant_sizes
from .names import DIT, strip_prefix

WRITABLE_TYPES = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q4_K", "F16", "BF16", "F32")
_BLOCK_WEIGHT = re.compile(r"^(vace_)?blocks\.\d+\..+\.weight$")
_KEEP_SOURCE = ("text_embedding.", "time_embedding.", "time_projection.", "head.", "img_emb.")
_TORCH_TO_GGUF = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def choose_type(name: str, shape, source: torch.dtype, qtype: str) -> str:
    """The GGUF type a tensor is stored in when the file's target type is ``qtype``."""
    src = _TORCH_TO_GGUF.get(source, "F32")
    numel = int(np.prod(shape)) if len(shape) else 1
    if len(shape) != 2 or numel <= 1024 or "patch_embedding" in name or name.endswith("modulation"):
        return "F32"
    if name.startswith(_KEEP_SOURCE) or not _BLOCK_WEIGHT.match(name):
        return src
    block, _ = quant_sizes(qtype)
    if shape[-1] % block:
        return src  # rows that do not fill whole blocks cannot be quantized
    return qtype


def _encode(t: torch.Tensor, gtype: str) -> np.ndarray:
    """A tensor as the bytes (or float array) GGUFWriter writes for type ``gtype``."""
    import gguf

    if gtype == "F32":
        return t.detach().to(torch.float32).contiguous().numpy()
    if gtype == "F16":
        return t.detach().to(torch.float16).contiguous().numpy()
    if gtype == "BF16":
        return t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint8)
    if gtype == "Q4_K":
        return quantize_q4_k(t.detach().to(torch.float32)).numpy()
    data = t.detach().to(torch.float32).contiguous().numpy()
    return gguf.quants.quantize(data, getattr(gguf.GGMLQuantizationType, gtype))


def write_gguf(state_dict: dict[str, torch.Tensor], path: str | os.PathLike, qtype: str,
               arch: str = "wan", progress: Callable[[int, int, str, str], None] | None = None) -> dict:
    """Writes ``state_dict`` (plain tensors) as a GGUF of target type ``qtype``, atomically.

    ``progress(i, n, name, type)`` is called before each tensor. Returns {name: stored type}.
    """
    import gguf

    if qtype not in WRITABLE_TYPES:
        raise WanInputError(f"cannot write quant type {qtype!r}; choose one of {', '.join(WRITABLE_TYPES)}")
    path = os.fspath(path)
    tensors = strip_prefix(state_dict, DIT)  # a whole checkpoint's other models are left out
    plan = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.numel() == 0):
            raise WanInputError(f"{name}: only floating-point tensors can be written (got {type(t).__name__} "
                                f"{getattr(t, 'dtype', '')})")
        plan[name] = choose_type(name, tuple(t.shape), t.dtype, qtype)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".gguf.part", dir=folder)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for name, gtype in plan.items():
            t = tensors[name]
            ggml = getattr(gguf.GGMLQuantizationType, gtype)
            nbytes = packed_nbytes(gtype, t.shape)
            # gguf-py records a uint8 tensor's shape in bytes and converts it back itself
            if gtype in ("F32", "F16"):
                writer.add_tensor_info(name, tuple(t.shape), np.dtype(gtype.replace("F", "float")), nbytes)
            else:
                block, size = quant_sizes(gtype)
                byte_shape = (*t.shape[:-1], t.shape[-1] // block * size)
                writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=ggml)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for i, (name, gtype) in enumerate(plan.items()):
            if progress is not None:
                progress(i, len(plan), name, gtype)
            writer.write_tensor_data(_encode(tensors[name], gtype))
        writer.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return plan


# -- Q4_K encoder (gguf-py writes no K-quants) -------------------------------------------------

def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def quantize_q4_k(w: torch.Tensor) -> torch.Tensor:
    """float32 [..., n*256] -> Q4_K bytes [..., n*144]. Vectorized; a plain min/max fit.

    Each 256-element super-block holds 8 sub-blocks of 32 with a 6-bit scale and 6-bit min
    (relative to fp16 ``d``/``dmin``) and 4-bit values: x ~= d*sc*q - dmin*m. The fit is simpler
    than llama.cpp's iterative search, so errors are somewhat larger than its Q4_K, but the bytes
    follow the format exactly (any Q4_K reader decodes them).
    """
    shape = w.shape
    if shape[-1] % 256:
        raise WanInputError(f"Q4_K needs rows of a multiple of 256 elements, got {shape[-1]}")
    x = w.reshape(-1, 8, 32).float()
    n = x.shape[0]
    lo = x.amin(-1).clamp(max=0.0)
    hi = x.amax(-1)
    scale = (hi - lo) / 15.0  # [n, 8]
    minv = -lo
    d = (scale.amax(-1) / 63.0).half().float()  # [n]
    dmin = (minv.amax(-1) / 63.0).half().float()
    inv_d = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    inv_m = torch.where(dmin > 0, 1.0 / dmin, torch.zeros_like(dmin))
    sc = _round_half_away(scale * inv_d[:, None]).clamp(0, 63)
    mn = _round_half_away(minv * inv_m[:, None]).clamp(0, 63)
    step = d[:, None] * sc  # [n, 8]
    offset = dmin[:, None] * mn
    inv_step = torch.where(step > 0, 1.0 / step, torch.zeros_like(step))
    q = _round_half_away((x + offset[..., None]) * inv_step[..., None]).clamp(0, 15).to(torch.uint8)
    sc, mn = sc.to(torch.uint8), mn.to(torch.uint8)
    scales = torch.empty(n, 12, dtype=torch.uint8)
    scales[:, 0:4] = (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6)
    scales[:, 4:8] = (mn[:, :4] & 63) | ((mn[:, 4:] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    q = q.reshape(n, 4, 2, 32)  # pairs of sub-blocks share bytes: low nibble first, high second
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, 128)
    heads = torch.stack([d, dmin], -1).half().view(torch.uint8).reshape(n, 4)
    out = torch.cat([heads, scales, qs], dim=-1)
    return out.reshape(*shape[:-1], shape[-1] // 256 * 144)


def quantize_state_dict_check(path: str, state_dict: dict) -> None:
    """Refuses inputs that cannot make a Wan GGUF (no patch embedding means not a Wan DiT)."""
    if "patch_embedding.weight" not in strip_prefix(state_dict, DIT):
        raise WanFileError(path, "no patch_embedding.weight: not a Wan diffusion model checkpoint")
