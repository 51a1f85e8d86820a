"""Pipelines against diffusers' WanPipeline / WanImageToVideoPipeline with the same tiny components.

The same seeded weights go into ours and into diffusers' WanTransformer3DModel (by the name map),
AutoencoderKLWan, UMT5EncoderModel + T5 tokenizer (from one sentencepiece model); both start from
the same initial noise (ours drawn from the seed, handed to diffusers as ``latents``) and use the
UniPC flow scheduler as diffusers' Wan pipelines configure it. fp32 on the CPU.

Tolerance: max|ours - diffusers| <= 1e-4 * max|diffusers| on the final latents (measured ~1e-6;
diffusers runs CFG as two forwards, we batch them) and 1e-4 on the decoded frames.
"""

import pytest
import torch
from dit_fixtures import random_weights
from pipeline_fixtures import CFG, FRAMES, NEGATIVE, PROMPT, RTOL, SEED, SHIFT, STEPS, H, W, dit_parts, rel, unipc_scheduler
from pipeline_fixtures import no_ftfy, text_parts, vae_parts  # noqa: F401 (fixtures)
from text_fixtures import model_dir, reference, spiece_bytes  # noqa: F401 (fixtures)

from wan.job.conditioning import encode_prompts, i2v_conditioning, normalize_latent
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.loading import load_dit
from wan.models.vae.loading import load_vae
from wan.models.vae.wan22 import WAN22_MEAN, WAN22_STD
from wan.job.pipelines import (
    I2VPipeline,
    T2IPipeline,
    T2VPipeline,
    TI2VPipeline,
    VACEPipeline,
    decode_frames,
    sample_video,
)
from wan.job.options import SamplingOptions
from wan.sampling.context import ContextOptions
from wan.sampling.noise import make_noise
from wan.sampling.samplers import Cancelled


def _diffusers_frames(dvae, latents):
    """diffusers' own decode of its output latents, as its pipelines do for output_type="np"."""
    mean = torch.tensor(dvae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = 1.0 / torch.tensor(dvae.config.latents_std).view(1, 16, 1, 1, 1)
    with torch.no_grad():
        video = dvae.decode(latents / std + mean, return_dict=False)[0]
    return ((video[0].clamp(-1, 1) + 1) / 2).movedim(0, -1)


def test_t2v_matches_diffusers(text_parts, vae_parts):
    from diffusers import WanPipeline

    hf, te, tok = text_parts
    dvae, vae = vae_parts
    dt, dit = dit_parts("t2v_1_3b")
    pipe = T2VPipeline(dit, te, vae)
    steps_seen = []
    ours = pipe(PROMPT, NEGATIVE, width=W, height=H, num_frames=FRAMES, steps=STEPS, cfg=CFG, shift=SHIFT,
                seed=SEED, output_type="latent", callback=lambda i, n, x0: steps_seen.append((i, n, x0.shape)))
    assert steps_seen == [(i, STEPS, (1, 16, 2, 4, 4)) for i in range(1, STEPS + 1)]

    ref_pipe = WanPipeline(tokenizer=tok, text_encoder=hf, transformer=dt, vae=dvae, scheduler=unipc_scheduler())
    noise = make_noise((1, 16, 2, H // 8, W // 8), SEED)
    ref = ref_pipe(prompt=PROMPT, negative_prompt=NEGATIVE, height=H, width=W, num_frames=FRAMES,
                   num_inference_steps=STEPS, guidance_scale=CFG, latents=noise.clone(), output_type="latent").frames
    err = rel(normalize_latent(ours), ref)
    print(f"T2V latent rel err vs diffusers: {err:.2e}")
    assert err <= RTOL
    assert rel(ours, make_noise(ours.shape, SEED)) > 0.1  # the sampler really moved

    frames = decode_frames(vae, ours)
    ref_frames = _diffusers_frames(dvae, ref)
    assert frames.shape == (FRAMES, H, W, 3) == ref_frames.shape
    assert 0 <= frames.min() and frames.max() <= 1
    assert (frames - ref_frames).abs().max() <= RTOL


def test_i2v_matches_diffusers(text_parts, vae_parts, no_ftfy):
    from diffusers import WanImageToVideoPipeline

    hf, te, tok = text_parts
    dvae, vae = vae_parts
    dt, dit = dit_parts("i2v_14b")
    g = torch.Generator().manual_seed(9)
    image = torch.rand(1, H, W, 3, generator=g)
    clip_fea = torch.randn(1, 257, 1280, generator=g)

    class FakeClip:  # CLIP itself is tested elsewhere; both sides get the same tokens here
        def encode(self, images):
            assert torch.equal(images, image)
            return clip_fea

    cond = i2v_conditioning(vae, FakeClip(), image, W, H, FRAMES)
    assert cond.y.shape == (1, 20, 2, 4, 4) and cond.clip_fea.shape == (1, 257, 1280)
    text = encode_prompts(te, PROMPT, NEGATIVE)
    ours = sample_video(dit, text, cond, SamplingOptions(steps=STEPS, cfg=CFG, shift=SHIFT, seed=SEED, sampler="unipc"))

    ref_pipe = WanImageToVideoPipeline(tokenizer=tok, text_encoder=hf, transformer=dt, vae=dvae,
                                       scheduler=unipc_scheduler(), image_encoder=None, image_processor=None)
    # diffusers refuses image + image_embeds together; its encoder hook returns the same CLIP tokens
    ref_pipe.encode_image = lambda images, device=None: clip_fea
    noise = make_noise((1, 16, 2, H // 8, W // 8), SEED)
    ref = ref_pipe(image=image.movedim(-1, 1), prompt=PROMPT, negative_prompt=NEGATIVE, height=H, width=W,
                   num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=CFG,
                   latents=noise.clone(), output_type="latent").frames
    err = rel(normalize_latent(ours), ref)
    print(f"I2V latent rel err vs diffusers: {err:.2e}")
    assert err <= RTOL

    # the pipeline class gives the same latent from the same inputs
    pipe = I2VPipeline(dit, te, vae, clip_vision=FakeClip())
    again = pipe(PROMPT, NEGATIVE, image=image, width=W, height=H, num_frames=FRAMES, steps=STEPS, cfg=CFG,
                 shift=SHIFT, seed=SEED, output_type="latent")
    assert torch.allclose(again, ours, rtol=0, atol=1e-6)


def test_wan22_a14b_experts_match_diffusers(text_parts, vae_parts):
    """Two experts, each with its own CFG, switched at t = 875 (diffusers' boundary_ratio)."""
    from diffusers import WanPipeline

    hf, te, tok = text_parts
    dvae, vae = vae_parts
    dt_high, high = dit_parts("t2v_1_3b", seed=21)
    dt_low, low = dit_parts("t2v_1_3b", seed=22)
    pipe = T2VPipeline(high, te, vae, dit_low=low)
    ours = pipe(PROMPT, NEGATIVE, width=W, height=H, num_frames=FRAMES, steps=STEPS, cfg=4.0, cfg_low=3.0,
                shift=SHIFT, seed=SEED, output_type="latent")
    ref_pipe = WanPipeline(tokenizer=tok, text_encoder=hf, transformer=dt_high, transformer_2=dt_low, vae=dvae,
                           scheduler=unipc_scheduler(), boundary_ratio=0.875)
    noise = make_noise((1, 16, 2, H // 8, W // 8), SEED)
    ref = ref_pipe(prompt=PROMPT, negative_prompt=NEGATIVE, height=H, width=W, num_frames=FRAMES,
                   num_inference_steps=STEPS, guidance_scale=4.0, guidance_scale_2=3.0, latents=noise.clone(),
                   output_type="latent").frames
    err = rel(normalize_latent(ours), ref)
    print(f"A14B latent rel err vs diffusers: {err:.2e}")
    assert err <= RTOL
    # the low-noise expert really ran: without it the result differs
    alone = T2VPipeline(high, te, vae)(PROMPT, NEGATIVE, width=W, height=H, num_frames=FRAMES, steps=STEPS,
                                       cfg=4.0, shift=SHIFT, seed=SEED, output_type="latent")
    assert rel(alone, ours) > 1e-2


def test_ti2v_matches_diffusers(text_parts, no_ftfy):
    """Wan2.2 TI2V-5B image-to-video: first latent frame replaced, timestep 0 on its tokens."""
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

    hf, te, tok = text_parts
    dvae = AutoencoderKLWan(base_dim=8, decoder_base_dim=16, z_dim=48, num_res_blocks=1, is_residual=True,
                            in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
                            latents_mean=list(WAN22_MEAN), latents_std=list(WAN22_STD)).eval()
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for name, p in dvae.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * r if name.endswith("gamma") else (r / p[0].numel() ** 0.5 if p.ndim > 1 else 0.1 * r))
    vae = load_vae(dvae.state_dict(), dtype=torch.float32)
    dt, dit = dit_parts("ti2v_5b")
    w, h = 64, 32
    image = torch.rand(1, h, w, 3, generator=g)
    ours = TI2VPipeline(dit, te, vae)(PROMPT, NEGATIVE, image=image, width=w, height=h, num_frames=FRAMES,
                                     steps=STEPS, cfg=CFG, shift=SHIFT, seed=SEED, output_type="latent")

    ref_pipe = WanImageToVideoPipeline(tokenizer=tok, text_encoder=hf, transformer=dt, vae=dvae,
                                       scheduler=unipc_scheduler(), image_encoder=None, image_processor=None,
                                       expand_timesteps=True)
    noise = make_noise((1, 48, 2, h // 16, w // 16), SEED)
    ref = ref_pipe(image=image.movedim(-1, 1), prompt=PROMPT, negative_prompt=NEGATIVE, height=h, width=w,
                   num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=CFG, latents=noise.clone(),
                   output_type="latent").frames
    err = rel(normalize_latent(ours), ref)
    print(f"TI2V latent rel err vs diffusers: {err:.2e}")
    assert err <= RTOL


def test_t2i_cancel_and_frames(text_parts, vae_parts):
    _, te, _ = text_parts
    _, vae = vae_parts
    _, dit = dit_parts("t2v_1_3b")
    pipe = T2IPipeline(dit, te, vae)
    img = pipe(PROMPT, width=W, height=H, steps=2, cfg=1.0)
    assert img.shape == (1, H, W, 3) and img.dtype == torch.float32
    calls = []
    with pytest.raises(Cancelled):
        pipe(PROMPT, width=W, height=H, steps=3, cancel=lambda: calls.append(1) or len(calls) > 1)
    assert len(calls) == 2


def test_vace_reference_frame_trimmed_and_zero_strength(text_parts, vae_parts):
    _, te, _ = text_parts
    _, vae = vae_parts
    cfg = DIT_PRESETS["vace_1_3b"].tiny(dim=128, ffn_dim=256, num_layers=2, text_dim=64)
    dit = load_dit(random_weights(cfg, seed=13), dtype=torch.float32)
    pipe = VACEPipeline(dit, te, vae)
    kw = dict(width=W, height=H, num_frames=FRAMES, steps=2, cfg=CFG, shift=SHIFT, seed=SEED, output_type="latent")
    ref_image = torch.rand(1, H, W, 3)
    with_ref = pipe(PROMPT, NEGATIVE, reference_image=ref_image, **kw)
    assert with_ref.shape == (1, 16, 2, H // 8, W // 8)  # the reference latent frame is gone
    # strength 0 adds nothing: the same as sampling without any VACE context
    zero = pipe(PROMPT, NEGATIVE, strength=0.0, **kw)
    plain = T2VPipeline(dit, te, vae)(PROMPT, NEGATIVE, **kw)
    assert rel(zero, plain) <= 1e-6
    assert rel(pipe(PROMPT, NEGATIVE, **kw), plain) > 1e-3


def test_context_windows_cover_a_short_video_unchanged(text_parts, vae_parts):
    _, te, _ = text_parts
    _, vae = vae_parts
    _, dit = dit_parts("t2v_1_3b")
    pipe = T2VPipeline(dit, te, vae)
    kw = dict(width=W, height=H, num_frames=9, steps=2, cfg=CFG, shift=SHIFT, seed=SEED, output_type="latent")
    plain = pipe(PROMPT, NEGATIVE, **kw)
    same = pipe(PROMPT, NEGATIVE, context=ContextOptions(context_length=3, context_overlap=1), **kw)
    assert torch.equal(plain, same)  # 3 latent frames fit one window
    windowed = pipe(PROMPT, NEGATIVE, context=ContextOptions(context_length=2, context_overlap=1), **kw)
    assert windowed.shape == plain.shape and rel(windowed, plain) > 1e-4
