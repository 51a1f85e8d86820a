"""sdpa_edge_steps: with an 8-bit attention kernel (a fake one behind the real guard, computing SDPA
times 1.5 so that its use shows), the first and last n steps of a run compute with SDPA (equal to
the same model with attention "sdpa") and the steps between with the kernel (equal to the model
without the option); the kernels are the model's own again after the run. A model on SDPA, or n 0,
is left alone. Through sample_video, the fake kernel runs in the middle steps only."""

import pytest
import torch

from dit_fixtures import make_inputs, random_weights, tiny_config
from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds, VideoConditioning
from wan.job.options import RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.models.dit.attention import sdpa_whole
from wan.models.dit.attention_guard import GuardedKernel
from wan.models.dit.model import WanDiT
from wan.runtime.cancel import in_query_chunks
from wan.runtime.edge_steps import use_sdpa_edges
from wan.sampling.step import Step

CFG = tiny_config("t2v_1_3b")
INP = make_inputs(CFG, frames=2, height=4, width=4)


class Fake8Bit:
    def __init__(self):
        self.calls = 0

    def __call__(self, q, k, v):
        self.calls += 1
        return sdpa_whole(q, k, v) * 1.5


def _model(mode="int8"):
    m = WanDiT(CFG)
    m.load_state_dict(random_weights(CFG))
    m.eval().requires_grad_(False).set_attention("sdpa")
    fake = Fake8Bit()
    if mode != "sdpa":
        kernel = in_query_chunks(GuardedKernel(mode, fake, lambda q, k, v: None))
        for module in m.modules():
            if hasattr(module, "kernel"):
                module.kernel = kernel
    return m, fake


def _step(i, total=4):
    return Step(i, total, torch.tensor(0.5), torch.tensor(500.0))


def _call(model, step, wrap=lambda f: f):
    with torch.no_grad():
        return wrap(lambda s, x, t, c: model(x, t, c))(step, INP.x, INP.t, INP.context)


@pytest.mark.parametrize("mode", ["int8", "sage"])
def test_edges_run_sdpa_and_the_middle_the_kernel(mode):
    model, fake = _model(mode)
    plain, _ = _model("sdpa")
    kernels = {m: m.kernel for m in model.modules() if hasattr(m, "kernel")}
    with_kernel, with_sdpa = _call(model, _step(0)), _call(plain, _step(0))
    assert not torch.equal(with_kernel, with_sdpa)
    with use_sdpa_edges(model, 1) as wrap:
        for i, expected in ((0, with_sdpa), (1, with_kernel), (2, with_kernel), (3, with_sdpa)):
            before = fake.calls
            assert torch.equal(_call(model, _step(i), wrap), expected), i
            assert (fake.calls > before) == (i in (1, 2)), i
    assert all(m.kernel is k for m, k in kernels.items())


def test_two_edge_steps_of_six():
    model, fake = _model()
    with use_sdpa_edges(model, 2) as wrap:
        used = []
        for i in range(6):
            before = fake.calls
            _call(model, _step(i, 6), wrap)
            used.append(fake.calls > before)
    assert used == [False, False, True, True, False, False]


@pytest.mark.parametrize("mode, n", [("sdpa", 1), ("int8", 0)])
def test_nothing_changes(mode, n):
    model, fake = _model(mode)
    kernels = {m: m.kernel for m in model.modules() if hasattr(m, "kernel")}
    with use_sdpa_edges(model, n) as wrap:
        assert all(m.kernel is k for m, k in kernels.items())
        _call(model, _step(0), wrap)
    assert (fake.calls > 0) == (mode == "int8")  # an int8 model kept its kernel at step 0 with n = 0


def test_through_sample_video():
    model, fake = _model()
    g = torch.Generator().manual_seed(3)
    text = PromptEmbeds(torch.randn(1, 8, 4096, generator=g), torch.randn(1, 8, 4096, generator=g))
    cond = VideoConditioning(width=32, height=32, num_frames=1)
    sampling = SamplingOptions(steps=4, cfg=5.0, seed=1, sampler="euler")
    sample_video(model, text, cond, sampling, RunOptions())
    per_run = fake.calls
    fake.calls = 0
    sample_video(model, text, cond, sampling, RunOptions(sdpa_edge_steps=1))
    assert per_run > 0 and fake.calls * 2 == per_run  # 2 of the 4 steps


def test_bad_count_is_refused():
    with pytest.raises(WanInputError, match="sdpa_edge_steps must be a whole number >= 0"):
        RunOptions(sdpa_edge_steps=-1)
