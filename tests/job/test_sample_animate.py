"""sample_video with the tiny Wan Animate DiT and the Animate conditioning: the negative pass sees a
blank face (ComfyUI's WanAnimateToVideo gives its negative ``face * 0 - 1``), batched and separate
CFG passes agree, the face tokens are computed once per run, and what Animate cannot do is refused
before sampling."""

import pytest
import torch
from dit_fixtures import check, random_weights
from vae_fixtures import random_weights as vae_weights

from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds
from wan.job.conditioning_animate import animate_conditioning
from wan.job.options import RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.models.vae.layers import VAEConfig
from wan.models.vae.wan21 import WanVAE
from wan.sampling.context import ContextOptions

torch.set_num_threads(2)
CFG = DIT_PRESETS["wan22_animate_14b"].tiny()


@pytest.fixture(scope="module")
def setup():
    dit = WanDiT(CFG)
    dit.load_state_dict(random_weights(CFG), strict=True)
    vae = WanVAE(VAEConfig(dim=8, z_dim=16, num_res_blocks=2)).eval()
    vae.load_state_dict(vae_weights(vae.state_dict(), seed=41))
    g = torch.Generator().manual_seed(3)
    cond, _ = animate_conditioning(vae, 32, 32, 5, torch.rand(1, 32, 32, 3, generator=g),
                                   torch.rand(5, 32, 32, 3, generator=g), torch.rand(5, 64, 64, 3, generator=g),
                                   clip_fea=torch.randn(1, 257, 1280, generator=g))
    text = PromptEmbeds(torch.randn(1, 8, 4096, generator=g), torch.randn(1, 8, 4096, generator=g))
    return dit.eval().requires_grad_(False), cond, text


def test_negative_sees_a_blank_face_and_batching_agrees(setup, monkeypatch):
    dit, cond, text = setup
    seen, computed = [], []
    forward, tokens = WanDiT.forward, WanDiT._face

    def spy(self, *a, face_pixels=None, **kw):
        seen.append(face_pixels)
        return forward(self, *a, face_pixels=face_pixels, **kw)

    def count(self, faces, frames, batch):
        computed.append(self._face_memo is not None and id(faces) not in self._face_memo)
        return tokens(self, faces, frames, batch)

    monkeypatch.setattr(WanDiT, "forward", spy)
    monkeypatch.setattr(WanDiT, "_face", count)
    s = SamplingOptions(steps=2, cfg=3.0, shift=5.0, seed=4, sampler="euler", batch_cfg=False)
    apart = sample_video(dit, text, cond, s)
    assert torch.equal(seen[0], cond.face_pixels) and bool((seen[1] == -1).all())
    assert sum(computed) == 2  # two face videos (positive, blank), each through the encoders once
    seen.clear()
    together = sample_video(dit, text, cond, SamplingOptions(steps=2, cfg=3.0, shift=5.0, seed=4, sampler="euler"))
    assert seen[0].shape[0] == 2 and bool((seen[0][1] == -1).all())
    check(together, apart)
    assert together.shape == (1, 16, 2, 4, 4)  # the reference frame removed


def test_refused_before_sampling(setup):
    dit, cond, text = setup
    s = SamplingOptions(steps=1, cfg=1.0)
    with pytest.raises(WanInputError, match="context windows"):
        sample_video(dit, text, cond, s, RunOptions(context=ContextOptions(context_length=1, context_overlap=0)))
    i2v = DIT_PRESETS["i2v_14b"].tiny()
    with torch.device("meta"):
        other = WanDiT(i2v)
    with pytest.raises(WanInputError, match="Animate"):
        sample_video(other, text, cond, s)
