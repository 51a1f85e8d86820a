"""A whole Animate run (sample_video: CFG with the blank-face negative, face tokens memoized for the
run) on a block-swapped DiT gives the unswapped run's latent bit for bit (block swap simulated on
the CPU: swapped blocks cloned in before their forward and dropped after, see test_blockswap)."""

import pytest
import torch
from dit_fixtures import random_weights

from test_sample_animate import CFG, setup  # noqa: F401 (fixture: tiny Animate DiT, conditioning, prompts)
from wan.job.options import SamplingOptions
from wan.job.sample import sample_video
from wan.models.dit.model import WanDiT
from wan.runtime.blockswap import enable_block_swap

torch.set_num_threads(2)


@pytest.mark.parametrize("batch_cfg,prefetch", [(False, True)])
def test_swapped_run_equals_the_plain_run(setup, batch_cfg, prefetch):  # noqa: F811
    dit, cond, text = setup
    s = SamplingOptions(steps=2, cfg=3.0, shift=5.0, seed=4, sampler="euler", batch_cfg=batch_cfg)
    plain = sample_video(dit, text, cond, s)
    swapped_dit = WanDiT(CFG)
    swapped_dit.load_state_dict(random_weights(CFG), strict=True)
    swapped_dit.eval().requires_grad_(False)
    swapper = enable_block_swap(swapped_dit, CFG.num_layers, "cpu", "cpu", prefetch=prefetch,
                                offload_embeddings=True, simulate=True)
    out = sample_video(swapped_dit, text, cond, s)
    forwards = 2 * (1 if batch_cfg else 2)  # steps x (one batched or two separate CFG passes)
    assert swapper.loads == forwards * (CFG.num_layers + 2)  # every block + text and image embeddings
    assert swapper.resident_blocks() == []
    assert torch.equal(out, plain)
