"""Context windows against ComfyUI 0.3.75's comfy/context_windows.py.

ComfyUI names the schedules "standard_uniform", "looped_uniform", "standard_static", "batched"; ours
are "uniform_standard", "uniform_looped", "static_standard" (WanVideoWrapper's names) and "batched".
Index lists must be identical; weights and fused outputs agree to 1e-6.
"""

import itertools

import pytest
import torch

from refs import comfy
from wan.errors import WanInputError
from wan.sampling.context import (
    ContextOptions,
    context_weights,
    context_windows,
    make_context_denoiser,
    ordered_halving,
    slice_frames,
)
from wan.sampling.samplers import SAMPLERS, flow_to_x0
from wan.sampling.schedules import get_sigmas, get_timesteps
from wan.sampling.step import Step

COMFY_SCHEDULE = {
    "uniform_standard": "standard_uniform",
    "uniform_looped": "looped_uniform",
    "static_standard": "standard_static",
    "batched": "batched",
}


def comfy_handler(o: ContextOptions, step: int = 0):
    cw = comfy("comfy.context_windows")
    handler = cw.IndexListContextHandler(
        context_schedule=cw.get_matching_context_schedule(COMFY_SCHEDULE[o.schedule]),
        fuse_method=cw.get_matching_fuse_method(o.fuse_method),
        context_length=o.context_length,
        context_overlap=o.context_overlap,
        context_stride=o.context_stride,
        closed_loop=o.closed_loop,
        dim=2,
    )
    handler._step = step
    return cw, handler


GRID = [
    (frames, length, overlap, stride, closed, schedule)
    for schedule in COMFY_SCHEDULE
    for frames, length, overlap in [(21, 8, 2), (21, 21, 4), (13, 5, 1), (31, 9, 3), (17, 6, 0), (8, 9, 2), (50, 16, 4)]
    for stride, closed in ([(1, False), (2, False), (3, True)] if schedule.startswith("uniform") else [(1, False)])
]


@pytest.mark.parametrize("frames,length,overlap,stride,closed,schedule", GRID)
def test_windows_and_weights_equal_comfyui(frames, length, overlap, stride, closed, schedule):
    for fuse in ("pyramid", "flat", "overlap-linear"):
        o = ContextOptions(length, overlap, stride, schedule, fuse, closed)
        for step in (0, 1, 2, 3, 5, 12):
            _, handler = comfy_handler(o, step)
            ref = handler.context_schedule.func(frames, handler, {})
            ours = context_windows(frames, o, step)
            assert ours == ref, (o, step)
            if fuse == "overlap-linear" and overlap == 0:
                continue  # ComfyUI cannot build these (an empty ramp assigned to the whole window)
            cw = comfy("comfy.context_windows")
            for window in ours:
                if fuse == "overlap-linear" and len(window) < overlap:
                    continue  # ComfyUI fails on a batched tail window shorter than the overlap; we clip the ramp
                ref_w = cw.get_context_weights(len(window), frames, window, handler)
                ref_w = torch.as_tensor(ref_w, dtype=torch.float32)
                torch.testing.assert_close(context_weights(window, frames, o), ref_w, atol=1e-6, rtol=0)


def test_ordered_halving_equals_comfyui():
    cw = comfy("comfy.context_windows")
    for step in itertools.chain(range(70), [2**40 + 3, 12345678]):
        assert ordered_halving(step) == cw.ordered_halving(step)


def window_model(calls=None):
    """A fake denoiser whose output for a frame depends on the other frames of its window."""

    def fn(x, sigma, window, cond=None):
        if calls is not None:
            calls.append(list(window))
        return torch.tanh(x) * (1 + float(sigma)) + x.mean(dim=2, keepdim=True) * 0.5

    return fn


def chain(fn):
    """``fn(x, sigma, window)`` as a layer of our denoiser chain, which hands down the Step."""
    return lambda x, step, window: fn(x, step.sigma, window)


def steps_of(steps=8, shift=5.0, denoise=1.0):
    sigmas, timesteps = get_sigmas(steps, shift, denoise), get_timesteps(steps, shift, denoise)
    return sigmas, [Step(i, len(timesteps), sigmas[i], timesteps[i]) for i in range(len(timesteps))]


@pytest.mark.parametrize("schedule,fuse,stride", [
    ("static_standard", "pyramid", 1), ("uniform_standard", "flat", 2), ("uniform_looped", "overlap-linear", 1),
    ("uniform_standard", "overlap-linear", 1), ("batched", "pyramid", 1), ("static_standard", "overlap-linear", 1),
])
def test_fused_output_equals_comfyui_execute(schedule, fuse, stride):
    o = ContextOptions(6, 2, stride, schedule, fuse)
    frames = 15
    sigmas, steps = steps_of(8, 5.0)
    x = torch.randn(1, 4, frames, 3, 2)
    fn = window_model()
    ours_fn = make_context_denoiser(chain(fn), o, frames)
    cw, handler = comfy_handler(o)

    def calc_cond_batch(model, conds, x_in, timestep, model_options):
        window = model_options["transformer_options"]["context_window"].index_list
        return [fn(x_in, timestep, window) for _ in conds]

    for i in (0, 3, 5):
        opts = {"transformer_options": {"sample_sigmas": sigmas}}
        ref = handler.execute(calc_cond_batch, None, [[{}]], x, sigmas[i:i + 1], opts)[0]
        torch.testing.assert_close(ours_fn(x, steps[i]), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("length", [9, 12])
def test_a_window_covering_everything_is_exactly_no_windowing(length):
    x = torch.randn(1, 4, 9, 3, 2)
    _, steps = steps_of()
    fn = window_model()
    plain = fn(x, steps[2].sigma, list(range(9)))
    for schedule in ("uniform_standard", "uniform_looped", "static_standard", "batched"):
        o = ContextOptions(length, 3, 1, schedule, "pyramid")
        assert torch.equal(make_context_denoiser(chain(fn), o, 9)(x, steps[2]), plain)


def test_conditioning_is_sliced_per_window():
    frames = 10
    y = torch.arange(frames, dtype=torch.float32).view(1, 1, frames, 1, 1).expand(1, 20, frames, 2, 2)
    cond = {"y": y, "context": torch.randn(1, 7, 4096), "clip_fea": torch.randn(1, 257, 1280), "n": 3}
    seen = []

    def fn(x, step, window):
        c = slice_frames(cond, window, frames)
        assert c["context"] is cond["context"] and c["clip_fea"] is cond["clip_fea"] and c["n"] == 3
        assert c["y"][0, 0, :, 0, 0].tolist() == [float(i) for i in window]
        seen.append(list(window))
        return x

    o = ContextOptions(4, 1, 1, "static_standard", "flat")
    out = make_context_denoiser(fn, o, frames)(torch.randn(1, 16, frames, 2, 2), steps_of()[1][0])
    assert seen == context_windows(frames, o) and out.shape == (1, 16, frames, 2, 2)


def test_uniform_windows_move_with_the_step_index():
    o = ContextOptions(5, 1, 1, "uniform_standard", "pyramid")
    _, steps = steps_of(10, 3.0, 0.6)
    calls = []
    fn = make_context_denoiser(chain(window_model(calls)), o, 12)
    x = torch.randn(1, 2, 12, 2, 2)
    for step in steps[:3]:
        calls.clear()
        fn(x, step)
        assert calls == context_windows(12, o, step=step.index)
    assert context_windows(12, o, 0) != context_windows(12, o, 1)


def test_windows_follow_the_sampler_steps_of_a_video_to_video_unipc_run():
    # 10 steps at denoise 0.6: the sampler runs 6 steps and the windows move as ComfyUI's do for
    # steps 0..5 of the sigmas it was given
    o = ContextOptions(5, 1, 1, "uniform_standard", "pyramid")
    sigmas, _ = steps_of(10, 3.0, 0.6)
    seen = []

    def record(x, step, window):
        seen.append((step.index, list(window)))
        return torch.zeros_like(x)

    x = torch.randn(1, 2, 12, 2, 2)
    SAMPLERS["unipc"](flow_to_x0(make_context_denoiser(record, o, 12)), x, sigmas, get_timesteps(10, 3.0, 0.6))
    expected = [(i, w) for i in range(6) for w in context_windows(12, o, step=i)]
    assert seen == expected
    assert len({tuple(map(tuple, context_windows(12, o, step=i))) for i in range(6)}) > 1  # they do move


def test_pixel_frame_conversion_follows_comfyui_wan_node():
    o = ContextOptions.from_pixel_frames(81, 30)
    assert (o.context_length, o.context_overlap) == (21, 8)  # (81-1)//4+1, (30-1)//4+1
    assert ContextOptions.from_pixel_frames(33, 0).context_overlap == 0


@pytest.mark.parametrize("kwargs", [dict(context_length=0), dict(context_length=4, context_overlap=4),
                                    dict(schedule="nope"), dict(fuse_method="relative"), dict(context_stride=0)])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(WanInputError):
        ContextOptions(**kwargs)
