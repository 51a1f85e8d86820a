"""The memory plan's prediction against a measured peak, and the plan applied per job.

Measuring a device peak without a GPU: the tiny DiT runs with block swap in its simulated mode
(the CPU is both devices; a streamed block's "copy to the device" is a clone, dropped after its
forward, exactly the moves made on a GPU), and torch's profiler records every allocation and free
of the CPU allocator during one forward, kernels' own buffers included. The running sum of those
events peaks at what the forward allocates beyond the weights already held: the blocks in flight
plus the activations, which is what the plan predicts beside the weights. The prediction is for
the CPU's kernels here (``fused_norms=False``: torch composes RMS norm from fp32 steps on the CPU).

Tolerance: within 5% of the measured figure (the four cases here agree within 2%). The same
comparison with a wrong activation term (norms counted as fused, or the CFG batch forgotten) falls
outside it, so the test can fail.
"""

import functools
import logging

import pytest
import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

from dit_fixtures import random_weights
import wan.job.memory as memory
from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds, t2v_conditioning
from wan.job.load import build_dit
from wan.job.options import LoadOptions, RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.runtime import blockswap
from wan.runtime.blockswap import BlockSwapArgs, enable_block_swap
from wan.runtime.plan import peak_bytes
from wan.runtime.plan_sizes import dit_activation_bytes, weight_sizes

TOLERANCE = 0.05


def _allocation_peak(prof) -> int:
    events = []

    def walk(nodes):
        for n in nodes:
            if n.tag == _EventType.Allocation and str(n.extra_fields.device) == "cpu":
                events.append((n.start_time_ns, n.extra_fields.alloc_size))
            walk(n.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    now = peak = 0
    for _t, size in sorted(events):
        now += size
        peak = max(peak, now)
    return peak


def _measure(variant, dtype, shape, streamed, prefetch):
    """(measured peak beyond the held weights, the model, its weight sizes) of one forward."""
    torch.manual_seed(0)
    cfg = DIT_PRESETS[variant].tiny(num_layers=4)
    model = WanDiT(cfg)
    model.load_state_dict(random_weights(cfg))
    model = model.to(dtype).eval().requires_grad_(False)
    enable_block_swap(model, streamed, "cpu", "cpu", prefetch=prefetch, simulate=True)
    batch = shape[0]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof, torch.no_grad():
        x = torch.randn(shape)
        t = torch.full((batch,), 500.0)
        context = torch.randn(batch, 20, cfg.text_dim).to(dtype)
        out = model(x, t, context)
        del x, t, context, out
    return _allocation_peak(prof), cfg, weight_sizes(model, dtype.itemsize)


CASES = [  # (variant, dtype, latent [B, C, F, h, w], streamed of 4, prefetch)
    ("t2v_1_3b", torch.bfloat16, (2, 16, 5, 40, 48), 2, True),
    ("t2v_1_3b", torch.float32, (2, 16, 5, 40, 48), 2, True),
    ("t2v_14b", torch.bfloat16, (1, 16, 3, 48, 64), 3, False),
    ("ti2v_5b", torch.bfloat16, (2, 48, 4, 32, 32), 0, True),
]


@pytest.mark.parametrize("variant,dtype,shape,streamed,prefetch", CASES)
def test_predicted_peak_matches_the_measured_one(variant, dtype, shape, streamed, prefetch):
    torch.set_num_threads(2)
    measured, cfg, weights = _measure(variant, dtype, shape, streamed, prefetch)
    held = weights.other + sum(weights.blocks[:len(weights.blocks) - streamed])

    def predicted(**wrong):
        kw = dict(batch=shape[0], fused_norms=False) | wrong
        act = dit_activation_bytes(cfg, shape, kw["batch"], dtype, fused_norms=kw["fused_norms"])
        return peak_bytes([weights], streamed, act, prefetch) - held

    print(f"{variant} {dtype} {shape} streamed {streamed}: predicted {predicted()} measured {measured} "
          f"({predicted() / measured - 1:+.1%})")
    assert predicted() == pytest.approx(measured, rel=TOLERANCE)
    # a wrong activation term is caught at this tolerance
    if dtype == torch.bfloat16:
        assert predicted(fused_norms=True) != pytest.approx(measured, rel=TOLERANCE)
    if shape[0] == 2:
        assert predicted(batch=1) != pytest.approx(measured, rel=TOLERANCE)


# -- the plan applied per job by sample_video ------------------------------------------------------

@pytest.fixture
def auto_model(monkeypatch):
    # the CPU is both devices: block swap runs in its simulated mode, as on a GPU
    monkeypatch.setattr(memory, "enable_block_swap", functools.partial(enable_block_swap, simulate=True))
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=4)
    model = build_dit(random_weights(cfg), LoadOptions(dtype=torch.float32, device="cpu"))
    context = torch.randn(1, 20, cfg.text_dim, generator=torch.Generator().manual_seed(3))
    return model, PromptEmbeds(context, context.clone())


def _streamed(model) -> int:
    swapper = getattr(model, "_wan_block_swapper", None)
    return 0 if swapper is None or not swapper.active else len(swapper.blocks)


def _job(model, text, budget, width=64, height=64, frames=5, cfg=2.0):
    return sample_video(model, text, t2v_conditioning(width, height, frames, 16),
                        SamplingOptions(steps=1, cfg=cfg), RunOptions(memory_budget=budget))


def _budget_for(model, streamed, width=64, height=64, frames=5, batch=2):
    """The smallest budget where ``streamed`` blocks fit, computed from the sizes independently of
    the planner's search."""
    w = weight_sizes(model, 4)
    shape = (1, 16, 1 + (frames - 1) // 4, height // 8, width // 8)
    act = memory.SAMPLING_LATENTS * memory.nbytes(shape) + dit_activation_bytes(
        model.cfg, shape, batch, torch.float32, fused_norms=False)
    return w.other + sum(w.blocks[:4 - streamed]) + (2 if streamed > 1 else streamed) * max(w.blocks) + act


def test_auto_is_the_default_and_plans_each_job(auto_model, caplog):
    model, text = auto_model
    assert LoadOptions().block_swap == BlockSwapArgs("auto")
    assert model._wan_auto_swap.args.auto and _streamed(model) == 0  # the CPU: placed whole
    plain = _job(model, text, None)  # on the CPU without a budget: no plan, no log line
    assert _streamed(model) == 0 and "memory plan" not in caplog.text

    # with prefetch two streamed blocks are in flight, so streaming 1 or 2 saves nothing: 3 is the
    # first count that holds less than all 4 resident
    assert _budget_for(model, 3) < _budget_for(model, 2) == _budget_for(model, 0)
    with caplog.at_level(logging.INFO, logger="wan.job.memory"):
        out = _job(model, text, _budget_for(model, 3))
    assert _streamed(model) == 3
    assert "Wan memory plan: 1 resident + 3 streamed blocks" in caplog.text
    assert torch.equal(out, plain)  # streaming changes where weights live, not the numbers

    _job(model, text, 10**12)  # plenty: every block resident again
    assert _streamed(model) == 0
    _job(model, text, _budget_for(model, 4))
    assert _streamed(model) == 4
    # a bigger size in the same budget streams more
    _job(model, text, _budget_for(model, 3))
    assert _streamed(model) == 3
    _job(model, text, _budget_for(model, 3), width=80)
    assert _streamed(model) == 4


def test_a_budget_too_small_is_refused_before_any_work(auto_model, monkeypatch):
    model, text = auto_model
    calls = []
    model.blocks[0].register_forward_pre_hook(lambda *a: calls.append(1))
    monkeypatch.setattr("wan.job.sample.randn_like_cpu", lambda *a, **k: pytest.fail("allocated the noise"))
    least = _budget_for(model, 4)
    with pytest.raises(WanInputError) as info:
        _job(model, text, least - 1)
    message = str(info.value)
    assert message.startswith("width 64, height 64, num_frames 5 needs at least ")
    assert "lower the size or frame count" in message and "quantization" in message
    assert not calls


def test_a_manual_number_wins(monkeypatch):
    monkeypatch.setattr(blockswap, "enable_block_swap", functools.partial(enable_block_swap, simulate=True))
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=4)
    model = build_dit(random_weights(cfg), LoadOptions(dtype=torch.float32, device="cpu",
                                                       block_swap=BlockSwapArgs(3)))
    enable_block_swap(model, 3, "cpu", "cpu", simulate=True)
    text = PromptEmbeds(torch.randn(1, 20, cfg.text_dim), None)
    sample_video(model, text, t2v_conditioning(64, 64, 5, 16), SamplingOptions(steps=1, cfg=1.0),
                 RunOptions(memory_budget=10**12))
    assert _streamed(model) == 3


def test_block_swap_args_take_auto_or_a_number():
    assert BlockSwapArgs().auto and BlockSwapArgs(0).blocks_to_swap == 0
    for bad in (-1, "some", 2.5, True):
        with pytest.raises(WanInputError, match="blocks_to_swap"):
            BlockSwapArgs(bad)
    with pytest.raises(WanInputError, match="memory_budget"):
        RunOptions(memory_budget=0)
