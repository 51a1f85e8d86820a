"""Shared pieces of the end-to-end pipeline tests against diffusers' Wan pipelines (no tests here).

The same seeded weights go into ours and into diffusers' models: a tiny transformers UMT5 encoder +
T5 tokenizer over one sentencepiece model, AutoencoderKLWan, WanTransformer3DModel /
WanVACETransformer3DModel (by the name map, ``dit_fixtures.diffusers_model``). Both sides start from
the same initial noise (ours drawn from the seed, handed to diffusers as ``latents``) and use the
UniPC flow scheduler as diffusers' Wan pipelines configure it. fp32 on the CPU.

A test module using ``text_parts`` imports ``model_dir``, ``reference`` and ``spiece_bytes`` from
text_fixtures too (pytest finds fixtures by the names in the test module).
"""

from __future__ import annotations

import types

import pytest
import torch
from dit_fixtures import diffusers_model, random_weights
from text_fixtures import tiny_hf

from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.loading import load_dit
from wan.models.text.encoder import TextEncoder
from wan.models.vae.loading import load_vae
from wan.sampling.noise import make_noise

# max|ours - diffusers| <= RTOL * max|diffusers| on the final latents (measured ~1e-6; diffusers runs
# CFG as two forwards, we batch them)
RTOL = 1e-4
W, H, FRAMES, STEPS, CFG, SHIFT, SEED = 32, 32, 5, 3, 5.0, 3.0, 42
PROMPT, NEGATIVE = "a cat walks over the hill, slow motion", "blurry, ugly"


def rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max|ours - ref| / max|ref|."""
    return ((ours.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


@pytest.fixture(scope="module")
def text_parts(spiece_bytes, reference):
    """(transformers UMT5 encoder, our TextEncoder with the same weights, the T5 tokenizer)."""
    torch.set_num_threads(2)
    torch.manual_seed(3)
    hf = tiny_hf(vocab_size=400)
    sd = dict(hf.state_dict())
    sd["spiece_model"] = torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8)
    return hf, TextEncoder.from_state_dict(sd, dtype=torch.float32), reference


@pytest.fixture(scope="module")
def vae_parts():
    """(diffusers' AutoencoderKLWan, our Wan2.1 VAE with its weights)."""
    from diffusers import AutoencoderKLWan

    ref = AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * r if name.endswith("gamma") else (r / p[0].numel() ** 0.5 if p.ndim > 1 else 0.1 * r))
    return ref, load_vae(ref.state_dict(), dtype=torch.float32)


def dit_parts(variant: str, seed: int = 11, num_layers: int = 2):
    """(diffusers' transformer, our WanDiT) of one tiny ``variant`` with the same seeded weights."""
    cfg = DIT_PRESETS[variant].tiny(dim=128, ffn_dim=256, num_layers=num_layers, text_dim=64)
    sd = random_weights(cfg, seed=seed)
    return diffusers_model(cfg, sd), load_dit(sd, dtype=torch.float32)


def unipc_scheduler(shift: float = SHIFT):
    """diffusers' UniPC flow scheduler as its Wan pipelines are configured."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                   num_train_timesteps=1000, flow_shift=shift)


def start_noise(latent_frames: int, width: int = W, height: int = H, channels: int = 16, spatial: int = 8):
    """The initial noise ours draws for SEED, to hand to diffusers as ``latents``."""
    return make_noise((1, channels, latent_frames, height // spatial, width // spatial), SEED)


@pytest.fixture
def no_ftfy(monkeypatch):
    """diffusers' I2V and VACE modules call ftfy even when it is not installed; on ASCII prompts it
    is the identity."""
    import diffusers.pipelines.wan.pipeline_wan_i2v as i2v_module
    import diffusers.pipelines.wan.pipeline_wan_vace as vace_module

    identity = types.SimpleNamespace(fix_text=lambda t: t)
    for module in (i2v_module, vace_module):
        monkeypatch.setattr(module, "ftfy", identity, raising=False)
