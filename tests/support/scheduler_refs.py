"""diffusers' schedulers as the reference for our sigma schedules and samplers (no tests here)."""

from __future__ import annotations

from diffusers import (
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchLCMScheduler,
    UniPCMultistepScheduler,
)


def reference_scheduler(name: str, shift: float):
    """The diffusers scheduler each sampler corresponds to, configured as diffusers' Wan pipelines do."""
    if name == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
            solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=True,
            num_train_timesteps=1000,
        )
    if name == "dpm++_2m":
        return DPMSolverMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, num_train_timesteps=1000,
        )
    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(shift=shift)
    if name == "lcm":
        return FlowMatchLCMScheduler(shift=shift)
    raise KeyError(name)


def reference_truncated(sched, steps: int, denoise: float):
    """diffusers' video-to-video ``strength`` handling (WanVideoToVideoPipeline.get_timesteps)."""
    sched.set_timesteps(steps)
    run = min(int(steps * denoise), steps)
    start = max(steps - run, 0)
    sched.set_begin_index(start)
    return sched.sigmas[start:], sched.timesteps[start:], start
