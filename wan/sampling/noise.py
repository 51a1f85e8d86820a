"""Seeded noise: the initial latent noise and the noise samplers draw while they run.

The initial noise is drawn by a CPU ``torch.Generator`` seeded with the seed, in float32, and only then
moved and cast (CUDA, MPS and CPU generators give different streams for one seed): the same seed gives
the same latent noise on any machine. ComfyUI's ``comfy.sample.prepare_noise`` draws the same numbers
(``torch.manual_seed(seed)``, CPU, float32), so both noise streams below share it.

The noise a sampler draws after that (lcm's re-noising, the ancestral and SDE samplers) comes from one
of two streams (``NOISE_STREAMS``, ``SamplingOptions.noise``):

- ``"comfy"``: as ComfyUI's k-diffusion samplers draw it, so a run equals ComfyUI's KSampler for the
  same seed. As in ComfyUI, a run from an empty latent starts from the noise times the first sigma. Each sampler run reseeds: Gaussian noise comes from a generator on the latent's device
  seeded with the seed (k-diffusion's ``default_noise_sampler``; like ComfyUI, a GPU run therefore
  draws other numbers than a CPU run), the SDE samplers' noise from a ``torchsde.BrownianTree`` on the
  CPU with the seed as entropy (``BrownianTreeNoiseSampler(cpu=True)``). On the CPU the first
  re-noise of lcm is therefore the initial noise again, exactly as in ComfyUI.
- ``"diffusers"``: every draw continues the one CPU generator that drew the initial noise, in float32
  (diffusers' ``generator=`` convention): device independent. A Brownian tree takes its entropy from
  that generator. A run from an empty latent starts from the pure noise, as diffusers' pipelines do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import WanError, WanInputError

NOISE_STREAMS = ("comfy", "diffusers")

# (sigma, sigma_next) -> standard normal noise shaped like the latent, for the step between them
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _seed64(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise WanInputError(f"seed must be an integer, got {seed!r}")
    return seed % (1 << 64)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (any int; reduced to the 64-bit range torch accepts)."""
    return torch.Generator(device="cpu").manual_seed(_seed64(seed))


def randn_like_cpu(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise drawn on the CPU in float32 (from ``generator``, else torch's global CPU
    stream), then moved to ``device`` and cast to ``dtype``."""
    if generator is not None and generator.device.type != "cpu":
        raise WanInputError(
            f"noise generators must live on the CPU so seeds reproduce across devices, got one on "
            f"{generator.device}"
        )
    noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device="cpu")
    return noise.to(device=device, dtype=dtype)


def make_noise(
    shape: Sequence[int],
    seed: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Initial latent noise for ``seed``: shape ``shape`` (e.g. [B, C, F, H, W]) on ``device``."""
    return randn_like_cpu(shape, make_generator(seed), device, dtype)


def noise_latents(latents: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """The flow-matching forward process x_s = (1 - s) * x0 + s * noise, used to start part-way
    (video-to-video, ``denoise`` < 1) from ``get_sigmas(...)[0]``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    out = (1.0 - sigma) * latents.float() + sigma * noise.to(latents.device).float()
    return out.to(latents.dtype)


def check_stream(stream: str) -> str:
    """``stream`` if it names a noise stream, else WanInputError."""
    if stream not in NOISE_STREAMS:
        raise WanInputError(f"unknown noise stream {stream!r}; expected one of {', '.join(NOISE_STREAMS)}")
    return stream


def gaussian_sampler(x: torch.Tensor, *, seed: int | None = None,
                     generator: torch.Generator | None = None) -> NoiseSampler:
    """Fresh standard normal noise shaped like ``x`` at each call. With ``seed``: ComfyUI's stream
    (a generator on x's device seeded with ``seed``, drawing in x's dtype there); without: diffusers'
    stream (``generator``, else torch's global CPU stream, drawing float32 on the CPU, then moved)."""
    if seed is None:
        return lambda sigma, sigma_next: randn_like_cpu(x.shape, generator, x.device)
    g = torch.Generator(device=x.device).manual_seed(_seed64(seed))
    return lambda sigma, sigma_next: torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=g)


def _torchsde():
    try:
        import torchsde
    except ImportError as e:  # an optional dependency: ComfyUI ships it, a bare install may not
        raise WanError("the SDE samplers (dpm++_sde, dpm++_2m_sde) draw their noise from a Brownian tree and "
                       "need the torchsde package: pip install torchsde") from e
    return torchsde


def brownian_sampler(x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
                     generator: torch.Generator | None = None) -> NoiseSampler:
    """k-diffusion's Brownian-tree noise as ComfyUI's SDE samplers build it: one ``torchsde``
    BrownianTree on the CPU over [smallest nonzero sigma, largest sigma] of ``sigmas`` (taken before
    any first-sigma offset), with ``seed`` as its entropy (without a seed: entropy drawn from
    ``generator``). The noise for (sigma, sigma_next) is the tree's increment from sigma to sigma_next
    over sqrt(|sigma_next - sigma|), so overlapping steps get correlated noise, as an SDE solver wants."""
    torchsde = _torchsde()
    sigmas = torch.as_tensor(sigmas).detach().cpu()
    lo, hi = sigmas[sigmas > 0].min(), sigmas.max()
    if seed is None:
        entropy = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    else:
        entropy = _seed64(seed)
    tree = torchsde.BrownianTree(lo, torch.zeros(x.shape, dtype=x.dtype), hi, entropy=entropy)

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        sigma, sigma_next = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        # the tree is queried in increasing time; sampling runs sigma downwards, so the sign flips
        a, b, sign = (sigma, sigma_next, 1) if sigma < sigma_next else (sigma_next, sigma, -1)
        w = tree(a.cpu().float(), b.cpu().float()).to(dtype=sigma.dtype) * sign
        return (w / (sigma_next - sigma).abs().sqrt()).to(x.device)

    return sample
