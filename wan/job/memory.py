"""Memory a job will need, checked against what the machine has before the job allocates it.

A widget-legal job can ask for far more than the machine holds (8192x8192x1025 is 17.2 GB per latent;
a 4096x4096x97 decode holds 9.8 GB of bf16 frames before any float32 copy): refused here with the
sizes named, instead of dying on an allocation deep inside.

The counts are lower bounds: only buffers that certainly exist at the same time are added up, and a
job is refused only when that lower bound exceeds what is available (factor 1, no safety margin),
so a job that fits is never refused; one that passes may still run out of memory later (activations
are not counted). Available means: on the host, RAM available plus free swap (a job that fits only
with swap is slow but runs); on a CUDA device, its free memory plus what torch's caching allocator
holds unused. Where neither can be read (other devices, no /proc), nothing is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from dataclasses import dataclass

import torch

from ..errors import WanInputError
from ..models.vae.base import Tiling
from ..runtime.blockswap import BlockSwapArgs, enable_block_swap
from ..runtime.plan import FOR_THE_ENCODE, MemoryPlan, encoder_device, plan_memory
from ..runtime.plan_sizes import dit_activation_bytes, module_bytes, weight_sizes
from ..weights.lora import device_bytes as lora_device_bytes

log = logging.getLogger(__name__)

GB = 1e9
# Latent-sized float32 buffers every sampler holds at once while the model is called: the sample x,
# the model's velocity v, sigma * v and the denoised estimate x - sigma * v (flow_to_x0), besides
# the initial noise, which sample_video keeps for the whole run.
SAMPLING_LATENTS = 4
# share of a device's memory the plan leaves unplanned (see plan_job)
DEVICE_RESERVE = 0.06
# tile sides (pixels) the plan tries, largest first, when a decode does not fit whole
VAE_TILES = (512, 384, 256, 192, 128)


def nbytes(shape, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of a tensor of ``shape`` and ``dtype`` (Python integers: no overflow)."""
    return math.prod(int(n) for n in shape) * torch.empty((), dtype=dtype).element_size()


def _host_available() -> int | None:
    try:
        import psutil  # ComfyUI's dependency, not ours
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available + psutil.swap_memory().free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def host_total() -> int | None:
    """Physical RAM of the host in bytes, or None where it cannot be read."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().total)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def available_bytes(device: torch.device | str) -> int | None:
    """Bytes a job can still allocate on ``device`` (see the module docstring), or None if unknown.
    The one place memory is read: tests simulate a machine by replacing it."""
    device = torch.device(device)
    if device.type == "cpu":
        return _host_available()
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    return None


def require(needs: dict[str, int], what: str, inputs: str, advice: str = "") -> None:
    """WanInputError naming ``inputs`` and the sizes when ``needs`` (device -> bytes, the lower
    bound of one job phase) exceed what a device has available."""
    for device, needed in needs.items():
        available = available_bytes(device)
        if available is not None and needed > available:
            raise WanInputError(
                f"{inputs} needs {needed / GB:.1f} GB {what} on {device}, {max(available, 0) / GB:.1f} GB "
                f"available: lower {advice or 'the size or frame count'}")


def _add(needs: dict[str, int], device: torch.device, n: int) -> dict[str, int]:
    key = str(torch.device(device))
    needs[key] = needs.get(key, 0) + n
    return needs


def size_inputs(width: int, height: int, num_frames: int) -> str:
    return f"width {width}, height {height}, num_frames {num_frames}"


def check_sampling(shape, device: torch.device, width: int, height: int, num_frames: int) -> None:
    """sample_video's noise and latents [shape] on ``device``: ``SAMPLING_LATENTS`` float32
    latents there, and the noise drawn on the CPU first (so the host holds one more when the
    device is not the CPU)."""
    latent = nbytes(shape)
    needs = _add({}, device, SAMPLING_LATENTS * latent)
    if torch.device(device).type != "cpu":
        _add(needs, torch.device("cpu"), latent)
    require(needs, f"for the noise and latents ({SAMPLING_LATENTS} float32 latents {list(shape)} of "
                   f"{latent / GB:.1f} GB)", size_inputs(width, height, num_frames))


def decode_phase_bytes(vae, latent_shape, tile=None) -> int:
    """Bytes decode_frames holds on the VAE's device at once: the video it decodes with either the
    decoder's working buffers (``vae.decode_bytes``) or the two float32 copies that scale it."""
    out_shape = vae.decoded_shape(latent_shape)
    return max(vae.decode_bytes(latent_shape, tile), nbytes(out_shape, vae.dtype) + 2 * nbytes(out_shape))


def check_decode(vae, latent_shape, tile=None) -> None:
    """decode_frames of a latent [shape]: on the VAE's device the video it decodes and, at once,
    either the decoder's working buffers (``vae.decode_bytes``) or the two float32 copies that
    scale it to 0..1; the float32 frames it returns on the host."""
    out_shape = vae.decoded_shape(latent_shape)
    frames = nbytes(out_shape)
    device = vae.device
    needs = _add({}, device, decode_phase_bytes(vae, latent_shape, tile))
    if device.type != "cpu":
        _add(needs, torch.device("cpu"), frames)
    _b, _c, f, h, w = out_shape
    require(needs, "for the decoded frames and the decoder's buffers", "decoding a latent of "
            + size_inputs(w, h, f), "the size or frame count of the latent")


def check_encode(vae, num_frames: int, height: int, width: int, host_videos: int = 0,
                 inputs: str | None = None) -> None:
    """vae_encode of ``num_frames`` frames: on the VAE's device the float32 video scaled to -1..1
    (its two steps at once), its copy in the VAE's dtype and the encoder's working buffers
    (``vae.encode_bytes``); ``host_videos``: float32 frame sets [F, H, W, 3] the caller builds on
    the host first."""
    video = nbytes((num_frames, height, width, 3))
    device = vae.device
    cast = 0 if vae.dtype == torch.float32 else nbytes((num_frames, height, width, 3), vae.dtype)
    shape = (1, 3, num_frames, height, width)
    needs = _add({}, device, max(2 * video, video + cast + vae.encode_bytes(shape)))
    _add(needs, torch.device("cpu"), host_videos * video)
    require(needs, "for the frames and the encoder's buffers", inputs or size_inputs(width, height, num_frames))


# -- the memory plan of block swap "auto" (wan.runtime.plan) ----------------------------------------

@dataclass(frozen=True)
class AutoSwap:
    """What a block swap "auto" model was loaded with: re-planned per job by ``plan_job``."""

    args: BlockSwapArgs
    device: torch.device
    offload_device: torch.device


def _on(t: torch.Tensor, device: torch.device) -> bool:
    # "cuda" (no index, as LoadOptions names it) holds tensors that report "cuda:0"
    return t.device.type == device.type and (device.index is None or t.device.index == device.index)


def _device_bytes(module: torch.nn.Module, device: torch.device) -> int:
    seen = {}
    for t in [*module.parameters(), *module.buffers()]:
        if _on(t, device):
            seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def _streamed_now(dit) -> int:
    swapper = getattr(dit, "_wan_block_swapper", None)
    return len(swapper.blocks) if swapper is not None and swapper.active else 0


def _place(dit, auto: AutoSwap, streamed: int) -> None:
    if streamed == _streamed_now(dit) and getattr(dit, "_wan_block_swapper", None) is not None:
        return
    enable_block_swap(dit, streamed, auto.device, auto.offload_device, auto.args.prefetch,
                      auto.args.offload_embeddings)


def place_auto(dit, args: BlockSwapArgs, device, offload_device) -> None:
    """At load: remember the "auto" options on ``dit`` and place it for its weights alone (every
    block resident when they fit the device's free memory, else the fewest streamed that fit);
    each job re-plans with its activations. On the CPU (or an unreadable device) nothing streams."""
    auto = AutoSwap(args, torch.device(device), torch.device(offload_device))
    dit._wan_auto_swap = auto
    budget = available_bytes(auto.device) if auto.device != auto.offload_device else None
    streamed = 0
    if budget is not None:
        budget = int(budget * (1 - DEVICE_RESERVE))
        weights = weight_sizes(dit)
        try:
            streamed = plan_memory([weights], 0, budget, args.prefetch).streamed
        except WanInputError:
            streamed = len(dit.blocks)  # the job's plan says what to change
    if auto.device == auto.offload_device:
        dit.to(auto.device)
    else:
        _place(dit, auto, streamed)


def _job_budget(experts, auto: AutoSwap, budget: int | None) -> int | None:
    if budget is not None:
        return budget
    if auto.device.type == "cpu":
        return None
    available = available_bytes(auto.device)
    if available is None:
        return None
    # what the experts hold there is theirs to re-place; the reserve covers allocator
    # fragmentation and library workspaces, and the 2-4% the prediction fell under the peaks
    # measured on an H100 (README, Memory plan)
    return int((available + sum(_device_bytes(m, auto.device) for m in experts)) * (1 - DEVICE_RESERVE))


def job_plan(experts, shape, batch: int, budget: int | None = None, image_tokens: int = 0,
             vace_contexts: int = 0, job: str = "this job", loras=None,
             text_encoder_bytes: int = 0) -> MemoryPlan | None:
    """The plan of one sample_video run for its DiT experts, nothing applied (``plan_job`` applies
    it); None when a model has a manual block swap or none, or computes on the CPU without a
    ``budget``. ``loras``: each expert's LoRA chain, whose device bytes the plan holds beside the
    weights; ``text_encoder_bytes``: an encoder to place beside the plan (``plan.encoder_device``)."""
    autos = [getattr(m, "_wan_auto_swap", None) for m in experts]
    if not experts or any(a is None for a in autos):
        return None
    auto = autos[0]
    budget = _job_budget(experts, auto, budget)
    if budget is None:
        return None
    dit = experts[0]
    compute = dit.compute_dtype
    chains = loras if loras is not None else [()] * len(experts)
    weights = [dataclasses.replace(weight_sizes(m, compute.itemsize),
                                   lora=lora_device_bytes(m, chain, compute.itemsize) if chain else 0)
               for m, chain in zip(experts, chains)]
    activations = SAMPLING_LATENTS * nbytes(shape) + dit_activation_bytes(
        dit.cfg, shape, batch, compute, dit.residual_dtype, image_tokens, vace_contexts,
        max(w.dequant for w in weights), fused_norms=auto.device.type == "cuda")
    return plan_memory(weights, activations, budget, auto.args.prefetch, text_encoder_bytes,
                       device=str(auto.device), job=job)


def plan_job(experts, shape, batch: int, budget: int | None = None, image_tokens: int = 0,
             vace_contexts: int = 0, job: str = "this job", loras=None) -> MemoryPlan | None:
    """``job_plan`` applied to the experts (blocks re-placed when the count changes) and logged in
    one line, which says where the job's text encoder ran when ``place_encoder`` placed it
    (``budget`` None: what the device has available plus what the experts already hold there).
    WanInputError, before any work, when even streaming every block does not fit."""
    plan = job_plan(experts, shape, batch, budget, image_tokens, vace_contexts, job, loras)
    if plan is None:
        return None
    ran = getattr(experts[0], "_wan_encoder_ran", None)
    if ran is not None:
        plan = dataclasses.replace(plan, text_encoder_device=ran)
        del experts[0]._wan_encoder_ran
    for m in experts:
        _place(m, m._wan_auto_swap, plan.streamed)
    log.info("%s", plan)
    return plan


def encoder_bytes(encoder) -> int:
    """Bytes of a text encoder (``TextEncoder``: its ``model``) or CLIP vision's tensors as held."""
    return module_bytes(getattr(encoder, "model", encoder))


def place_encoder(encoder, experts, shape, batch: int, budget: int | None = None, **job) -> str | None:
    """Where ``encoder`` runs for this job (``plan.encoder_device`` beside the job's plan) and
    moves it there: None (left where it is) when the job has no plan. For ``encoder_on``."""
    plan = job_plan(experts, shape, batch, budget, text_encoder_bytes=encoder_bytes(encoder), **job)
    return None if plan is None else plan.text_encoder_device


def encoder_device_now(encoder, device) -> str:
    """Where an encoder runs outside a planned job (the encode nodes, which see no DiT):
    ``plan.encoder_device`` against what ``device`` has available now, the encoder's own bytes
    there included, less the reserve; ``device`` when that cannot be read."""
    device = torch.device(device)
    available = available_bytes(device) if device.type != "cpu" else None
    if available is None:
        return str(device)
    module = getattr(encoder, "model", encoder)
    budget = int((available + _device_bytes(module, device)) * (1 - DEVICE_RESERVE))
    return encoder_device(encoder_bytes(encoder), 0, 0, budget, str(device))


@contextlib.contextmanager
def encoder_on(encoder, where: str | None, device: torch.device | str, dit=None):
    """Run ``encoder`` where ``place_encoder`` said: on ``device`` (left there), on ``device`` for
    the encode and then on the CPU, or on the CPU; ``where`` None: where it is. The DiT ``dit``
    carries the choice to the job's plan line."""
    module = getattr(encoder, "model", encoder)
    if where is None:
        yield encoder
        return
    module.to("cpu" if where == "cpu" else device)
    if dit is not None:
        dit._wan_encoder_ran = where
    try:
        yield encoder
    finally:
        if where.endswith(FOR_THE_ENCODE):
            module.to("cpu")


def vae_tiling(vae, latent_shape, budget: int | None = None, overlap_px: int = 64):
    """The largest VAE tile (None: untiled) whose decode of ``latent_shape`` fits ``budget`` (None:
    what the VAE's device has available), by the VAE's own ``decode_bytes``; the smallest tile
    when none fits (``check_decode`` then names the sizes)."""
    budget = available_bytes(vae.device) if budget is None else budget
    if budget is None:
        return None
    choices = [None] + [Tiling(px, min(overlap_px, px // 4)) for px in VAE_TILES]
    for tile in choices:
        if decode_phase_bytes(vae, latent_shape, tile) <= budget:
            return tile
    return choices[-1]
