"""Flow-matching samplers written in x0 terms, as k-diffusion's are.

The denoiser chain (CFG, expert switch, context windows, the DiT) returns the flow prediction
(velocity) ``v = noise - x0`` for ``x = (1 - sigma) * x0 + sigma * noise``. ``flow_to_x0`` is the one
place that turns it into the predicted clean latent ``x0 = x - sigma * v``; samplers only ever see
``model(x, step) -> x0`` (float32), with ``step`` the ``Step`` of the call (``step.py``).

Each sampler ``sample_<name>(model, x, sigmas, timesteps, *, callback=None, cancel=None,
generator=None, seed=None, shift=1.0)`` takes ``len(sigmas) - 1`` steps; ``timesteps`` (one per
step, the DiT timestep of each sigma) ride on the Steps and never enter the arithmetic. The samplers
here, given the sigmas of the diffusers scheduler named in their docstrings
(``schedules.get_sigmas(..., schedule=SAMPLER_SCHEDULES[name])``), reproduce that scheduler step for
step; those of ``k_samplers.py`` reproduce ComfyUI's k-diffusion samplers on any sigmas. Arithmetic
runs in float32 (as diffusers upcasts) and each new x is cast back to x's dtype.

Noise drawn while sampling (``noise.py``): with ``seed``, ComfyUI's stream, reseeded per run as its
k-samplers do; without, diffusers' stream, continuing ``generator``. ``shift`` is the model sampling's
shift (only ComfyUI's log-SNR samplers read it, to offset a first sigma of 1).

``callback(step, total, x0_preview)`` runs after each step (``step`` from 0); ``cancel() -> bool``
is polled before each model call and raises ``Cancelled``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .k_samplers import (sample_dpmpp_2m_sde, sample_dpmpp_sde, sample_er_sde, sample_euler_ancestral,
                         sample_res_multistep)
from .loop import Cancelled, X0Model, make_steps, poll, prepare  # noqa: F401  (Cancelled: re-exported)
from .noise import gaussian_sampler
from .step import Step


def flow_to_x0(denoise: Callable[..., torch.Tensor]) -> X0Model:
    """``model(x, step) -> x0`` from a flow denoiser ``denoise(x, step) -> v``: x0 = x - sigma * v."""

    def model(x: torch.Tensor, step: Step) -> torch.Tensor:
        v = denoise(x, step)
        return x.float() - step.sigma.to(x.device) * v

    return model


def _lam(sigma: torch.Tensor) -> torch.Tensor:
    """log-SNR of a flow sigma: log(alpha) - log(sigma) with alpha = 1 - sigma (+inf at sigma 0)."""
    return torch.log(1 - sigma) - torch.log(sigma)


@torch.no_grad()
def sample_euler(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None, seed=None,
                  shift=1.0):
    """Euler on the flow ODE, dx/dsigma = (x - x0) / sigma; diffusers
    ``FlowMatchEulerDiscreteScheduler(shift=...)``."""
    sigmas = prepare(sigmas)
    for step in make_steps(sigmas, timesteps):
        poll(cancel, step)
        s, s_next = step.sigma.to(x.device), sigmas[step.index + 1].to(x.device)
        x0 = model(x, step)
        xf = x.float()
        x = (xf + (s_next - s) * ((xf - x0) / s)).to(x.dtype)
        if callback is not None:
            callback(step.index, step.total, x0)
    return x


@torch.no_grad()
def sample_lcm(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None, seed=None,
               shift=1.0):
    """Predict x0, then re-noise it to the next sigma with fresh noise (step-distilled LoRAs such as
    CausVid / lightx2v); no noise is drawn for the last step, whose next sigma is 0. Without ``seed``
    (diffusers' stream) the noise continues ``generator`` on the CPU in float32: diffusers
    ``FlowMatchLCMScheduler``. With ``seed`` (ComfyUI's stream) it is reseeded as k-diffusion's
    ``sample_lcm`` does (``noise.gaussian_sampler``): ComfyUI's lcm."""
    sigmas = prepare(sigmas)
    noise = gaussian_sampler(x, seed=seed, generator=generator)
    for step in make_steps(sigmas, timesteps):
        poll(cancel, step)
        s, s_next = step.sigma, sigmas[step.index + 1]
        x0 = model(x, step)
        if s_next > 0:
            n = noise(s, s_next).float()
            x = ((1 - s_next).to(x.device) * x0 + s_next.to(x.device) * n).to(x.dtype)
        else:
            x = x0.to(x.dtype)
        if callback is not None:
            callback(step.index, step.total, x0)
    return x


@torch.no_grad()
def sample_dpmpp_2m(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None, seed=None,
                  shift=1.0):
    """DPM-Solver++(2M), midpoint form, on x0 predictions (Lu et al. 2022); diffusers
    ``DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction")`` with its
    defaults: first order on the first step and on the step to sigma 0."""
    sigmas = prepare(sigmas)
    x0_prev = None
    for step in make_steps(sigmas, timesteps):
        poll(cancel, step)
        i, s, s_next = step.index, step.sigma, sigmas[step.index + 1]
        x0 = model(x, step)
        xf = x.float()
        lam_s, lam_t = _lam(s), _lam(s_next)
        h = lam_t - lam_s
        a_t = 1 - s_next
        phi = torch.exp(-h) - 1.0
        dev = x.device
        if x0_prev is None or s_next == 0:
            x_next = (s_next / s).to(dev) * xf - (a_t * phi).to(dev) * x0
        else:
            r = (lam_s - _lam(sigmas[i - 1])) / h
            d1 = (1.0 / r).to(dev) * (x0 - x0_prev)
            x_next = (s_next / s).to(dev) * xf - (a_t * phi).to(dev) * x0 - (0.5 * (a_t * phi)).to(dev) * d1
        x0_prev = x0
        x = x_next.to(x.dtype)
        if callback is not None:
            callback(i, step.total, x0)
    return x


def _unipc_coefficients(hh: torch.Tensor, order: int):
    """(h_phi_1, B(h), b) of UniPC's bh2 variant for an order; ``hh`` = -h (predict-x0 form)."""
    h_phi_1 = torch.expm1(hh)
    b_h = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial = 1
    b = []
    for k in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return h_phi_1, b_h, torch.stack(b)


def _unipc_update(x, m0, m_prev, sig_t, sig_s0, sig_s1, model_t=None, order=1):
    """One UniP predictor step (``model_t`` None) or UniC corrector step, bh2, predict-x0, order <= 2.

    x: the sample at sig_s0; m0: its x0 prediction; m_prev: the x0 prediction at sig_s1 (order 2);
    model_t: the x0 prediction at sig_t, for the corrector. Returns the sample at sig_t.
    """
    dev = x.device
    a_t = 1 - sig_t
    lam_s0 = _lam(sig_s0)
    h = _lam(sig_t) - lam_s0
    rks = [torch.ones(())]
    d1 = None
    if order == 2:
        rk = (_lam(sig_s1) - lam_s0) / h
        rks = [rk, torch.ones(())]
        d1 = (m_prev - m0) / rk.to(dev)
    h_phi_1, b_h, b = _unipc_coefficients(-h, order)
    x_base = (sig_t / sig_s0).to(dev) * x - (a_t * h_phi_1).to(dev) * m0
    scale = (a_t * b_h).to(dev)
    if model_t is None:  # predictor: the order-2 weight is fixed at 1/2 for bh2
        return x_base if d1 is None else x_base - scale * (0.5 * d1)
    if order == 1:
        rhos = torch.tensor([0.5])
    else:
        rks = torch.stack(rks)
        r_mat = torch.stack([torch.ones_like(rks), rks])
        rhos = torch.linalg.solve(r_mat, b)
    corr = rhos[-1].to(dev) * (model_t - m0)
    if d1 is not None:
        corr = rhos[0].to(dev) * d1 + corr
    return x_base - scale * corr


@torch.no_grad()
def sample_unipc(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None, seed=None,
                 shift=1.0):
    """UniPC (Zhao et al. 2023), bh2, order 2, predict-x0, with the corrector after every model call
    and first order on the first and the last step: the official Wan ``FlowUniPCMultistepScheduler``
    and diffusers ``UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
    solver_order=2, solver_type="bh2", lower_order_final=True)``.

    A first sigma of 1 (pure noise: log-SNR -inf, which makes the order-2 corrector's linear system
    singular) is lowered by 1e-6, as diffusers does when it builds its flow sigmas; the model is
    evaluated at the lowered sigma."""
    sigmas = prepare(sigmas)
    if abs(float(sigmas[0]) - 1.0) < 1e-6:
        sigmas = sigmas.clone()
        sigmas[0] = 1.0 - 1e-6
    m_prev = m_prev2 = None  # x0 predictions of the last two model calls
    x_last = None  # the sample the last predictor started from
    last_order = 1
    for step in make_steps(sigmas, timesteps):
        poll(cancel, step)
        i, total, s = step.index, step.total, step.sigma
        m = model(x, step)
        xf = x.float()
        if x_last is not None:
            s_prev2 = sigmas[i - 2] if last_order == 2 else None
            xf = _unipc_update(x_last, m_prev, m_prev2, s, sigmas[i - 1], s_prev2, model_t=m, order=last_order)
        m_prev2, m_prev = m_prev, m
        order = min(2, total - i, i + 1)
        x_last = xf
        s_prev = sigmas[i - 1] if order == 2 else None
        x = _unipc_update(xf, m, m_prev2, sigmas[i + 1], s, s_prev, order=order).to(x.dtype)
        last_order = order
        if callback is not None:
            callback(i, total, m)
    return x


# The one list of sampler names (nodes, CLI and Python API all offer these).
SAMPLERS = {
    "unipc": sample_unipc,
    "euler": sample_euler,
    "dpm++_2m": sample_dpmpp_2m,
    "lcm": sample_lcm,
    "euler_ancestral": sample_euler_ancestral,
    "dpm++_sde": sample_dpmpp_sde,
    "dpm++_2m_sde": sample_dpmpp_2m_sde,
    "res_multistep": sample_res_multistep,
    "er_sde": sample_er_sde,
}

# The default noise stream of each sampler (``noise.NOISE_STREAMS``): the stream of the reference it
# was written against, diffusers' scheduler or ComfyUI's k-diffusion sampler.
SAMPLER_NOISE = {
    "unipc": "diffusers", "euler": "diffusers", "dpm++_2m": "diffusers", "lcm": "diffusers",
    "euler_ancestral": "comfy", "dpm++_sde": "comfy", "dpm++_2m_sde": "comfy", "res_multistep": "comfy",
    "er_sde": "comfy",
}

# The sigma grid each sampler runs on by default (``schedules.get_sigmas``): the diffusers scheduler's
# for those written against one; ComfyUI's "simple" scheduler for ComfyUI's samplers, as its
# templates run them.
SAMPLER_SCHEDULES = {
    "unipc": "unipc", "euler": "euler", "dpm++_2m": "wan", "lcm": "euler",
    "euler_ancestral": "simple", "dpm++_sde": "simple", "dpm++_2m_sde": "simple", "res_multistep": "simple",
    "er_sde": "simple",
}
