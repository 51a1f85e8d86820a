"""sample_video with a HuMo DiT: the positive pass sees the speech and the reference latent, the
negative pass silence and the blank reference (as ComfyUI's WanHuMoImageToVideo gives them), CFG
batched or not gives the same latent, and what HuMo cannot run is refused before sampling."""

import pytest
import torch
from dit_fixtures import check, random_weights
from vae_fixtures import random_weights as vae_weights

from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds
from wan.job.conditioning_humo import humo_conditioning
from wan.job.options import RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.models.vae.layers import VAEConfig
from wan.models.vae.wan21 import WanVAE
from wan.sampling.context import ContextOptions

torch.set_num_threads(2)
CFG = DIT_PRESETS["humo_17b"].tiny()


@pytest.fixture(scope="module")
def setup():
    dit = WanDiT(CFG)
    dit.load_state_dict(random_weights(CFG), strict=True)
    vae = WanVAE(VAEConfig(dim=8, z_dim=16, num_res_blocks=2)).eval()
    vae.load_state_dict(vae_weights(vae.state_dict(), seed=41))
    g = torch.Generator().manual_seed(3)
    audio = {"encoded_audio_all_layers": [torch.randn(1, 1500, 1280, generator=g) for _ in range(33)],
             "audio_samples": 16000}
    cond = humo_conditioning(vae, 32, 32, 5, audio, torch.rand(1, 32, 32, 3, generator=g))
    text = PromptEmbeds(torch.randn(1, 8, 4096, generator=g), torch.randn(1, 8, 4096, generator=g))
    return dit.eval().requires_grad_(False), cond, text


def test_negative_is_silent_with_a_blank_reference(setup, monkeypatch):
    dit, cond, text = setup
    seen = []
    forward = WanDiT.forward

    def spy(self, *a, **kw):
        seen.append((kw.get("audio_embed"), kw.get("reference_latent")))
        return forward(self, *a, **kw)

    monkeypatch.setattr(WanDiT, "forward", spy)
    apart = sample_video(dit, text, cond, SamplingOptions(steps=2, cfg=3.0, shift=5.0, seed=4, sampler="euler",
                                                         batch_cfg=False))
    (pos_audio, pos_ref), (neg_audio, neg_ref) = seen[:2]
    assert torch.equal(pos_audio, cond.humo.audio) and neg_audio is None
    assert torch.equal(pos_ref, cond.humo.reference) and torch.equal(neg_ref, cond.humo.blank_reference)
    assert apart.shape == (1, 16, 2, 4, 4)  # the reference frame is not part of the output
    monkeypatch.setattr(WanDiT, "forward", forward)
    silent = sample_video(dit, text, cond.replace(humo=type(cond.humo)(None, cond.humo.reference,
                                                                        cond.humo.blank_reference)),
                          SamplingOptions(steps=2, cfg=3.0, shift=5.0, seed=4, sampler="euler", batch_cfg=False))
    assert (silent - apart).abs().max() > 1e-4  # the speech reaches the latent


def test_refused_before_sampling(setup):
    dit, cond, text = setup
    s = SamplingOptions(steps=1, cfg=1.0)
    with pytest.raises(WanInputError, match="context windows"):
        sample_video(dit, text, cond, s, RunOptions(context=ContextOptions(context_length=1, context_overlap=0)))
    with torch.device("meta"):
        other = WanDiT(DIT_PRESETS["t2v_1_3b"].tiny())
    with pytest.raises(WanInputError, match="HuMo"):
        sample_video(other, text, cond, s)
