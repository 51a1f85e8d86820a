"""Helpers for the VAE tests: seeded random weights and tiny configurations (no tests here)."""

from __future__ import annotations

import importlib

import torch

from refs import comfy, import_pack
from seeded_weights import seeded_weights
from wan.models.vae.layers import VAEConfig
from wan.models.vae.wan21 import WanVAE

TINY21 = VAEConfig(dim=8, z_dim=16, num_res_blocks=1)
TINY22 = VAEConfig(dim=8, dec_dim=16, z_dim=48, num_res_blocks=1)


def random_weights(template: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random tensors with the template's names and shapes, scaled so activations stay O(1);
    drawn in name order, so ours and a reference with the same names get the same values."""
    return seeded_weights({name: template[name] for name in sorted(template)}, seed)


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max|ours - ref| / max|ref|."""
    return ((ours.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def vae21_with_comfy(seed: int):
    """A tiny Wan 2.1 VAE of ours and ComfyUI's comfy.sd.VAE on the same seeded weights (the
    conditioning parity tests encode through both; ComfyUI's fixes 2 residual blocks)."""
    torch.set_num_threads(2)
    ours = WanVAE(VAEConfig(dim=8, z_dim=16, num_res_blocks=2)).eval()
    sd = random_weights(ours.state_dict(), seed=seed)
    ours.load_state_dict(sd)
    return ours, comfy("comfy.sd").VAE(sd=sd, dtype=torch.float32)


def pack_vae21(seed: int = 5):
    """The tiny Wan 2.1 VAE (ComfyUI's 2 residual blocks) built from the pack as ComfyUI imports it, for
    the in-process node tests (its classes, not the test process's ``wan``)."""
    torch.set_num_threads(2)
    name = import_pack().__name__
    vae_mod = importlib.import_module(name + ".wan.models.vae.wan21")
    layers = importlib.import_module(name + ".wan.models.vae.layers")
    model = vae_mod.WanVAE(layers.VAEConfig(dim=8, z_dim=16, num_res_blocks=2)).eval()
    model.load_state_dict(random_weights(model.state_dict(), seed=seed))
    return model
