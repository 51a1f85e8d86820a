"""Tiny files that both ComfyUI's native loaders and ours read, for comparing our graphs with ComfyUI's
own (no tests here).

- ``write_i2v_a14b_expert``: one Wan 2.2 I2V A14B expert (high or low noise; they differ only in
  weights): official names, bf16 safetensors, in_dim 36 and no ``img_emb`` (the 2.2 I2V experts take
  no CLIP image path). ComfyUI's UNETLoader reads it as model type "t2v" with in_dim 36, i.e.
  ``model_base.WAN21`` fed the 20 channels of WanImageToVideo's concat latent and mask, which is how
  it runs the real experts.
- ``write_lightning_lora``: a LoRA in lightx2v's Wan2.2-Lightning layout
  (``diffusion_model.blocks.N.<module>.lora_down.weight / .lora_up.weight / .alpha`` on every
  attention and FFN Linear, see published_loras.lightning) with seeded values, so that ComfyUI's
  LoraLoaderModelOnly and our Wan LoRA Select both apply it and a wrong scale shows.
"""

from __future__ import annotations

from pathlib import Path

import torch

import published_loras
import tiny_models
from wan.install.tiny import save_safetensors

I2V_A14B = "wan22_i2v_a14b"


def write_i2v_a14b_expert(path, seed: int) -> Path:
    return tiny_models.write_dit(path, I2V_A14B, "safetensors", seed=seed)


def write_lightning_lora(path, seed: int, rank: int = 4, alpha: float = 8.0, variant: str = I2V_A14B) -> Path:
    """Seeded lora_up / lora_down (bf16, as published) and ``alpha`` != rank, so the alpha / rank scale
    matters: each delta up @ down * alpha / rank is about a fifth of the weight it patches."""
    shapes = {k: tuple(v.shape) for k, v in tiny_models.dit_state(variant).items()}
    layout = published_loras.lightning(shapes, rank=rank, alpha=alpha)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, zero in sorted(layout.items()):
        if name.endswith(".alpha"):
            sd[name] = zero.float()
        elif name.endswith("lora_down.weight"):
            sd[name] = (torch.randn(zero.shape, generator=g) / zero.shape[1] ** 0.5).to(torch.bfloat16)
        else:
            sd[name] = (torch.randn(zero.shape, generator=g) * 0.05).to(torch.bfloat16)
    return save_safetensors(sd, path)


def dequantized_state(path) -> dict[str, torch.Tensor]:
    """Every tensor of a DiT file as fp32, dequantized by the references: gguf-py for a GGUF (its own
    dequantizers, not ours), a plain upcast for safetensors (bf16/fp16/fp8 e4m3fn to fp32 is exact)."""
    path = Path(path)
    if path.suffix == ".gguf":
        import gguf

        out = {}
        for t in gguf.GGUFReader(str(path)).tensors:
            shape = tuple(int(v) for v in reversed(t.shape))
            values = gguf.quants.dequantize(t.data, t.tensor_type).copy()
            out[t.name] = torch.from_numpy(values).float().reshape(shape)
        return out
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(path)).items()}


def write_dequantized_twin(src, dst) -> Path:
    """The fp32 safetensors twin of ``src`` that ComfyUI's own UNETLoader reads: exactly the weights
    a packed loader must compute with."""
    dst = Path(dst)
    if not dst.exists():
        save_safetensors(dequantized_state(src), dst)
    return dst
