"""ComfyUI's schedulers on a flow model, by name, written from their formulas.

Each function gives what ComfyUI's ``comfy.samplers.calculate_sigmas(model_sampling, name, steps)``
gives for ``model_sampling`` = ``ModelSamplingDiscreteFlow`` with ``shift`` and multiplier 1000 (what
the ModelSamplingSD3 node sets up for Wan), float for float: the same float32 tensor arithmetic in
the same order, so the grids are bit-equal, not just close.

The flow model sampling is a table of 1000 sigmas, ``shift(t)`` for t = 1/1000 ... 1000/1000, with
``shift(t) = shift * t / (1 + (shift - 1) * t)``; ``sigma_min`` is its first entry (shift(0.001)),
``sigma_max`` its last (1). ``normal`` and ``sgm_uniform`` map sigma_max and sigma_min back to
timesteps (sigma * 1000), space them evenly and shift them again, as ComfyUI does.

All of them apply to a flow model (each gives decreasing sigmas in (0, 1] ending at 0), with two
caveats that are ComfyUI's own:
- ``karras``, ``exponential`` and ``kl_optimal`` see only sigma_min and sigma_max, so the shift moves
  only their lower end; ``kl_optimal`` needs at least 2 steps (ComfyUI divides by steps - 1).
- ``ddim_uniform`` strides the table by ``1000 // steps`` and may return a different number of steps
  (7 asked -> 8 given) and a first sigma below 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import WanInputError

TABLE_SIZE = 1000  # ComfyUI's ModelSamplingDiscreteFlow: timesteps=1000, multiplier=1000


def flow_shift(shift: float, t):
    """ComfyUI's ``time_snr_shift``: the identity at shift 1 (not merely close to it)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def sigma_table(shift: float) -> torch.Tensor:
    """The 1000 float32 sigmas of the flow model sampling, lowest first."""
    t = (torch.arange(1, TABLE_SIZE + 1, 1) / TABLE_SIZE) * TABLE_SIZE
    return flow_shift(shift, t / TABLE_SIZE)


def _simple(table: torch.Tensor, shift: float, steps: int) -> torch.Tensor:
    stride = len(table) / steps
    sigs = [float(table[-(1 + int(x * stride))]) for x in range(steps)]
    return torch.FloatTensor(sigs + [0.0])


def _ddim_uniform(table: torch.Tensor, shift: float, steps: int) -> torch.Tensor:
    x = 1
    if math.isclose(float(table[x]), 0, abs_tol=0.00001):
        steps += 1
        sigs = []
    else:
        sigs = [0.0]
    stride = max(len(table) // steps, 1)
    while x < len(table):
        sigs.append(float(table[x]))
        x += stride
    return torch.FloatTensor(sigs[::-1])


def _normal(table: torch.Tensor, shift: float, steps: int, sgm: bool = False) -> torch.Tensor:
    start, end = table[-1] * TABLE_SIZE, table[0] * TABLE_SIZE
    append_zero = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(flow_shift(shift, end / TABLE_SIZE)), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps)
    sigs = [float(flow_shift(shift, ts / TABLE_SIZE)) for ts in timesteps]
    return torch.FloatTensor(sigs + ([0.0] if append_zero else []))


def _sgm_uniform(table: torch.Tensor, shift: float, steps: int) -> torch.Tensor:
    return _normal(table, shift, steps, sgm=True)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def _beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """The quantile of the beta(a, b) distribution, by bisection of its CDF to float64 resolution."""
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return 1.0
    if a == b and q == 0.5:  # the median of a symmetric beta, exactly
        return 0.5
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _beta(table: torch.Tensor, shift: float, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    # Lee et al. 2024 (arXiv:2407.12173): table indices at the beta(0.6, 0.6) quantiles, repeats dropped
    total = len(table) - 1
    quantiles = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(np.array([beta_ppf(float(q), alpha, beta) for q in quantiles]) * total)
    sigs, last = [], -1
    for t in ts:
        if t != last:
            sigs.append(float(table[int(t)]))
        last = t
    return torch.FloatTensor(sigs + [0.0])


def _linear_quadratic(table: torch.Tensor, shift: float, steps: int, threshold_noise: float = 0.025) -> torch.Tensor:
    # Mochi's schedule: linear to threshold_noise over half the steps, then quadratic to 1
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        linear_steps = steps // 2
        linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quad_coef = step_diff / (linear_steps * quadratic_steps ** 2)
        lin_coef = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps ** 2)
        const = quad_coef * (linear_steps ** 2)
        quadratic = [quad_coef * (i ** 2) + lin_coef * i + const for i in range(linear_steps, steps)]
        schedule = [1.0 - x for x in linear + quadratic + [1.0]]
    return torch.FloatTensor(schedule) * table[-1]


def _append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def _karras(table: torch.Tensor, shift: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    sigma_min, sigma_max = float(table[0]), float(table[-1])
    ramp = torch.linspace(0, 1, steps)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def _exponential(table: torch.Tensor, shift: float, steps: int) -> torch.Tensor:
    sigma_min, sigma_max = float(table[0]), float(table[-1])
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp())


def _kl_optimal(table: torch.Tensor, shift: float, steps: int) -> torch.Tensor:
    if steps < 2:
        raise WanInputError(f"the kl_optimal scheduler needs at least 2 steps, got {steps}")
    sigma_min, sigma_max = float(table[0]), float(table[-1])
    adj = torch.arange(steps, dtype=torch.float).div_(steps - 1)
    sigmas = adj.new_zeros(steps + 1)
    sigmas[:-1] = (adj * math.atan(sigma_min) + (1 - adj) * math.atan(sigma_max)).tan_()
    return sigmas


# ComfyUI 0.3.75's SCHEDULER_NAMES, in its order
COMFY_SCHEDULERS = {
    "simple": _simple,
    "sgm_uniform": _sgm_uniform,
    "karras": _karras,
    "exponential": _exponential,
    "ddim_uniform": _ddim_uniform,
    "beta": _beta,
    "normal": _normal,
    "linear_quadratic": _linear_quadratic,
    "kl_optimal": _kl_optimal,
}


def comfy_sigmas(name: str, steps: int, shift: float) -> torch.Tensor:
    """``calculate_sigmas(ModelSamplingDiscreteFlow(shift), name, steps)``: float32, ending at 0."""
    if name not in COMFY_SCHEDULERS:
        raise WanInputError(f"unknown ComfyUI scheduler {name!r}; expected one of {', '.join(COMFY_SCHEDULERS)}")
    return COMFY_SCHEDULERS[name](sigma_table(shift), shift, steps)


def comfy_denoise_sigmas(name: str, steps: int, shift: float, denoise: float = 1.0) -> torch.Tensor:
    """ComfyUI's KSampler / BasicScheduler ``denoise``: the schedule of ``int(steps / denoise)`` steps,
    of which the last ``steps`` (``steps + 1`` sigmas) are kept. At denoise 1 the whole schedule, as
    KSampler takes it (BasicScheduler would cut ddim_uniform's extra step; KSampler does not)."""
    if denoise >= 1.0:
        return comfy_sigmas(name, steps, shift)
    return comfy_sigmas(name, int(steps / denoise), shift)[-(steps + 1):]
