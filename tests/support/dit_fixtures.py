"""Shared pieces of the DiT tests: tiny configs, seeded weights, inputs and reference models."""

from __future__ import annotations

import dataclasses

import torch

from refs import comfy
from seeded_weights import seeded_weights
from wan.models.dit.config import DIT_PRESETS, DiTConfig
from wan.models.dit.model import WanDiT

# max|ours - ref| <= RTOL * max|ref| + ATOL, fp32 on CPU.
RTOL, ATOL = 1e-5, 1e-6

# One preset per distinct structure: at tiny size t2v_14b / wan22_t2v_a14b equal t2v_1_3b and
# vace_14b equals vace_1_3b, so testing them again would repeat the same computation.
TINY_VARIANTS = ["t2v_1_3b", "i2v_14b", "flf2v_14b", "vace_1_3b", "wan22_i2v_a14b", "ti2v_5b"]


def tiny_config(variant: str) -> DiTConfig:
    base = DIT_PRESETS[variant]
    if base.vace_layers:
        return base.tiny(num_layers=4)  # two VACE blocks (after blocks 0 and 2)
    return base.tiny()


def random_weights(cfg: DiTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded weights (official names, in the model's order) scaled so activations stay O(1)."""
    with torch.device("meta"):
        template = WanDiT(cfg).state_dict()
    sd = seeded_weights(template, seed)
    for k, v in sd.items():
        # Animate's motion encoder scales its kernels by 1/sqrt(fan_in) itself (equalized learning
        # rate): unit weights keep its activations O(1) where fan-in scaled ones would vanish
        if k.startswith("motion_encoder.enc.") and v.ndim >= 2:
            sd[k] = v * v.shape[1:].numel() ** 0.5
    return sd


def comfy_animate_model(cfg: DiTConfig, sd: dict) -> torch.nn.Module:
    """ComfyUI's AnimateWanModel for an Animate ``cfg`` with our weights (its constant blur kernels
    are its own: our state dict does not carry them)."""
    animate = comfy("comfy.ldm.wan.model_animate")
    ops = comfy("comfy.ops").disable_weight_init
    model = animate.AnimateWanModel(
        patch_size=cfg.patch_size, text_len=cfg.text_len, in_dim=cfg.in_dim, dim=cfg.dim, ffn_dim=cfg.ffn_dim,
        freq_dim=cfg.freq_dim, text_dim=cfg.text_dim, out_dim=cfg.out_dim, num_heads=cfg.num_heads,
        num_layers=cfg.num_layers, eps=cfg.eps, device="cpu", dtype=torch.float32, operations=ops)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith(".kernel") for k in missing), (missing, unexpected)
    return model.eval()


@dataclasses.dataclass
class Inputs:
    x: torch.Tensor
    t: torch.Tensor
    context: torch.Tensor  # short (ours pads)
    context_padded: torch.Tensor  # zero-padded to 512 tokens (what the references receive)
    clip_fea: torch.Tensor | None
    y: torch.Tensor | None
    vace_context: torch.Tensor | None


def make_inputs(cfg: DiTConfig, frames=3, height=4, width=6, batch=1, seed=1, text_tokens=7) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.out_dim, frames, height, width, generator=g)
    t = torch.tensor([637.0, 212.5][:batch])
    context = torch.randn(batch, text_tokens, cfg.text_dim, generator=g)
    padded = torch.cat([context, context.new_zeros(batch, cfg.text_len - text_tokens, cfg.text_dim)], dim=1)
    clip = torch.randn(batch, cfg.image_tokens, cfg.img_dim, generator=g) if cfg.has_image_emb else None
    y = torch.randn(batch, cfg.cond_channels, frames, height, width, generator=g) if cfg.cond_channels else None
    vace = torch.randn(batch, cfg.vace_in_dim, frames, height, width, generator=g) if cfg.vace_layers else None
    return Inputs(x, t, context, padded, clip, y, vace)


def our_model(cfg: DiTConfig, sd: dict) -> torch.nn.Module:
    """Our WanDiT holding ``sd``, in eval mode without gradients."""
    model = WanDiT(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval().requires_grad_(False)


def comfy_model(cfg: DiTConfig, sd: dict) -> torch.nn.Module:
    """ComfyUI's own network for ``cfg`` with our weights (it uses the official names too)."""
    wan = comfy("comfy.ldm.wan.model")
    ops = comfy("comfy.ops").disable_weight_init
    kw = dict(
        patch_size=cfg.patch_size, text_len=cfg.text_len, in_dim=cfg.in_dim, dim=cfg.dim, ffn_dim=cfg.ffn_dim,
        freq_dim=cfg.freq_dim, text_dim=cfg.text_dim, out_dim=cfg.out_dim, num_heads=cfg.num_heads,
        num_layers=cfg.num_layers, eps=cfg.eps, device="cpu", dtype=torch.float32, operations=ops,
        flf_pos_embed_token_number=cfg.flf_pos_tokens if cfg.has_flf_pos_emb else None,
    )
    if cfg.vace_layers:
        model = wan.VaceWanModel(vace_layers=len(cfg.vace_layers), vace_in_dim=cfg.vace_in_dim, **kw)
        assert tuple(model.vace_layers_mapping) == cfg.vace_layers, model.vace_layers_mapping
    else:
        model = wan.WanModel(model_type="i2v" if cfg.has_image_emb else "t2v", **kw)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def diffusers_dit(cfg: DiTConfig, **extra) -> torch.nn.Module:
    """diffusers' WanTransformer3DModel / WanVACETransformer3DModel for ``cfg`` (its own random
    weights; build it under ``torch.device("meta")`` for names and shapes only). The head count,
    channels, FFN width and depth come from ``cfg``; anything else takes diffusers' defaults unless
    given in ``extra``."""
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    kw = dict(num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim, in_channels=cfg.in_dim,
              out_channels=cfg.out_dim, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, **extra)
    if cfg.vace_layers:
        return WanVACETransformer3DModel(vace_layers=list(cfg.vace_layers), vace_in_channels=cfg.vace_in_dim, **kw)
    if cfg.has_image_emb:
        kw.update(image_dim=cfg.img_dim, added_kv_proj_dim=cfg.dim)
    if cfg.has_flf_pos_emb:
        kw.update(pos_embed_seq_len=cfg.flf_pos_tokens)
    return WanTransformer3DModel(**kw)


def diffusers_model(cfg: DiTConfig, sd: dict) -> torch.nn.Module:
    """diffusers_dit for ``cfg`` (every size setting from it) holding our weights ``sd``."""
    from wan.weights.names import diffusers_to_official_name

    model = diffusers_dit(cfg, patch_size=cfg.patch_size, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
                          cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=cfg.eps)
    theirs = model.state_dict()
    mapped = {k: sd[diffusers_to_official_name(k)] for k in theirs}
    assert len(set(map(diffusers_to_official_name, theirs))) == len(sd), "diffusers has other parameters than ours"
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def check(ours: torch.Tensor, ref: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> float:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    err = (ours - ref).abs().max().item()
    bound = rtol * ref.abs().max().item() + atol
    assert err <= bound, f"max|ours-ref| = {err:.3e} > {bound:.3e} (max|ref| = {ref.abs().max().item():.3e})"
    return err
