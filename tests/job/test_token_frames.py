"""The memory plan's token count for families that put latent frames beside the video (Phantom's
subject frames, HuMo's reference frame): ``token_frames`` of the conditioning, through the plan's
``tokens``, equals the tokens the DiT's ``embed`` really builds (counted on the state it returns)."""

from __future__ import annotations

import torch

from wan.job.conditioning import t2v_conditioning
from wan.job.conditioning_humo import HumoInputs
from wan.job.dit_conds import token_frames
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.runtime.plan_sizes import tokens

W, H, FRAMES = 48, 32, 9


def _embedded_tokens(cfg, image, **inputs) -> int:
    torch.manual_seed(0)
    dit = WanDiT(cfg).eval()
    x = torch.randn(image.latent_shape())
    with torch.no_grad():
        state = dit.embed(x, torch.tensor([500.0]), torch.randn(1, 7, cfg.text_dim), **inputs)
    return state.x.shape[1]


def test_phantom_subject_frames_are_counted():
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(dim=64, ffn_dim=128, text_dim=32, num_layers=1)
    plain = t2v_conditioning(W, H, FRAMES, 16)
    b, c, f, h, w = plain.latent_shape()
    subject = torch.randn(1, c, 2, h, w)
    image = plain.replace(subject=subject, subject_cfg=5.0)
    assert tokens(cfg, token_frames(image)) == _embedded_tokens(cfg, image, subject=subject)
    assert token_frames(image)[2] == f + 2
    assert token_frames(plain) == plain.latent_shape()


def test_humo_reference_frame_is_counted():
    cfg = DIT_PRESETS["humo_1_7b"].tiny(dim=64, ffn_dim=128, text_dim=32, num_layers=1)
    plain = t2v_conditioning(W, H, FRAMES, 16)
    b, c, f, h, w = plain.latent_shape()
    reference = torch.randn(1, c, 1, h, w)
    image = plain.replace(humo=HumoInputs(None, reference, torch.zeros_like(reference)))
    assert tokens(cfg, token_frames(image)) == _embedded_tokens(cfg, image, reference_latent=reference)
