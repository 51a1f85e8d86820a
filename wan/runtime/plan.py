"""The memory plan of one job: how many DiT blocks stay on the device and how many stream in from the
host (block swap), where the text encoder runs, how the VAE tiles, and the peak this predicts.

Pure arithmetic over sizes (``plan_sizes``) and a budget in bytes; reading the device's free memory
and applying the plan to loaded models is ``wan.job.memory``'s business, so tests can plan any
budget on any machine.

The streamed blocks are the last ones of each expert (block swap's rule) and two of them are in
flight at once with prefetch (the one computing and the next being copied). Every expert's resident
blocks are held together (a Wan 2.2 A14B run switches between them), but only one expert computes
at a time, so only one expert's blocks are in flight. The smallest number streamed whose predicted
peak fits is chosen, so more budget never streams more.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WanInputError
from ..models.vae.base import Tiling
from .plan_sizes import WeightSizes

GIB = 1 << 30


@dataclass(frozen=True)
class MemoryPlan:
    """One job's plan (per expert: the same counts). ``budget``: the bytes planned against;
    ``predicted_peak_bytes``: weights held on the device, blocks in flight, activations and the
    sampler's latents at the worst moment of a DiT forward."""

    resident: int
    streamed: int
    predicted_peak_bytes: int
    budget: int
    text_encoder_device: str | None = None  # None: not planned (no text encoder given)
    vae_tiling: Tiling | None = None
    vae_planned: bool = False
    prefetch: bool = True
    lora_bytes: int = 0  # LoRA factors held on the device while sampling (counted in the peak)

    def __str__(self) -> str:
        vae = ""
        if self.vae_planned:
            vae = ", VAE untiled" if self.vae_tiling is None else f", VAE tiled {self.vae_tiling.tile_px}px"
        te = "" if self.text_encoder_device is None else f", text encoder on {self.text_encoder_device}"
        lora = f" (LoRAs {self.lora_bytes / GIB:.2f} GiB)" if self.lora_bytes else ""
        return (f"Wan memory plan: {self.resident} resident + {self.streamed} streamed blocks{lora}{te}{vae}; "
                f"predicted peak {self.predicted_peak_bytes / GIB:.1f} GiB of {self.budget / GIB:.1f} GiB")


def peak_bytes(experts: list[WeightSizes], streamed: int, activations: int, prefetch: bool = True) -> int:
    """Predicted device peak with the last ``streamed`` blocks of every expert streamed."""
    held = sum(w.other + w.lora + sum(w.blocks[:len(w.blocks) - streamed]) for w in experts)
    in_flight = 0
    if streamed:
        in_flight = (2 if prefetch and streamed > 1 else 1) * max(max(w.blocks[-streamed:]) for w in experts)
    return held + in_flight + activations


# an encoder that fits only beside the weights, not beside the sampling peak, visits the device
FOR_THE_ENCODE = " for the encode, then cpu"


def encoder_device(encoder_bytes: int, held: int, peak: int, budget: int, device: str = "cuda") -> str:
    """Where an encoder of ``encoder_bytes`` (weights and its own activations) runs in a job that
    holds ``held`` bytes of weights on ``device`` and peaks at ``peak`` while sampling: on the
    device, where it may stay, when it fits beside the peak; moved there for the encode and back
    to the CPU when it fits only beside the weights (the sampling activations come after the
    encode); else on the CPU. The one place this is decided (``plan_memory``, the pipelines, the
    encode nodes)."""
    if peak + encoder_bytes <= budget:
        return device
    if held + encoder_bytes <= budget:
        return device + FOR_THE_ENCODE
    return "cpu"


def plan_memory(experts: list[WeightSizes], activations: int, budget: int, prefetch: bool = True,
                text_encoder_bytes: int = 0, device: str = "cuda", job: str = "this job") -> MemoryPlan:
    """The fewest streamed blocks whose predicted peak fits ``budget`` (bytes).

    ``activations``: everything the job allocates besides weights (``plan_sizes.dit_activation_bytes``
    plus the sampler's latents); ``text_encoder_bytes``: the text encoder, placed by
    ``encoder_device`` beside this plan. WanInputError, before any work, when even streaming
    every block does not fit: it names the smallest budget that does and what to lower.
    """
    n = min(len(w.blocks) for w in experts)
    for streamed in range(n + 1):
        peak = peak_bytes(experts, streamed, activations, prefetch)
        if peak <= budget:
            te = None
            if text_encoder_bytes:
                te = encoder_device(text_encoder_bytes, peak - activations, peak, budget, device)
            return MemoryPlan(n - streamed, streamed, peak, budget, te, prefetch=prefetch,
                              lora_bytes=sum(w.lora for w in experts))
    smallest = peak_bytes(experts, n, activations, prefetch)
    weights = smallest - activations
    raise WanInputError(
        f"{job} needs at least {smallest / GIB:.1f} GiB on {device} with every DiT block streamed "
        f"({weights / GIB:.1f} GiB of weights held, {activations / GIB:.1f} GiB of activations), "
        f"{budget / GIB:.1f} GiB available: lower the size or frame count, turn off batched CFG, or load a "
        "smaller quantization (fp8, a Q4_K GGUF)")
