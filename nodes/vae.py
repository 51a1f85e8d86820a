"""Wan VAE Decode / Encode: RAW latents (ComfyUI's LATENT for Wan, [B, C, T, h, w]) <-> IMAGE frames.

The latent convention is ComfyUI's own, so latents from ComfyUI's Wan nodes decode here and ours
decode with ComfyUI's VAE Decode and a Wan VAE.
"""

from __future__ import annotations

from ._common import CATEGORY, WANVAE, cancellable, main_device, on_device
from ._validate import check_received, validate

from ..wan.errors import WanInputError
from ..wan.values import window_problem

TILE_SIZE, TILE_OVERLAP = (64, 4096), (0, 2048)  # pixels


def tile_rule(tile_size=None, tile_overlap=None) -> str | None:
    """The one rule of the tile inputs (VALIDATE_INPUTS and the node's run, see _common)."""
    return window_problem("tile_size", tile_size, TILE_SIZE, "tile_overlap", tile_overlap, TILE_OVERLAP)


def check_latent(vae, samples):
    """The LATENT's tensor, a Wan video latent [B, C, T, h, w] with the channels ``vae`` decodes."""
    latent = samples["samples"]
    if latent.ndim != 5:
        raise WanInputError(f"expected a Wan video latent [B, C, T, h, w], got shape {tuple(latent.shape)} "
                            "(an image model's latent?)")
    if latent.shape[1] != vae.z_dim:
        raise WanInputError(f"latent has {latent.shape[1]} channels but this VAE decodes {vae.z_dim} "
                            f"({'Wan2.2' if vae.z_dim == 48 else 'Wan2.1'} VAE): wrong VAE for this model?")
    return latent


class WanVAEDecode:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "decode"
    DESCRIPTION = "Decodes a Wan video latent to frames; tiling bounds memory for large frames."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": (WANVAE,),
            "samples": ("LATENT",),
            "enable_vae_tiling": ("BOOLEAN", {"default": False}),
            "tile_size": ("INT", {"default": 256, "min": TILE_SIZE[0], "max": TILE_SIZE[1], "step": 32,
                                  "tooltip": "Tile side in pixels."}),
            "tile_overlap": ("INT", {"default": 64, "min": TILE_OVERLAP[0], "max": TILE_OVERLAP[1], "step": 16,
                                     "tooltip": "Pixels shared by neighbouring tiles (blended)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, tile_size=None, tile_overlap=None):
        return validate(tile_rule, tile_size=tile_size, tile_overlap=tile_overlap)

    def decode(self, vae, samples, enable_vae_tiling, tile_size, tile_overlap):
        import torch

        from ..wan.job.pipelines import decode_frames

        check_received(tile_rule, tile_size=tile_size, tile_overlap=tile_overlap)
        latent = check_latent(vae, samples)
        tile = (tile_size, tile_overlap) if enable_vae_tiling else None
        with on_device(vae, main_device()), cancellable():
            frames = [decode_frames(vae, latent[i:i + 1], tile=tile) for i in range(latent.shape[0])]
        return (torch.cat(frames, dim=0),)


class WanVAEEncode:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("samples",)
    FUNCTION = "encode"
    DESCRIPTION = "Encodes frames (1 + 4k of them, sides a multiple of 8 or 16) to a Wan latent, e.g. for video-to-video."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (WANVAE,), "image": ("IMAGE",)}}

    def encode(self, vae, image):
        from ..wan.job.conditioning import as_images, vae_encode

        with on_device(vae, main_device()), cancellable():
            latent = vae_encode(vae, as_images(image, "image"))
        return ({"samples": latent.cpu()},)


NODE_CLASS_MAPPINGS = {"WanVAEDecode": WanVAEDecode, "WanVAEEncode": WanVAEEncode}
NODE_DISPLAY_NAME_MAPPINGS = {"WanVAEDecode": "Wan VAE Decode", "WanVAEEncode": "Wan VAE Encode"}
