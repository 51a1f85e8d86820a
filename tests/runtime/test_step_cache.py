"""Step caching through the real sampling pipeline (wan.job.sample.sample_video, UniPC, CFG)
on a tiny random DiT: off (threshold 0) is bit-identical to no cache; on, the number of skipped
calls it reports equals the block-stack runs that did not happen (counted by a hook on block 0),
and the latent stays within a stated relative L2 error of the uncached one."""

import pytest
import torch

from dit_fixtures import random_weights
from wan.job.conditioning import PromptEmbeds, VideoConditioning
from wan.models.dit.config import DIT_PRESETS
from wan.errors import WanInputError
from wan.models.dit.model import WanDiT
from wan.job.sample import sample_video
from wan.runtime.cache import CacheArgs, use_step_cache

CFG = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=2)
STEPS = 8
# measured: e0 at threshold 1.0 skips 3 of 8 calls with a relative L2 error of 0.027;
# modulated input at 0.4 (CFG unbatched, two streams) skips 6 of 16 with 0.03
MAX_REL_ERR = 0.06


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(2)
    m = WanDiT(CFG)
    m.load_state_dict(random_weights(CFG))
    m.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(3)
    text = PromptEmbeds(torch.randn(1, 8, 4096, generator=g), torch.randn(1, 8, 4096, generator=g))
    cond = VideoConditioning(width=32, height=32, num_frames=1)
    return m, text, cond


_REFS = {}


def _ref(m, text, cond, batch_cfg=True):
    if batch_cfg not in _REFS:
        _REFS[batch_cfg] = _sample(m, text, cond, batch_cfg)
    return _REFS[batch_cfg]


def _sample(m, text, cond, batch_cfg=True):
    return sample_video(m, text, cond, steps=STEPS, cfg=5.0, seed=1, sampler="unipc", batch_cfg=batch_cfg)


def test_cache_off_is_identical(setup):
    m, text, cond = setup
    ref = _ref(m, text, cond)
    with use_step_cache(m, CacheArgs(threshold=0.0), total_steps=STEPS) as stats:
        out = _sample(m, text, cond)
    assert torch.equal(out, ref) and stats.skipped == 0 and stats.total == STEPS
    assert "forward" not in vars(m)  # uninstalled


@pytest.mark.parametrize("signal,threshold,batch_cfg", [("e0", 1.0, True), ("modulated", 0.4, False)])
def test_cache_skips_reported_steps_within_error(setup, signal, threshold, batch_cfg):
    m, text, cond = setup
    ref = _ref(m, text, cond, batch_cfg)
    runs = []
    h = m.blocks[0].register_forward_hook(lambda *a: runs.append(1))
    try:
        with use_step_cache(m, CacheArgs(threshold=threshold, input=signal), total_steps=STEPS) as stats:
            out = _sample(m, text, cond, batch_cfg)
    finally:
        h.remove()
    calls = STEPS * (1 if batch_cfg else 2)
    assert stats.total == calls and stats.skipped > 0
    assert len(runs) == calls - stats.skipped
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel <= MAX_REL_ERR, f"{stats}: relative error {rel:.4f}"


def test_cache_args_validation():
    with pytest.raises(WanInputError, match="input"):
        CacheArgs(input="x")
    with pytest.raises(WanInputError, match="threshold"):
        CacheArgs(threshold=-1)
