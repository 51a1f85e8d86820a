"""Shared pieces of the LoRA tests (tests/weights/test_lora*.py): the tiny DiT they patch, seeded
LoRA pairs written under any naming dialect, and ComfyUI's own patched weights as the reference."""

from __future__ import annotations

import torch

from dit_fixtures import tiny_config
from refs import comfy
from wan.models.dit.model import WanDiT

CFG = tiny_config("i2v_14b")  # dim 256, 2 heads of 128, ffn 512, 2 blocks, CLIP path: every layer kind
RANK = 4
WEIGHT_TOL = 1e-6


def our_model(sd) -> WanDiT:
    model = WanDiT(CFG)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def lora_modules(sd) -> list[str]:
    """Every module with a 2-D weight (Linear) plus the Conv3d patch embedding."""
    return [k[: -len(".weight")] for k, v in sd.items() if k.endswith(".weight") and v.dim() in (2, 5)]


def random_pairs(sd, modules, seed=1, alpha_every=2) -> dict[str, tuple]:
    """module -> (up [out, r(,1,1,1)], down [r, in(,kt,kh,kw)], alpha or None), seeded."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, m in enumerate(modules):
        w = sd[m + ".weight"]
        down = 0.1 * torch.randn(RANK, *w.shape[1:], generator=g)
        up = 0.1 * torch.randn(w.shape[0], RANK, *([1] * (w.dim() - 2)), generator=g)
        out[m] = (up, down, float(2 * RANK) if i % alpha_every == 0 else None)
    return out


def write_pairs(pairs, name_of, up_key, down_key) -> dict[str, torch.Tensor]:
    sd = {}
    for m, (up, down, alpha) in pairs.items():
        sd[f"{name_of(m)}.{up_key}"] = up.contiguous()
        sd[f"{name_of(m)}.{down_key}"] = down.contiguous()
        if alpha is not None:
            sd[f"{name_of(m)}.alpha"] = torch.tensor(alpha)
    return sd


def comfy_patched(base_sd, lora_sd, strength, *more) -> dict[str, torch.Tensor]:
    """ComfyUI's patched diffusion-model weights for LoRAs (its LoraLoader's path, chained).

    ``more``: further (lora_sd, strength) pairs stacked on the same model.
    """
    csd, clora, convert = comfy("comfy.sd"), comfy("comfy.lora"), comfy("comfy.lora_convert")
    patcher = csd.load_diffusion_model_state_dict(
        {k: v.clone() for k, v in base_sd.items()}, model_options={"dtype": torch.float32})
    key_map = clora.model_lora_keys_unet(patcher.model, {})
    for sd, s in ((lora_sd, strength),) + more:
        loaded = clora.load_lora(convert.convert_lora(dict(sd)), key_map, log_missing=False)
        applied = patcher.add_patches(loaded, s)
        assert len(applied) == len(loaded), "ComfyUI refused some of its own patches"
    patcher.patch_model()
    out = {k: v.clone() for k, v in patcher.model.diffusion_model.state_dict().items()}
    assert out.keys() == base_sd.keys()
    # ComfyUI 0.3.75 accepts a patch of blocks.N.modulation but its loader skips modules that hold
    # both their own parameters and children, so the patch is never applied. lightx2v, who ship
    # those deltas, do apply them: the reference for those keys is ComfyUI's own arithmetic.
    for key, patches in patcher.patches.items():
        name = key.removeprefix("diffusion_model.")
        if name.endswith("modulation"):
            assert torch.equal(out[name], base_sd[name])
            out[name] = clora.calculate_weight(patches, base_sd[name].float().clone(), key)
    return out
