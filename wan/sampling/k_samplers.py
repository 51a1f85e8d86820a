"""ComfyUI's k-diffusion samplers for flow models, in x0 terms.

Each ``sample_<name>`` equals the function of that name in ComfyUI's ``comfy/k_diffusion/sampling.py``
as ComfyUI runs it for a flow model (``model_sampling`` CONST: x = (1 - sigma) * x0 + sigma * noise,
half log-SNR log((1 - sigma) / sigma)) with the sampler's default options (eta 1, s_noise 1), given
the same sigmas, the same initial x and ComfyUI's noise stream (``seed``; see ``noise.py``).

The keywords are those of ``samplers.py``: ``seed`` chooses ComfyUI's noise stream (else diffusers':
``generator``), ``shift`` is the model sampling's shift, used only where ComfyUI replaces a first
sigma of 1 (log-SNR -inf) by ``shift_sigma(1 - 1e-4, shift)`` (``offset_first_sigma_for_snr``).
When a sampler evaluates the model at a sigma that is not on the schedule (that offset first sigma,
dpm++_sde's midpoints) the Step carries that sigma and ComfyUI's timestep for it, sigma * 1000.
Arithmetic runs in float32 with the scalars on the CPU; each new x is cast back to x's dtype.
"""

from __future__ import annotations

import torch

from .loop import X0Model, make_steps, poll, prepare
from .noise import brownian_sampler, gaussian_sampler
from .schedules import NUM_TRAIN_TIMESTEPS, shift_sigma
from .step import Step

_ETA = 1.0  # k-diffusion's default for the ancestral and SDE samplers, as ComfyUI's KSampler runs them


def _half_log_snr(sigma: torch.Tensor) -> torch.Tensor:
    """log(alpha / sigma) of a flow sigma, alpha = 1 - sigma (k-diffusion's sigma_to_half_log_snr)."""
    return sigma.logit().neg()


def _sigma_of(half_log_snr: torch.Tensor) -> torch.Tensor:
    return half_log_snr.neg().sigmoid()


def _ancestral_step(sigma_from, sigma_to, eta=_ETA):
    """(sigma_down, sigma_up) of an ancestral step (k-diffusion's get_ancestral_step)."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    return (sigma_to**2 - sigma_up**2) ** 0.5, sigma_up


def _offset_first_sigma(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    if len(sigmas) > 1 and sigmas[0] >= 1:
        sigmas = sigmas.clone()
        sigmas[0] = shift_sigma(1.0 - 1e-4, float(shift))  # ComfyUI's percent_to_sigma(1e-4)
    return sigmas


def _off_schedule(step: Step, sigma: torch.Tensor) -> Step:
    """``step`` evaluated at ``sigma``, with ComfyUI's timestep for it."""
    return Step(step.index, step.total, sigma, sigma * NUM_TRAIN_TIMESTEPS)


def _snr_steps(sigmas, timesteps, shift):
    """(offset sigmas, their Steps) for the samplers that work in log-SNR."""
    offset = _offset_first_sigma(sigmas, shift)
    steps = make_steps(sigmas, timesteps)
    if len(steps) and offset[0] != sigmas[0]:
        steps[0] = _off_schedule(steps[0], offset[0])
    return offset, steps


def _c(value, x):
    return torch.as_tensor(value).to(x.device)


@torch.no_grad()
def sample_euler_ancestral(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None,
                           seed=None, shift=1.0):
    """Euler ancestral for rectified flow: step to sigma_down, then re-noise to the next sigma with
    Gaussian noise; k-diffusion's ``sample_euler_ancestral`` (its ``_RF`` branch, taken for CONST)."""
    sigmas = prepare(sigmas)
    noise = gaussian_sampler(x, seed=seed, generator=generator)
    for step in make_steps(sigmas, timesteps):
        poll(cancel, step)
        i, s, s_next = step.index, step.sigma, sigmas[step.index + 1]
        x0 = model(x, step)
        if s_next == 0:
            xf = x0
        else:
            sigma_down = s_next * (1 + (s_next / s - 1) * _ETA)
            alpha_next, alpha_down = 1 - s_next, 1 - sigma_down
            renoise = (s_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2) ** 0.5
            ratio = sigma_down / s
            xf = _c(ratio, x) * x.float() + _c(1 - ratio, x) * x0
            xf = _c(alpha_next / alpha_down, x) * xf + noise(s, s_next).float() * _c(renoise, x)
        x = xf.to(x.dtype)
        if callback is not None:
            callback(i, step.total, x0)
    return x


@torch.no_grad()
def sample_dpmpp_sde(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None,
                     seed=None, shift=1.0):
    """DPM-Solver++ (stochastic), two model calls a step (the second at the log-SNR midpoint, r 1/2),
    Brownian-tree noise; k-diffusion's ``sample_dpmpp_sde``."""
    sigmas = prepare(sigmas)
    if len(sigmas) <= 1:
        return x
    noise = brownian_sampler(x, sigmas, seed=seed, generator=generator)
    sigmas, steps = _snr_steps(sigmas, timesteps, shift)
    r = 0.5
    fac = 1 / (2 * r)
    for step in steps:
        poll(cancel, step)
        i, s, s_next = step.index, step.sigma, sigmas[step.index + 1]
        x0 = model(x, step)
        if s_next == 0:
            xf = x0
        else:
            xf = x.float()
            lambda_s, lambda_t = _half_log_snr(s), _half_log_snr(s_next)
            h = lambda_t - lambda_s
            lambda_s_1 = lambda_s + r * h
            sigma_s_1 = _sigma_of(lambda_s_1)
            alpha_s = s * lambda_s.exp()
            alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
            alpha_t = s_next * lambda_t.exp()

            sd, su = _ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp())
            h_ = sd.log().neg() - lambda_s
            x_2 = _c((alpha_s_1 / alpha_s) * (-h_).exp(), x) * xf - _c(alpha_s_1 * (-h_).expm1(), x) * x0
            x_2 = x_2 + _c(alpha_s_1, x) * noise(s, sigma_s_1).float() * _c(su, x)
            mid = _off_schedule(step, sigma_s_1)
            poll(cancel, mid)
            x0_2 = model(x_2.to(x.dtype), mid)

            sd, su = _ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp())
            h_ = sd.log().neg() - lambda_s
            x0_d = (1 - fac) * x0 + fac * x0_2
            xf = _c((alpha_t / alpha_s) * (-h_).exp(), x) * xf - _c(alpha_t * (-h_).expm1(), x) * x0_d
            xf = xf + _c(alpha_t, x) * noise(s, s_next).float() * _c(su, x)
        x = xf.to(x.dtype)
        if callback is not None:
            callback(i, step.total, x0)
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None,
                        seed=None, shift=1.0):
    """DPM-Solver++(2M) SDE, midpoint correction, Brownian-tree noise; k-diffusion's
    ``sample_dpmpp_2m_sde``."""
    sigmas = prepare(sigmas)
    if len(sigmas) <= 1:
        return x
    noise = brownian_sampler(x, sigmas, seed=seed, generator=generator)
    sigmas, steps = _snr_steps(sigmas, timesteps, shift)
    x0_prev = h = h_last = None
    for step in steps:
        poll(cancel, step)
        i, s, s_next = step.index, step.sigma, sigmas[step.index + 1]
        x0 = model(x, step)
        if s_next == 0:
            xf = x0
        else:
            lambda_s, lambda_t = _half_log_snr(s), _half_log_snr(s_next)
            h = lambda_t - lambda_s
            h_eta = h * (_ETA + 1)
            alpha_t = s_next * lambda_t.exp()
            xf = _c(s_next / s * (-h * _ETA).exp(), x) * x.float() + _c(alpha_t * (-h_eta).expm1().neg(), x) * x0
            if x0_prev is not None:
                r = h_last / h
                xf = xf + _c(0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r), x) * (x0 - x0_prev)
            scale = (-2 * h * _ETA).expm1().neg().sqrt()
            xf = xf + noise(s, s_next).float() * _c(s_next, x) * _c(scale, x)
        x0_prev, h_last = x0, h
        x = xf.to(x.dtype)
        if callback is not None:
            callback(i, step.total, x0)
    return x


@torch.no_grad()
def sample_res_multistep(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None,
                         seed=None, shift=1.0):
    """RES second-order multistep (arXiv 2308.02157) in -log(sigma) time, Euler on the first and the
    last step; k-diffusion's ``sample_res_multistep``. Deterministic: ComfyUI runs it with eta 0, so
    the noise it draws is scaled by 0 and no noise is drawn here."""
    sigmas = prepare(sigmas)
    x0_prev = sigma_down_prev = None
    for step in make_steps(sigmas, timesteps):
        poll(cancel, step)
        i, s, s_next = step.index, step.sigma, sigmas[step.index + 1]
        x0 = model(x, step)
        sigma_down = s_next  # eta 0: no ancestral split
        xf = x.float()
        if sigma_down == 0 or x0_prev is None:
            d = (xf - x0) / _c(s, x)
            xf = xf + d * _c(sigma_down - s, x)
        else:
            t, t_old, t_next, t_prev = (-torch.log(v) for v in (s, sigma_down_prev, sigma_down, sigmas[i - 1]))
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1 = torch.expm1(-h) / -h
            phi2 = (phi1 - 1.0) / -h
            b1 = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2 / c2, nan=0.0)
            xf = _c(h.neg().exp(), x) * xf + _c(h, x) * (_c(b1, x) * x0 + _c(b2, x) * x0_prev)
        x0_prev, sigma_down_prev = x0, sigma_down
        x = xf.to(x.dtype)
        if callback is not None:
            callback(i, step.total, x0)
    return x


def _er_noise_scaler(v: torch.Tensor) -> torch.Tensor:
    return v * ((v**0.3).exp() + 10.0)


@torch.no_grad()
def sample_er_sde(model: X0Model, x, sigmas, timesteps, *, callback=None, cancel=None, generator=None,
                  seed=None, shift=1.0):
    """Extended reverse-time SDE solver, VP ER-SDE-Solver-3 (arXiv 2309.06169), its default noise
    scaler, 200-point quadrature and up to 3 stages, Gaussian noise; k-diffusion's ``sample_er_sde``."""
    sigmas = prepare(sigmas)
    noise = gaussian_sampler(x, seed=seed, generator=generator)
    sigmas, steps = _snr_steps(sigmas, timesteps, shift)
    points = 200.0
    point_index = torch.arange(0, points, dtype=torch.float32)
    er_lambdas = _half_log_snr(sigmas).neg().exp()  # sigma / alpha
    x0_prev = x0_d_prev = None
    for step in steps:
        poll(cancel, step)
        i, s, s_next = step.index, step.sigma, sigmas[step.index + 1]
        x0 = model(x, step)
        stage = min(3, i + 1)
        if s_next == 0:
            xf = x0
        else:
            lam_s, lam_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s, alpha_t = s / lam_s, s_next / lam_t
            r = _er_noise_scaler(lam_t) / _er_noise_scaler(lam_s)
            xf = _c(alpha_t / alpha_s * r, x) * x.float() + _c(alpha_t * (1 - r), x) * x0
            if stage >= 2:
                dt = lam_t - lam_s
                step_size = -dt / points
                lam_pos = lam_t + point_index * step_size
                scaled = _er_noise_scaler(lam_pos)
                s_1 = torch.sum(1 / scaled) * step_size
                x0_d = (x0 - x0_prev) / _c(lam_s - er_lambdas[i - 1], x)
                xf = xf + _c(alpha_t * (dt + s_1 * _er_noise_scaler(lam_t)), x) * x0_d
                if stage >= 3:
                    s_u = torch.sum((lam_pos - lam_s) / scaled) * step_size
                    x0_u = (x0_d - x0_d_prev) / _c((lam_s - er_lambdas[i - 2]) / 2, x)
                    xf = xf + _c(alpha_t * ((dt**2) / 2 + s_u * _er_noise_scaler(lam_t)), x) * x0_u
                x0_d_prev = x0_d
            scale = (lam_t**2 - lam_s**2 * r**2).sqrt().nan_to_num(nan=0.0)
            xf = xf + _c(alpha_t, x) * noise(s, s_next).float() * _c(scale, x)
        x0_prev = x0
        x = xf.to(x.dtype)
        if callback is not None:
            callback(i, step.total, x0)
    return x
