"""A small Wan-like GGUF written by gguf-py and the byte positions of its header fields found by
gguf-py's reader (the reference, not our parser), for the GGUF reader and fuzz tests (no tests here)."""

from __future__ import annotations

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType


def write_sample(path, arch="wan", with_patch=True, extra_kv=None):
    """A small Wan-like GGUF: one Q8_0 and one Q4_K block weight, F32/F16 small tensors."""
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch)
    a = rng.standard_normal((4, 64)).astype(np.float32)
    w.add_tensor("blocks.0.self_attn.q.weight", gguf.quants.quantize(a, Q.Q8_0), raw_dtype=Q.Q8_0)
    k = rng.integers(0, 256, size=(2, 144), dtype=np.uint8)
    k[:, :4] = (rng.standard_normal((2, 2)).astype(np.float16)).view(np.uint8)
    w.add_tensor("blocks.0.ffn.0.weight", k, raw_dtype=Q.Q4_K)
    if with_patch:
        w.add_tensor("patch_embedding.weight", rng.standard_normal((8, 4, 1, 2, 2)).astype(np.float32))
    w.add_tensor("blocks.0.modulation", rng.standard_normal((1, 6, 8)).astype(np.float32))
    w.add_tensor("head.head.weight", rng.standard_normal((4, 8)).astype(np.float16))
    for key, val in (extra_kv or {}).items():
        w.add_array(key, val) if isinstance(val, list) else w.add_string(key, val)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def positions(path):
    r = gguf.GGUFReader(str(path))
    kv = [f for f in r.fields.values() if not f.name.startswith("GGUF.")]
    infos = []
    for t in r.tensors:
        f = t.field
        name_len = int(f.parts[0][0])
        n_dims = int(f.parts[2][0])
        dims_at = f.offset + 8 + name_len + 4
        type_at = dims_at + 8 * n_dims
        infos.append(dict(name=t.name, dims_at=dims_at, type_at=type_at, offset_at=type_at + 4,
                          offset=int(t.data_offset) - r.data_offset, nbytes=int(t.n_bytes)))
    return dict(first_kv=kv[0].offset, infos=infos, data_offset=r.data_offset)
