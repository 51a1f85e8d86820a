"""The Wan2.2 expert switch at a step index, the renumbered Steps of a split run, and the validation
of every expert and per-step option at SamplingOptions construction (before any model work)."""

import pytest
import torch

from wan.errors import WanInputError
from wan.job.options import SamplingOptions
from wan.sampling.experts import make_expert_switch, offset_steps, switch_index
from wan.sampling.schedules import get_sigmas
from wan.sampling.step import Step


def steps_of(n):
    sigmas = torch.linspace(1, 0, n + 1)
    return [Step(i, n, sigmas[i], sigmas[i] * 1000) for i in range(n)]


@pytest.mark.parametrize("steps,split", [(4, 2), (4, 1), (4, 3), (20, 10)])
def test_switch_at_a_step_runs_high_then_low(steps, split):
    picked = []
    switch = make_expert_switch(lambda x, s: picked.append("high") or x, lambda x, s: picked.append("low") or x,
                                switch_step=split)
    for step in steps_of(steps):
        switch(torch.zeros(1), step)
    assert picked == ["high"] * split + ["low"] * (steps - split)


def test_switch_needs_exactly_one_rule():
    with pytest.raises(WanInputError):
        make_expert_switch(lambda x, s: x, lambda x, s: x)
    with pytest.raises(WanInputError):
        make_expert_switch(lambda x, s: x, lambda x, s: x, boundary=0.9, switch_step=2)


def test_switch_index_counts_the_steps_at_or_above_the_boundary():
    sigmas = get_sigmas(20, 5.0)
    n = switch_index(sigmas, 0.9)
    assert all(float(s) >= 0.9 for s in sigmas[:n]) and float(sigmas[n]) < 0.9


def test_offset_steps_numbers_the_steps_as_in_the_whole_run():
    seen = []
    low = offset_steps(lambda x, s: seen.append((s.index, s.total)) or x, 2, 4)
    for step in steps_of(2):
        low(torch.zeros(1), step)
    assert seen == [(2, 4), (3, 4)]


def test_valid_options_are_accepted():
    s = SamplingOptions(steps=4, cfg=1.0, switch_step=2, cfg_per_step=[2, 1, 1, 1], shift_low=8.0,
                        sampler_low="euler")
    assert s.cfg_per_step == (2.0, 1.0, 1.0, 1.0) and s.split_sampling
    assert [s.cfg_of(i, low=i >= 2) for i in range(4)] == [2.0, 1.0, 1.0, 1.0]
    assert SamplingOptions(steps=4, cfg=3.5, cfg_low=1.0).cfg_of(3, low=True) == 1.0
    # denoise 0.5 of 8 steps is a 4-step run: the switch and the cfg list count those 4 steps
    SamplingOptions(steps=8, denoise=0.5, switch_step=3, cfg_per_step=(1, 1, 1, 1))


@pytest.mark.parametrize("kw,words", [
    (dict(steps=4, switch_step=0), "1..3"),
    (dict(steps=4, switch_step=4), "1..3"),
    (dict(steps=4, switch_step=-1), "1..3"),
    (dict(steps=4, switch_step=2.0), "1..3"),
    (dict(steps=1, switch_step=1), "1..0"),
    (dict(steps=4, switch_step=2, boundary=0.9), "not both"),
    (dict(steps=4, boundary=0.0), "(0, 1)"),
    (dict(steps=4, boundary=1.0), "(0, 1)"),
    (dict(steps=4, boundary=1.5), "(0, 1)"),
    (dict(steps=4, cfg_per_step=(2, 1, 1)), "3 values for a run of 4 steps"),
    (dict(steps=8, denoise=0.5, cfg_per_step=(1,) * 8), "8 values for a run of 4 steps"),
    (dict(steps=4, cfg_per_step=(2, 1, 1, 1), cfg_low=1.0), "not both"),
    (dict(steps=4, sampler_low="nope"), "sampler_low"),
    (dict(steps=4, shift_low=0.0), "shift_low"),
])
def test_bad_expert_options_are_refused_at_construction(kw, words):
    with pytest.raises(WanInputError) as err:
        SamplingOptions(**kw)
    assert words in str(err.value)
