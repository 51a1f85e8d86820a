"""A whole job meets NaN: a NaN start latent or image is refused naming the input; an expert whose
weights went NaN stops the run at the first step it takes, naming that step and the expert."""

import pytest
import torch
from dit_fixtures import our_model, random_weights, tiny_config

from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds, i2v_conditioning, t2v_conditioning, vace_conditioning
from wan.job.options import SamplingOptions
from wan.job.sample import sample_video
from wan.sampling.loop import NonFiniteStep

W, H, FRAMES = 32, 32, 5


@pytest.fixture(scope="module")
def tiny():
    cfg = tiny_config("t2v_1_3b")
    dit = our_model(cfg, random_weights(cfg, seed=4))
    broken = our_model(cfg, random_weights(cfg, seed=5))
    with torch.no_grad():
        broken.head.head.weight.fill_(float("nan"))
    context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(3))
    return dit, broken, PromptEmbeds(context, None)


def test_nan_start_latent(tiny):
    dit, _, text = tiny
    cond = t2v_conditioning(W, H, FRAMES, 16)
    latents = torch.zeros(cond.latent_shape())
    latents[0, 3, 1, 2, 2] = float("nan")
    with pytest.raises(WanInputError, match=r"the start latent \(samples\) contains NaN"):
        sample_video(dit, text, cond, SamplingOptions(steps=2, cfg=1.0, denoise=0.5), latents=latents)


def test_broken_low_noise_expert_stops_at_its_first_step(tiny):
    dit, broken, text = tiny
    cond = t2v_conditioning(W, H, FRAMES, 16)
    sampling = SamplingOptions(steps=4, cfg=1.0, switch_step=2, sampler="euler")
    with pytest.raises(NonFiniteStep, match=r"^step 3 of 4 produced NaN values \(low-noise expert\)"):
        sample_video(dit, text, cond, sampling, dit_low=broken)
    with pytest.raises(NonFiniteStep, match=r"^step 1 of 4 produced NaN values: stopped"):
        sample_video(broken, text, cond, SamplingOptions(steps=4, cfg=1.0))
    sample_video(dit, text, cond, sampling, dit_low=dit)  # the same run with sound experts goes through


class NoVAE:
    z_dim = 16

    def encode(self, x):  # never reached: the images are refused first
        raise AssertionError("encoded a NaN image")


def test_nan_images_refused_by_name():
    image = torch.rand(1, H, W, 3)
    image[0, 1, 1, 0] = float("nan")
    with pytest.raises(WanInputError, match=r"^start_image contains NaN"):
        i2v_conditioning(NoVAE(), None, image, W, H, FRAMES)
    with pytest.raises(WanInputError, match=r"^end_image contains NaN"):
        i2v_conditioning(NoVAE(), None, None, W, H, FRAMES, end_image=image)
    with pytest.raises(WanInputError, match=r"^control_video contains NaN"):
        vace_conditioning(NoVAE(), W, H, FRAMES, control_video=image)
    with pytest.raises(WanInputError, match=r"^VACE mask contains \+Inf"):
        vace_conditioning(NoVAE(), W, H, FRAMES, mask=torch.full((1, H, W), float("inf")))
