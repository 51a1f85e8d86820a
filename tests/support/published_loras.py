"""LoRA files in the layouts the step-distillation LoRAs are published in, at full model size.

The official Wan DiT shapes are written out here by hand from the published architecture (Wan's
own model code: dim, ffn width, 40 or 30 blocks, patch (1, 2, 2), UMT5 width 4096, 256-wide time
embedding, CLIP width 1280), never read from this pack's model, so a test matching these files
against our networks checks our names and shapes too. Ranks are tiny and tensors zero: only names
and shapes matter to a match. Layouts (where they come from):

- ``lightning``: lightx2v's Wan2.2-Lightning LoRAs (ModelTC/Wan2.2-Lightning, T2V/I2V A14B 4-step,
  HIGH and LOW): ``diffusion_model.blocks.N.<module>.lora_down.weight / .lora_up.weight / .alpha``
  on the attention and FFN Linears of every block (lightx2v's convert_lightning_to_x2v_lora.py
  names these keys; musubi-tuner's convert_lora.py calls it the format "without `.` replacement").
- ``lightx2v_extracted``: lightx2v's own extractor (tools/extract/lora_extractor.py), used for
  lightx2v/Wan2.2-Distill-Loras: every 2-D weight of at least 1e6 elements as a lora_down/lora_up
  pair (no alpha); every other tensor as a full delta: ``.diff`` (weights, the Conv3d patch
  embedding and head.head included), ``.diff_b`` (biases), ``.diff_m`` (``blocks.N.modulation``
  -> ``blocks.N.diff_m``, ``head.modulation`` -> ``head.diff_m``).
- ``comfy_extracted``: ComfyUI's "Extract and Save Lora" arithmetic as kijai's re-releases of the
  Wan 2.1 lightx2v distill LoRAs (Wan21_I2V/T2V_14B_lightx2v_cfg_step_distill_lora_rank64/32) and
  CausVid (Wan21_CausVid_14B_T2V_lora_rank32) carry it: 2-D weights as lora_up/lora_down, 1-D
  weights (norms) as ``.diff``, biases as ``.diff_b``, block modulation as ``.diff_m``; the Conv3d
  patch embedding has only its bias delta.
- ``musubi``: kohya / musubi-tuner, ``lora_unet_blocks_N_<module>.lora_down/up/alpha`` on the
  Linears of every block (k_img/v_img too when the model has them); ``head_only=True`` writes the
  variant that flattens only the head (``lora_unet_blocks_N.self_attn.q``).
"""

from __future__ import annotations

import torch
from safetensors.torch import save_file

PREFIX = "diffusion_model."


def official_shapes(dim: int, ffn: int, layers: int, in_dim: int, out_dim: int = 16, clip: bool = False):
    """Official parameter name -> shape of a Wan DiT (Wan 2.1 / 2.2 model code)."""
    s: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (dim, in_dim, 1, 2, 2), "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, 4096), "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim), "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, 256), "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim), "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim), "time_projection.1.bias": (6 * dim,),
    }
    for i in range(layers):
        b = f"blocks.{i}."
        s[b + "modulation"] = (1, 6, dim)
        for attn in ("self_attn", "cross_attn"):
            for m in ("q", "k", "v", "o") + (("k_img", "v_img") if clip and attn == "cross_attn" else ()):
                s[f"{b}{attn}.{m}.weight"], s[f"{b}{attn}.{m}.bias"] = (dim, dim), (dim,)
            for n in ("norm_q", "norm_k") + (("norm_k_img",) if clip and attn == "cross_attn" else ()):
                s[f"{b}{attn}.{n}.weight"] = (dim,)
        s[b + "norm3.weight"], s[b + "norm3.bias"] = (dim,), (dim,)
        s[b + "ffn.0.weight"], s[b + "ffn.0.bias"] = (ffn, dim), (ffn,)
        s[b + "ffn.2.weight"], s[b + "ffn.2.bias"] = (dim, ffn), (dim,)
    s["head.modulation"] = (1, 2, dim)
    s["head.head.weight"], s["head.head.bias"] = (out_dim * 4, dim), (out_dim * 4,)
    if clip:
        s["img_emb.proj.0.weight"], s["img_emb.proj.0.bias"] = (1280,), (1280,)
        s["img_emb.proj.1.weight"], s["img_emb.proj.1.bias"] = (1280, 1280), (1280,)
        s["img_emb.proj.3.weight"], s["img_emb.proj.3.bias"] = (dim, 1280), (dim,)
        s["img_emb.proj.4.weight"], s["img_emb.proj.4.bias"] = (dim,), (dim,)
    return s


WAN21_I2V_14B = official_shapes(5120, 13824, 40, 36, clip=True)
WAN21_T2V_14B = official_shapes(5120, 13824, 40, 16)
WAN22_I2V_A14B = official_shapes(5120, 13824, 40, 36)  # each expert; no CLIP image path
WAN22_T2V_A14B = official_shapes(5120, 13824, 40, 16)
WAN22_TI2V_5B = official_shapes(3072, 14336, 30, 48, out_dim=48)
WAN21_T2V_1_3B = official_shapes(1536, 8960, 30, 16)

_BLOCK_LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                  "cross_attn.v", "cross_attn.o", "cross_attn.k_img", "cross_attn.v_img", "ffn.0", "ffn.2")


def _zeros(shape) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.float16)


def _pair(sd: dict, name: str, shape, rank: int, up="lora_up.weight", down="lora_down.weight") -> None:
    sd[f"{name}.{up}"] = _zeros((shape[0], rank))
    sd[f"{name}.{down}"] = _zeros((rank, shape[1]))


def _block_linears(shapes):
    for name, shape in shapes.items():
        module = name[: -len(".weight")]
        if name.startswith("blocks.") and name.endswith(".weight") and module.split(".", 2)[2] in _BLOCK_LINEARS:
            yield module, shape


def lightning(shapes, rank: int = 2, alpha: float = 2.0) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for module, shape in _block_linears(shapes):
        _pair(sd, PREFIX + module, shape, rank)
        sd[f"{PREFIX}{module}.alpha"] = torch.tensor(alpha)
    return sd


def lightx2v_extracted(shapes, rank: int = 2) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        numel = 1
        for d in shape:
            numel *= d
        if name.endswith(".weight") and len(shape) == 2 and numel >= 1_000_000:
            _pair(sd, PREFIX + name[: -len(".weight")], shape, rank)
        elif name.endswith(".weight"):
            sd[PREFIX + name[: -len(".weight")] + ".diff"] = _zeros(shape)
        elif name.endswith(".bias"):
            sd[PREFIX + name[: -len(".bias")] + ".diff_b"] = _zeros(shape)
        elif name.endswith(".modulation"):
            sd[PREFIX + name[: -len(".modulation")] + ".diff_m"] = _zeros(shape)
    return sd


def comfy_extracted(shapes, rank: int = 2) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        if name.endswith(".weight") and len(shape) == 2:
            _pair(sd, PREFIX + name[: -len(".weight")], shape, rank)
        elif name.endswith(".weight") and len(shape) == 1:
            sd[PREFIX + name[: -len(".weight")] + ".diff"] = _zeros(shape)
        elif name.endswith(".bias"):
            sd[PREFIX + name[: -len(".bias")] + ".diff_b"] = _zeros(shape)
        elif name.startswith("blocks.") and name.endswith(".modulation"):
            sd[PREFIX + name[: -len(".modulation")] + ".diff_m"] = _zeros(shape)
    return sd


def musubi(shapes, rank: int = 2, alpha: float = 1.0, head_only: bool = False) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for module, shape in _block_linears(shapes):
        if head_only:
            block, rest = module.split(".", 2)[1:]
            name = f"lora_unet_blocks_{block}.{rest}"
        else:
            name = "lora_unet_" + module.replace(".", "_")
        _pair(sd, name, shape, rank)
        sd[f"{name}.alpha"] = torch.tensor(alpha)
    return sd


def write(path, sd: dict[str, torch.Tensor]) -> str:
    save_file(sd, str(path))
    return str(path)
