"""Loading Wan VAE weights: layout and version detection, diffusers -> official names, validation.

Accepted layouts: the original / ComfyUI one (`encoder.downsamples.N`, `conv1`, `conv2`, possibly
under a prefix such as `first_stage_model.` or `vae.`) and diffusers' AutoencoderKLWan
(`encoder.down_blocks.N`, `quant_conv`, `post_quant_conv`). Version: Wan 2.2 nests its residual
blocks one level deeper (`decoder.upsamples.0.upsamples.0`) and has 48 latent channels.
"""

from __future__ import annotations

import os
import re

import torch

from .layers import VAEConfig
from .wan21 import WanVAE
from .wan22 import WanVAE22
from ..identify import identify
from ...errors import WanFileError
from ...weights.checks import check_tensors, model_dims
from ...weights.names import VAE, find_prefix, strip_prefix

_LATENT_CHANNELS = {WanVAE: 16, WanVAE22: 48}

# diffusers WanResidualBlock member -> index in the official `residual` Sequential.
_RESIDUAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
             "conv_shortcut": "shortcut"}


def _res(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESIDUAL.get(head, head)}.{tail}"


def _count(keys, pattern: str) -> int:
    """Number of distinct values of the single (\\d+) group of `pattern` among keys."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def diffusers_to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an AutoencoderKLWan state dict to official names (same tensors, no copies)."""
    v22 = any(k.startswith("encoder.down_blocks.0.resnets.") for k in sd)
    n = _count(sd, r"decoder\.up_blocks\.0\.resnets\.(\d+)\.") - 1  # num_res_blocks
    rules = [
        (r"(encoder|decoder)\.conv_in\.(.*)", lambda m: f"{m[1]}.conv1.{m[2]}"),
        (r"(encoder|decoder)\.norm_out\.(.*)", lambda m: f"{m[1]}.head.0.{m[2]}"),
        (r"(encoder|decoder)\.conv_out\.(.*)", lambda m: f"{m[1]}.head.2.{m[2]}"),
        (r"quant_conv\.(.*)", lambda m: f"conv1.{m[1]}"),
        (r"post_quant_conv\.(.*)", lambda m: f"conv2.{m[1]}"),
        (r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)",
         lambda m: f"{m[1]}.middle.{2 * int(m[2])}.{_res(m[3])}"),
        (r"(encoder|decoder)\.mid_block\.attentions\.(\d+)\.(.*)",
         lambda m: f"{m[1]}.middle.{2 * int(m[2]) + 1}.{m[3]}"),
    ]
    if v22:
        rules += [
            (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
             lambda m: f"encoder.downsamples.{m[1]}.downsamples.{m[2]}.{_res(m[3])}"),
            (r"encoder\.down_blocks\.(\d+)\.downsampler\.(.*)",
             lambda m: f"encoder.downsamples.{m[1]}.downsamples.{n}.{m[2]}"),
            (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
             lambda m: f"decoder.upsamples.{m[1]}.upsamples.{m[2]}.{_res(m[3])}"),
            (r"decoder\.up_blocks\.(\d+)\.upsampler\.(.*)",
             lambda m: f"decoder.upsamples.{m[1]}.upsamples.{n + 1}.{m[2]}"),
        ]
    else:
        # Wan 2.1: the encoder list is already flat; each decoder level is n+1 blocks + a resample.
        rules += [
            (r"encoder\.down_blocks\.(\d+)\.(.*)", lambda m: f"encoder.downsamples.{m[1]}.{_res(m[2])}"),
            (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
             lambda m: f"decoder.upsamples.{int(m[1]) * (n + 2) + int(m[2])}.{_res(m[3])}"),
            (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)",
             lambda m: f"decoder.upsamples.{int(m[1]) * (n + 2) + n + 1}.{m[2]}"),
        ]
    compiled = [(re.compile(p), f) for p, f in rules]
    out = {}
    for key, t in sd.items():
        for rx, f in compiled:
            if m := rx.fullmatch(key):
                key = f(m)
                break
        out[key] = t
    return out


def vae_spec(state_dict: dict, path: str | os.PathLike | None = None):
    """(class, VAEConfig, state dict under official names) for a VAE state dict; touches no data.

    Works on meta tensors too. Raises WanFileError for non-VAE, incomplete or mis-shaped weights.
    """
    prefix = find_prefix(state_dict, VAE)  # quoted in messages, so they name the file's own tensors
    sd = strip_prefix(state_dict, VAE)
    if "decoder.conv1.weight" not in sd and "decoder.conv_in.weight" not in sd:
        raise WanFileError(path, f"not a Wan VAE: it looks like {identify(state_dict).detail}")
    if "decoder.conv_in.weight" in sd:
        sd = diffusers_to_official(sd)
    cls = WanVAE22 if "decoder.upsamples.0.upsamples.0.residual.0.gamma" in sd else WanVAE
    version = "2.2" if cls is WanVAE22 else "2.1"
    for needed in ("conv2.weight", "encoder.conv1.weight", "decoder.head.0.gamma"):
        if needed not in sd:
            raise WanFileError(path, f"Wan {version} VAE weights are incomplete: {prefix}{needed} is missing "
                               "(a partial file?)")
    # sizes read from the header are bounded before the (meta) model is built from them
    z_dim = model_dims(sd["conv2.weight"], prefix + "conv2.weight", path)[0]
    if z_dim != _LATENT_CHANNELS[cls]:
        raise WanFileError(path, f"Wan {version} VAE must have {_LATENT_CHANNELS[cls]} latent channels, "
                           f"conv2.weight has shape {tuple(sd['conv2.weight'].shape)}")
    dim = model_dims(sd["encoder.conv1.weight"], prefix + "encoder.conv1.weight", path)[0]
    dec_dim = model_dims(sd["decoder.head.0.gamma"], prefix + "decoder.head.0.gamma", path)[0]
    if cls is WanVAE22:
        nrb = _count(sd, r"encoder\.downsamples\.0\.downsamples\.(\d+)\.residual\.")
    else:
        nrb = _count(sd, r"decoder\.upsamples\.(\d+)\.residual\.") // 4 - 1
    cfg = VAEConfig(dim=dim, z_dim=z_dim, num_res_blocks=nrb, dec_dim=None if dec_dim == dim else dec_dim)
    with torch.device("meta"):
        model = cls(cfg)
    check_tensors(model, sd, path, f"Wan {version} VAE (dim {dim}, z_dim {z_dim})", prefix)
    return cls, cfg, sd


def load_vae(state_dict: dict, path: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32,
             device: str | torch.device = "cpu") -> WanVAE | WanVAE22:
    """Build the Wan 2.1 or 2.2 VAE a state dict holds (either layout), on `device` in `dtype`.

    The model is built on the meta device and takes the given tensors with assign=True, so tensors
    already in `dtype` on `device` are used without a copy.
    """
    cls, cfg, sd = vae_spec(state_dict, path)
    with torch.device("meta"):
        model = cls(cfg)
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in sd.items()}, strict=True, assign=True)
    return model.requires_grad_(False).eval()

