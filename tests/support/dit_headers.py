"""Full-size Wan DiT names and shapes from ComfyUI's own network, and files that hold only them.

ComfyUI's WanModel / VaceWanModel are built on the meta device, so a 14B network costs nothing;
the files are written sparse (a real header, a data section of holes), so they cost no disk and
are meant to be read for their header only.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import torch

from refs import comfy


def comfy_dit(cfg, dtype=torch.bfloat16):
    """ComfyUI's network of ``cfg``'s sizes on the meta device."""
    wan = comfy("comfy.ldm.wan.model")
    ops = comfy("comfy.ops").disable_weight_init
    kw = dict(
        in_dim=cfg.in_dim, dim=cfg.dim, ffn_dim=cfg.ffn_dim, out_dim=cfg.out_dim, num_heads=cfg.num_heads,
        num_layers=cfg.num_layers, device="meta", dtype=dtype, operations=ops,
        flf_pos_embed_token_number=cfg.flf_pos_tokens if cfg.has_flf_pos_emb else None,
    )
    if getattr(cfg, "is_animate", False):
        animate = comfy("comfy.ldm.wan.model_animate")
        return animate.AnimateWanModel(patch_size=cfg.patch_size, text_len=cfg.text_len, freq_dim=cfg.freq_dim,
                                       text_dim=cfg.text_dim, eps=cfg.eps,
                                       **{k: v for k, v in kw.items() if k != "flf_pos_embed_token_number"})
    if getattr(cfg, "is_s2v", False):
        return wan.WanModel_S2V(patch_size=cfg.patch_size, text_len=cfg.text_len, freq_dim=cfg.freq_dim,
                                text_dim=cfg.text_dim, eps=cfg.eps, audio_dim=cfg.audio_dim,
                                **{k: v for k, v in kw.items() if k != "flf_pos_embed_token_number"})
    if getattr(cfg, "is_humo", False):
        return wan.HumoWanModel(**kw)
    if cfg.vace_layers:
        return wan.VaceWanModel(vace_layers=len(cfg.vace_layers), vace_in_dim=cfg.vace_in_dim, **kw)
    if getattr(cfg, "camera_in_dim", 0):  # the Fun camera models
        return wan.CameraWanModel(model_type="camera" if cfg.has_image_emb else "camera_2.2",
                                  in_dim_control_adapter=cfg.camera_in_dim, **kw)
    return wan.WanModel(model_type="i2v" if cfg.has_image_emb else "t2v",
                        in_dim_ref_conv=getattr(cfg, "ref_in_dim", 0) or None, **kw)


def comfy_dit_shapes(cfg) -> dict[str, tuple[int, ...]]:
    # Animate's motion encoder holds constant blur kernels as buffers: not weights of the file
    return {k: tuple(v.shape) for k, v in comfy_dit(cfg).state_dict().items() if not k.endswith(".kernel")}


def write_sparse_safetensors(path, shapes: dict, dtype="BF16"):
    """A safetensors file with a real header and an all-zero (sparse) data section."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return path


def write_sparse_gguf(path, shapes: dict):
    """A GGUF (architecture wan, F16 tensors) with a real header and a sparse data section."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "wan")
    total = 0
    for name, shape in shapes.items():
        nbytes = int(np.prod(shape)) * 2
        w.add_tensor_info(name, list(shape), np.dtype(np.float16), nbytes, raw_dtype=gguf.GGMLQuantizationType.F16)
        total += -(-nbytes // 32) * 32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with open(path, "r+b") as fh:
        fh.seek(0, 2)
        start = -(-fh.tell() // 32) * 32
        fh.truncate(start + total)
    return path
