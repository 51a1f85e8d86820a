"""Step caching through the real sampling pipeline (wan.job.sample.sample_video, UniPC, CFG)
on a tiny random DiT: off (threshold 0) is bit-identical to no cache; on, the number of skipped
calls it reports (in the log) equals the block-stack runs that did not happen (counted by hooks on
the patch embedding and block 0), and the latent stays within a stated relative L2 error of the
uncached one. The steps it always computes are those the sampler's Step index names, in a
video-to-video run too."""

import logging
import re

import pytest
import torch

from dit_fixtures import random_weights
from wan.job.conditioning import PromptEmbeds, VideoConditioning
from wan.models.dit.config import DIT_PRESETS
from wan.errors import WanInputError
from wan.models.dit.model import WanDiT
from wan.job.options import RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.runtime.cache import CacheArgs

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


def _sample(m, text, cond, batch_cfg=True, cache=None, steps=STEPS, denoise=1.0, latents=None):
    sampling = SamplingOptions(steps=steps, cfg=5.0, seed=1, sampler="unipc", batch_cfg=batch_cfg, denoise=denoise)
    return sample_video(m, text, cond, sampling, RunOptions(cache=cache), latents=latents)


def _reported(caplog) -> tuple[int, int]:
    """(skipped, total) from the line sample_video logs for the cache."""
    found = [re.search(r"step cache skipped (\d+) of (\d+) model calls", r.getMessage()) for r in caplog.records]
    found = [f for f in found if f]
    assert len(found) == 1, caplog.text
    return int(found[0][1]), int(found[0][2])


def _counting(m):
    """Hooks counting DiT forwards (the text embedding runs once in each) and block-stack runs."""
    calls, runs = [], []
    hooks = [m.text_embedding.register_forward_hook(lambda *a: calls.append(1)),
             m.blocks[0].register_forward_hook(lambda *a: runs.append(1))]
    return calls, runs, hooks


def test_cache_off_is_identical(setup, caplog):
    m, text, cond = setup
    ref = _ref(m, text, cond)
    before = dict(vars(m))
    with caplog.at_level(logging.INFO, logger="wan.job.sample"):
        out = _sample(m, text, cond, cache=CacheArgs(threshold=0.0))
    assert torch.equal(out, ref) and _reported(caplog) == (0, STEPS)
    assert vars(m) == before  # nothing installed on the model


@pytest.mark.parametrize("signal,threshold,batch_cfg", [("e0", 1.0, True), ("modulated", 0.4, False)])
def test_cache_skips_reported_steps_within_error(setup, caplog, signal, threshold, batch_cfg):
    m, text, cond = setup
    ref = _ref(m, text, cond, batch_cfg)
    calls, runs, hooks = _counting(m)
    try:
        with caplog.at_level(logging.INFO, logger="wan.job.sample"):
            out = _sample(m, text, cond, batch_cfg, cache=CacheArgs(threshold=threshold, input=signal))
    finally:
        for h in hooks:
            h.remove()
    skipped, total = _reported(caplog)
    assert total == len(calls) == STEPS * (1 if batch_cfg else 2) and skipped > 0
    assert len(runs) == total - skipped
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel <= MAX_REL_ERR, f"skipped {skipped} of {total}: relative error {rel:.4f}"


def test_cache_computes_the_steps_outside_start_and_end_of_a_video_to_video_run(setup):
    # 10 steps at denoise 0.6 run 6 steps, indexed 0..5 by the sampler; a threshold no change
    # reaches lets the cache skip every step from start_step to end_step, and only those
    m, text, cond = setup
    latents = torch.randn(cond.latent_shape(), generator=torch.Generator().manual_seed(2))
    per_step = []
    h = m.blocks[0].register_forward_hook(lambda *a: per_step.append(1))
    marks = []
    p = m.text_embedding.register_forward_hook(lambda *a: marks.append(len(per_step)))
    try:
        _sample(m, text, cond, cache=CacheArgs(threshold=1e9, start_step=2, end_step=3), steps=10, denoise=0.6,
                latents=latents)
    finally:
        h.remove()
        p.remove()
    marks.append(len(per_step))
    computed = [i for i in range(len(marks) - 1) if marks[i + 1] > marks[i]]
    assert len(marks) - 1 == 6 and computed == [0, 1, 4, 5]


def test_cache_args_validation():
    with pytest.raises(WanInputError, match="input"):
        CacheArgs(input="x")
    with pytest.raises(WanInputError, match="threshold"):
        CacheArgs(threshold=-1)
