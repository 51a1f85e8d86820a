"""The option objects of the one front door: ``LoadOptions`` for ``wan.job.load``, ``SamplingOptions``
and ``RunOptions`` for ``wan.job.sample``. Nodes, the CLI, the Python API and the benches build these
and nothing else, so a feature reachable from one is reachable from all.

Frozen: a loaded model is cached by its file and its LoadOptions, so they must hash and compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import WanInputError
from ..finite import check_fields
from ..parallel.layout import ParallelLayout
from ..runtime.blockswap import BlockSwapArgs
from ..runtime.cache import CacheArgs
from ..runtime.compile import TorchCompileArgs
from ..runtime.dequant_cache import check_mode as check_dequant_cache
from ..runtime.feta import FetaArgs
from ..sampling.context import ContextOptions
from ..sampling.experts import check_switch
from ..sampling.guidance import GuidanceOptions
from ..sampling.noise import check_stream
from ..sampling.samplers import SAMPLERS
from ..sampling.schedules import check_scheduler, check_sigmas, sigmas_from_timesteps, steps_to_run
from ..values import first_problem, refuse, seed_problem, steps_problem
from ..weights.lora import Lora, check_strength

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
QUANTIZATIONS = ("disabled", "fp8_e4m3fn", "fp8_e4m3fn_fast")


def precision(name: str) -> torch.dtype:
    """The dtype of a precision name ("bf16", "fp16", "fp32"); WanInputError for anything else."""
    if name not in PRECISIONS:
        raise WanInputError(f"precision {name!r} is not one of {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


@dataclass(frozen=True)
class LoadOptions:
    """How a model file becomes a ready module.

    dtype: storage and compute dtype of the weights that are not quantized. device: where the
    model computes (None: CUDA when available, else the CPU). offload_device: where swapped blocks
    live. quantization: "fp8_e4m3fn" stores a safetensors DiT's block weights as fp8 on load (GGUF
    and fp8 files keep their own format); "fp8_e4m3fn_fast" also multiplies in fp8. attention: the
    attention mode of the DiT (``attention_backends.ATTENTION_MODES``; "auto": the fastest kernel
    the computing device runs, else SDPA). block_swap / compile: runtime options applied at load; block
    swap "auto" (the default) places the model for its weights alone at load and lets each job's memory
    plan re-place it (``wan.job.memory.plan_job``); on the CPU it streams nothing.
    dequant_cache: "off", "on" or "auto": keep the expanded weights of packed (GGUF, fp8, nvfp4)
    blocks that stay on the device, trading their compute-dtype size for no per-step expansion
    (``wan.runtime.dequant_cache``).
    """

    dtype: torch.dtype = torch.bfloat16
    device: str | torch.device | None = None
    offload_device: str | torch.device = "cpu"
    quantization: str = "disabled"
    attention: str = "auto"
    block_swap: BlockSwapArgs | None = BlockSwapArgs()  # "auto": each job's memory plan decides
    compile: TorchCompileArgs | None = None
    fp16_accumulation: bool = False
    dequant_cache: str = "off"

    def __post_init__(self):
        check_dequant_cache(self.dequant_cache)
        if self.dtype not in PRECISIONS.values():
            raise WanInputError(f"dtype {self.dtype} is not one of bf16, fp16, fp32")
        if self.quantization not in QUANTIZATIONS:
            raise WanInputError(f"quantization {self.quantization!r} is not one of {', '.join(QUANTIZATIONS)}")

    @property
    def swaps(self) -> bool:
        """Whether some of the model lives on the offload device and is streamed in while computing."""
        b = self.block_swap
        if b is not None and b.auto:  # streams only where the model computes away from its offload device
            return self.compute_device != torch.device(self.offload_device)
        return b is not None and (b.blocks_to_swap > 0 or b.offload_embeddings)

    @property
    def compute_device(self) -> torch.device:
        """``device``, or CUDA when available, else the CPU."""
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def build_device(self) -> torch.device:
        """Where the weights go while the model is built: the offload device when blocks swap (the
        swapper then brings the resident part to the compute device), else the compute device."""
        return torch.device(self.offload_device) if self.swaps else self.compute_device


@dataclass(frozen=True)
class SamplingOptions:
    """The numbers of one sampling run (what a KSampler widget row holds)."""

    steps: int = 30
    cfg: float = 5.0
    shift: float = 5.0
    seed: int = 0
    sampler: str = "unipc"
    denoise: float = 1.0
    cfg_low: float | None = None  # Wan2.2 A14B: cfg of the low-noise expert (None: cfg)
    boundary: float | None = None  # Wan2.2 A14B: expert switch (None: the official default)
    batch_cfg: bool = True  # cond and uncond in one doubled batch
    # schedule (see wan.sampling.schedules): a name of SCHEDULERS ("default": the sampler's own grid),
    # or an explicit schedule replacing steps/scheduler/denoise: ComfyUI SIGMAS (ending at 0; shift
    # ignored too) or lightx2v timesteps on the 1000 scale (shifted by ``shift``). Stored as tuples.
    scheduler: str = "default"
    sigmas: tuple | None = None
    timesteps: tuple | None = None
    # noise drawn while sampling: "comfy" (as ComfyUI's KSampler) or "diffusers" (one CPU stream);
    # None: the sampler's own (samplers.SAMPLER_NOISE). See sampling/noise.py.
    noise: str | None = None
    # -- experts and guidance per step (all optional; the defaults keep a plain run) --
    switch_step: int | None = None  # Wan2.2 A14B: the low-noise expert from this step on (instead of boundary)
    cfg_per_step: tuple[float, ...] | None = None  # one cfg per step of the run (replaces cfg and cfg_low)
    shift_low: float | None = None  # Wan2.2 A14B: shift of the low-noise expert's schedule (None: shift)
    sampler_low: str | None = None  # Wan2.2 A14B: sampler of the low-noise expert's steps (None: sampler)
    guidance: GuidanceOptions | None = None  # CFG-Zero*, skip-layer guidance, NAG

    def __post_init__(self):
        check_fields(self)  # NaN/Inf first: denoise NaN would fail deep in the step count
        # then the counts, before anything is sized by them (1e9 steps: a schedule of 7.45 GiB)
        refuse(first_problem(steps_problem(self.steps), seed_problem(self.seed)))
        if self.sampler not in SAMPLERS:
            raise WanInputError(f"unknown sampler {self.sampler!r}; expected one of {', '.join(SAMPLERS)}")
        if self.noise is not None:
            check_stream(self.noise)
        self._check_schedule()
        self._check_experts()

    def _check_schedule(self):
        check_scheduler(self.scheduler)
        if self.sigmas is not None and self.timesteps is not None:
            raise WanInputError("give sigmas or timesteps, not both")
        if self.sigmas is not None:
            object.__setattr__(self, "sigmas", tuple(check_sigmas(self.sigmas).tolist()))
        if self.timesteps is not None:
            sigmas_from_timesteps(self.timesteps, self.shift)
            object.__setattr__(self, "timesteps", tuple(float(t) for t in self.timesteps))

    def _check_experts(self) -> None:
        # every expert and per-step option is checked here, before any model work
        run = steps_to_run(self.steps, self.denoise)
        check_switch(run, self.switch_step, self.boundary)
        if self.cfg_per_step is not None:
            object.__setattr__(self, "cfg_per_step", tuple(float(c) for c in self.cfg_per_step))
            if len(self.cfg_per_step) != run:
                raise WanInputError(f"cfg_per_step has {len(self.cfg_per_step)} values for a run of {run} steps: "
                                    "give one cfg per step")
            if self.cfg_low is not None:
                raise WanInputError("give the cfg of each step either in cfg_per_step or as cfg/cfg_low, not both")
        if self.sampler_low is not None and self.sampler_low not in SAMPLERS:
            raise WanInputError(f"unknown sampler_low {self.sampler_low!r}; expected one of {', '.join(SAMPLERS)}")
        if self.shift_low is not None and not self.shift_low > 0:
            raise WanInputError(f"shift_low must be > 0, got {self.shift_low!r}")
        if self.guidance is not None and not isinstance(self.guidance, GuidanceOptions):
            raise WanInputError(f"guidance must be a GuidanceOptions, got {type(self.guidance).__name__}")

    @property
    def split_sampling(self) -> bool:
        """Whether the low-noise expert runs its own sampler on its own schedule (shift_low or
        sampler_low given), as two KSamplerAdvanced nodes split at a step do in ComfyUI."""
        return self.shift_low is not None or self.sampler_low is not None

    def cfg_of(self, index: int, low: bool) -> float:
        """The cfg of step ``index`` of the run, on the low-noise expert when ``low``."""
        if self.cfg_per_step is not None:
            return self.cfg_per_step[index]
        return self.cfg_low if low and self.cfg_low is not None else self.cfg

    @property
    def needs_negative(self) -> bool:
        """Whether some step guides with a negative prompt (a cfg != 1, or NAG)."""
        cfgs = self.cfg_per_step if self.cfg_per_step is not None else (self.cfg, self.cfg_low)
        nag = self.guidance is not None and self.guidance.nag is not None and self.guidance.nag.scale != 0
        return nag or any(c is not None and float(c) != 1.0 for c in cfgs)


@dataclass(frozen=True)
class RunOptions:
    """What rides on the model for one run: LoRAs as (Lora, strength) pairs (``loras_low``: those of
    the Wan2.2 low-noise expert), step caching, Enhance-A-Video and context windows.
    offload_device: where the step cache keeps its residuals when ``cache.offload_residuals``.
    parallel: the split of each DiT forward over torch.distributed processes (``wan.parallel``;
    None: one process). memory_budget: bytes the memory plan of a block swap "auto" model may use on
    its device (None: what the device has free); planned against even on the CPU, to simulate a device.
    sdpa_edge_steps: the first and last this many steps run SDPA attention when the model's attention
    is 8-bit (``wan.runtime.edge_steps``; 0: every step its kernel)."""

    loras: tuple = ()
    cache: CacheArgs | None = None
    feta: FetaArgs | None = None
    context: ContextOptions | None = None
    loras_low: tuple = ()
    offload_device: str | torch.device = "cpu"
    parallel: ParallelLayout | None = None
    memory_budget: int | None = None
    sdpa_edge_steps: int = 0

    def __post_init__(self):
        n = self.sdpa_edge_steps
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise WanInputError(f"sdpa_edge_steps must be a whole number >= 0, got {self.sdpa_edge_steps!r}")
        if self.parallel is not None and not isinstance(self.parallel, ParallelLayout):
            raise WanInputError(f"parallel must be a ParallelLayout, got {type(self.parallel).__name__}")
        if self.memory_budget is not None and (isinstance(self.memory_budget, bool)
                                               or not isinstance(self.memory_budget, int) or self.memory_budget <= 0):
            raise WanInputError(f"memory_budget must be a number of bytes > 0, got {self.memory_budget!r}")
        for item in tuple(self.loras) + tuple(self.loras_low):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Lora):
                check_strength(*item)
