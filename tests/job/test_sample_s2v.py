"""sample_video with the tiny Wan S2V DiT: the negative pass hears silence (ComfyUI's
WanSoundImageToVideo gives its negative ``audio_embed * 0``), batched and separate CFG passes agree,
the reference and motion tokens are not part of the output, and what S2V cannot do is refused
before sampling."""

import pytest
import torch
from dit_fixtures import check, random_weights

from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds, VideoConditioning
from wan.job.options import RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.models.dit.s2v import SoundInputs
from wan.sampling.context import ContextOptions

torch.set_num_threads(2)
CFG = DIT_PRESETS["wan22_s2v_14b"].tiny()


@pytest.fixture(scope="module")
def setup():
    dit = WanDiT(CFG)
    dit.load_state_dict(random_weights(CFG), strict=True)
    g = torch.Generator().manual_seed(3)
    sound = SoundInputs(torch.randn(1, 25, 1024, 8, generator=g), torch.randn(1, 16, 1, 8, 8, generator=g),
                        torch.randn(1, 16, 19, 8, 8, generator=g), torch.zeros(1, 16, 2, 8, 8))
    cond = VideoConditioning(64, 64, 5, 16, sound=sound)
    text = PromptEmbeds(torch.randn(1, 8, 4096, generator=g), torch.randn(1, 8, 4096, generator=g))
    return dit.eval().requires_grad_(False), cond, text


def test_negative_hears_silence_and_batching_agrees(setup, monkeypatch):
    dit, cond, text = setup
    seen = []
    forward = WanDiT.forward

    def spy(self, *a, sound=None, **kw):
        seen.append(sound)
        return forward(self, *a, sound=sound, **kw)

    monkeypatch.setattr(WanDiT, "forward", spy)
    s = SamplingOptions(steps=2, cfg=3.0, shift=5.0, seed=4, sampler="euler", batch_cfg=False)
    apart = sample_video(dit, text, cond, s)
    assert torch.equal(seen[0]["audio_embed"], cond.sound.audio_embed)
    assert bool((seen[1]["audio_embed"] == 0).all()) and torch.equal(seen[1]["motion"], cond.sound.motion)
    seen.clear()
    together = sample_video(dit, text, cond, SamplingOptions(steps=2, cfg=3.0, shift=5.0, seed=4, sampler="euler"))
    assert seen[0]["audio_embed"].shape[0] == 2 and bool((seen[0]["audio_embed"][1] == 0).all())
    check(together, apart)
    assert together.shape == (1, 16, 2, 8, 8)
    silent = sample_video(dit, text, cond.replace(sound=cond.sound.silent()), s)
    assert (silent - apart).abs().max() > 1e-4  # the speech reaches the output


def test_refused_before_sampling(setup):
    dit, cond, text = setup
    s = SamplingOptions(steps=1, cfg=1.0)
    with pytest.raises(WanInputError, match="context windows"):
        sample_video(dit, text, cond, s, RunOptions(context=ContextOptions(context_length=1, context_overlap=0)))
    plain = WanDiT(DIT_PRESETS["t2v_1_3b"].tiny()).eval()
    with pytest.raises(WanInputError, match="Wan Sound Embeds"):
        sample_video(plain, text, cond, s)
