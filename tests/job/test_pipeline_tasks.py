"""The other tasks end to end against diffusers' pipelines: Wan2.2 I2V A14B (two experts switched at
diffusers' boundary_ratio), Wan2.1 FLF2V, VACE with a reference image, and T2I (a one-frame WanPipeline).

Setup and tolerance as test_pipeline.py's T2V test (pipeline_fixtures): the same tiny seeded models on
both sides, the same initial noise handed to diffusers as ``latents``, UniPC flow, fp32 on the CPU,
``output_type="latent"`` on both sides; max|ours - diffusers| <= 1e-4 * max|diffusers|.
CLIP vision is tested on its own (tests/models); here both sides get the same CLIP tokens.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from pipeline_fixtures import CFG, FRAMES, NEGATIVE, PROMPT, RTOL, SEED, SHIFT, STEPS, H, W, dit_parts, rel
from pipeline_fixtures import no_ftfy, text_parts, vae_parts  # noqa: F401 (fixtures)
from pipeline_fixtures import start_noise, unipc_scheduler
from text_fixtures import model_dir, reference, spiece_bytes  # noqa: F401 (fixtures)

from wan.job.conditioning import normalize_latent
from wan.job.pipelines import FLF2VPipeline, I2VPipeline, T2IPipeline, VACEPipeline

LATENT_FRAMES = (FRAMES - 1) // 4 + 1


class FakeClip:
    """CLIP tokens of our own choosing for each image, the same ones diffusers gets."""

    def __init__(self, *pairs):
        self.pairs = pairs  # (image [1, H, W, 3], its tokens [1, N, 1280])

    def encode(self, images):
        return next(tokens for image, tokens in self.pairs if torch.equal(image, images))


def _images(seed, count, width=W, height=H):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, height, width, 3, generator=g) for _ in range(count)]


def test_wan22_i2v_a14b_matches_diffusers(text_parts, vae_parts, no_ftfy):  # noqa: F811
    """Both experts, each with its own CFG; the switch at diffusers' boundary_ratio 0.9 (the I2V
    default). 5 steps at shift 5 give timesteps 999, 952, 882, 769, 556: 882 lies between the T2V
    (875) and I2V (900) boundaries, so the default boundary of an image task is checked too."""
    from diffusers import WanImageToVideoPipeline

    hf, te, tok = text_parts
    dvae, vae = vae_parts
    dt_high, high = dit_parts("wan22_i2v_a14b", seed=23)
    dt_low, low = dit_parts("wan22_i2v_a14b", seed=24)
    (image,) = _images(9, 1)
    steps, shift = 5, 5.0
    kw = dict(image=image, width=W, height=H, num_frames=FRAMES, steps=steps, shift=shift, seed=SEED,
              output_type="latent")
    ours = I2VPipeline(high, te, vae, dit_low=low)(PROMPT, NEGATIVE, cfg=4.0, cfg_low=3.0, **kw)

    ref_pipe = WanImageToVideoPipeline(tokenizer=tok, text_encoder=hf, transformer=dt_high, transformer_2=dt_low,
                                       vae=dvae, scheduler=unipc_scheduler(shift), image_encoder=None,
                                       image_processor=None, boundary_ratio=0.9)
    ref = ref_pipe(image=image.movedim(-1, 1), prompt=PROMPT, negative_prompt=NEGATIVE, height=H, width=W,
                   num_frames=FRAMES, num_inference_steps=steps, guidance_scale=4.0, guidance_scale_2=3.0,
                   latents=start_noise(LATENT_FRAMES), output_type="latent").frames
    err = rel(normalize_latent(ours), ref)
    print(f"Wan2.2 I2V A14B latent rel err vs diffusers: {err:.2e}")
    assert err <= RTOL
    # the step at t = 882 belongs to the low-noise expert: the T2V boundary gives another result
    t2v_boundary = I2VPipeline(high, te, vae, dit_low=low, boundary=0.875)(PROMPT, NEGATIVE, cfg=4.0, cfg_low=3.0,
                                                                           **kw)
    assert rel(t2v_boundary, ours) > 1e-3


def test_flf2v_matches_diffusers(text_parts, vae_parts, no_ftfy):  # noqa: F811
    """Wan2.1 FLF2V: first and last frame in ``y``, 514 CLIP tokens (first, last) through the
    position embedding (diffusers' pos_embed_seq_len)."""
    from diffusers import WanImageToVideoPipeline

    hf, te, tok = text_parts
    dvae, vae = vae_parts
    dt, dit = dit_parts("flf2v_14b", seed=12)
    first, last = _images(10, 2)
    g = torch.Generator().manual_seed(4)
    clip_first, clip_last = torch.randn(1, 257, 1280, generator=g), torch.randn(1, 257, 1280, generator=g)
    clip = FakeClip((first, clip_first), (last, clip_last))
    ours = FLF2VPipeline(dit, te, vae, clip_vision=clip)(
        PROMPT, NEGATIVE, image=first, end_image=last, width=W, height=H, num_frames=FRAMES, steps=STEPS, cfg=CFG,
        shift=SHIFT, seed=SEED, output_type="latent")

    ref_pipe = WanImageToVideoPipeline(tokenizer=tok, text_encoder=hf, transformer=dt, vae=dvae,
                                       scheduler=unipc_scheduler(), image_encoder=None, image_processor=None)

    def encode_image(images, device=None):  # diffusers encodes [image, last_image] as a batch of two
        assert len(images) == 2
        assert torch.equal(images[0], first.movedim(-1, 1)) and torch.equal(images[1], last.movedim(-1, 1))
        return torch.cat([clip_first, clip_last])

    ref_pipe.encode_image = encode_image
    ref = ref_pipe(image=first.movedim(-1, 1), last_image=last.movedim(-1, 1), prompt=PROMPT,
                   negative_prompt=NEGATIVE, height=H, width=W, num_frames=FRAMES, num_inference_steps=STEPS,
                   guidance_scale=CFG, latents=start_noise(LATENT_FRAMES), output_type="latent").frames
    err = rel(normalize_latent(ours), ref)
    print(f"FLF2V latent rel err vs diffusers: {err:.2e}")
    assert err <= RTOL
    # the end image matters: the same run as plain I2V from the first frame differs
    i2v = I2VPipeline(dit, te, vae, clip_vision=FakeClip((first, torch.cat([clip_first, clip_last], dim=1))))(
        PROMPT, NEGATIVE, image=first, width=W, height=H, num_frames=FRAMES, steps=STEPS, cfg=CFG, shift=SHIFT,
        seed=SEED, output_type="latent")
    assert rel(i2v, ours) > 1e-3


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8))


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None]


@pytest.mark.parametrize("control", [False, True], ids=["reference", "reference+control"])
def test_vace_reference_matches_diffusers(text_parts, vae_parts, no_ftfy, control):  # noqa: F811
    """VACE with a reference image (one latent frame in front, removed after sampling; diffusers
    returns it with output_type="latent"), strength 0.8 on both sides; optionally with a control
    video and a binary mask too. diffusers takes PIL images, so both sides get the 8-bit values."""
    from diffusers import WanVACEPipeline

    hf, te, tok = text_parts
    dvae, vae = vae_parts
    dt, dit = dit_parts("vace_1_3b", seed=13, num_layers=4)  # two VACE blocks
    ref_pil = _pil(_images(11, 1)[0])
    inputs, ref_inputs = {}, {}
    if control:
        g = torch.Generator().manual_seed(12)
        video = [_pil(torch.rand(1, H, W, 3, generator=g)) for _ in range(FRAMES)]
        masks = [Image.fromarray(((torch.rand(H, W, generator=g) > 0.5).numpy() * 255).astype(np.uint8))
                 for _ in range(FRAMES)]
        inputs = dict(control_video=torch.cat([_from_pil(v) for v in video]),
                      mask=torch.cat([_from_pil(m) for m in masks]))
        ref_inputs = dict(video=video, mask=masks)
    ours = VACEPipeline(dit, te, vae)(PROMPT, NEGATIVE, reference_image=_from_pil(ref_pil), strength=0.8,
                                      width=W, height=H, num_frames=FRAMES, steps=STEPS, cfg=CFG, shift=SHIFT,
                                      seed=SEED, output_type="latent", **inputs)
    assert ours.shape == (1, 16, LATENT_FRAMES, H // 8, W // 8)

    ref_pipe = WanVACEPipeline(tokenizer=tok, text_encoder=hf, transformer=dt, vae=dvae, scheduler=unipc_scheduler())
    ref = ref_pipe(prompt=PROMPT, negative_prompt=NEGATIVE, reference_images=[ref_pil], conditioning_scale=0.8,
                   height=H, width=W, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=CFG,
                   latents=start_noise(LATENT_FRAMES + 1), output_type="latent", **ref_inputs).frames
    err = rel(normalize_latent(ours), ref[:, :, 1:])
    print(f"VACE ({'reference + control' if control else 'reference'}) latent rel err vs diffusers: {err:.2e}")
    assert err <= RTOL


def test_t2i_matches_diffusers(text_parts, vae_parts):  # noqa: F811
    """Text-to-image: a one-frame WanPipeline, at a non-square size; the decoded image too."""
    from diffusers import WanPipeline

    hf, te, tok = text_parts
    dvae, vae = vae_parts
    dt, dit = dit_parts("t2v_1_3b")
    w, h = 48, 32
    pipe = T2IPipeline(dit, te, vae)
    kw = dict(width=w, height=h, steps=STEPS, cfg=CFG, shift=SHIFT, seed=SEED)
    ours = pipe(PROMPT, NEGATIVE, output_type="latent", **kw)
    assert ours.shape == (1, 16, 1, h // 8, w // 8)

    ref_pipe = WanPipeline(tokenizer=tok, text_encoder=hf, transformer=dt, vae=dvae, scheduler=unipc_scheduler())
    ref_kw = dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=h, width=w, num_frames=1,
                  num_inference_steps=STEPS, guidance_scale=CFG)
    ref = ref_pipe(latents=start_noise(1, w, h), output_type="latent", **ref_kw).frames
    err = rel(normalize_latent(ours), ref)
    print(f"T2I latent rel err vs diffusers: {err:.2e}")
    assert err <= RTOL

    image = pipe(PROMPT, NEGATIVE, **kw)  # frames: [1, H, W, 3] in 0..1
    ref_image = torch.from_numpy(ref_pipe(latents=start_noise(1, w, h), output_type="np", **ref_kw).frames[0])
    assert image.shape == ref_image.shape == (1, h, w, 3)
    assert (image - ref_image).abs().max() <= RTOL
