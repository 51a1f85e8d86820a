"""The per-process entry of a multi-process job, for any launcher: torchrun (env:// rendezvous,
``init_from_env``), ``torch.multiprocessing.spawn`` or Ray actors (``run_rank`` with a tcp://
init_method). Each process holds its own DiT(s) on its own device; the prompts and the image
conditioning are computed once (rank 0) and broadcast; every rank returns the same latent.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from ..errors import WanInputError
from ..job import load
from ..job.options import LoadOptions, RunOptions, SamplingOptions
from ..job.sample import sample_video
from .job import check_parallel

_DITS: dict[tuple, torch.nn.Module] = {}  # warm models of a long-lived rank (Ray actor), by file and options


@dataclasses.dataclass
class RankJob:
    """One sampling job for every rank: the DiT file(s) and options each rank loads, and the inputs
    of ``sample_video``. ``text`` / ``image`` / ``latents`` are needed on rank 0 only (others may
    hold None); ``run.parallel`` is the layout."""

    dit: str
    load: LoadOptions
    sampling: SamplingOptions
    run: RunOptions
    text: Any = None  # PromptEmbeds
    image: Any = None  # VideoConditioning
    latents: torch.Tensor | None = None
    dit_low: str | None = None
    load_low: LoadOptions | None = None  # the low-noise expert's, when it differs from ``load``


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(local_rank: int, load_options: LoadOptions) -> torch.device:
    """The device of a rank: ``cuda:<local rank>`` on CUDA machines (WanInputError when the node has
    fewer GPUs than processes), else ``load_options``' device (the CPU)."""
    wanted = load_options.compute_device
    if wanted.type != "cuda":
        return wanted
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise WanInputError(f"process {local_rank} of this machine needs GPU {local_rank}, but only {count} "
                            f"GPU{'s are' if count != 1 else ' is'} present: start at most {count} processes per "
                            "machine (torchrun --nproc-per-node)")
    return torch.device("cuda", local_rank)


def init(rank: int, world_size: int, init_method: str, device: torch.device) -> None:
    """Join the process group (nccl for CUDA devices, gloo otherwise) unless already in one."""
    if dist.is_initialized():
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise WanInputError(f"this process is already rank {dist.get_rank()} of {dist.get_world_size()}, "
                                f"asked to be rank {rank} of {world_size}")
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kw = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend_for(device), init_method=init_method, rank=rank, world_size=world_size, **kw)


def env_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment ((0, 1, 0) without it)."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def _cpu(value):
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _cpu(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_cpu(v) for v in value))
    return value


def share(value, src: int = 0):
    """``value`` of rank ``src`` on every rank (tensors through the CPU, so none lands on a device
    of another rank); a rank that is not ``src`` passes anything (None)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    box = [_cpu(value) if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def load_dit(path: str, options: LoadOptions) -> torch.nn.Module:
    """The DiT of ``path`` for this rank, kept for the next job with the same file and options."""
    key = (os.path.abspath(path), options)
    if key not in _DITS:
        _DITS[key] = load.load_dit(path, options)
    return _DITS[key]


def release_models() -> None:
    """Drop the DiTs kept by ``load_dit`` (a launcher's unload path)."""
    _DITS.clear()


def run_rank(job: RankJob, rank: int, world_size: int, init_method: str = "env://", local_rank: int | None = None,
             callback: Callable | None = None) -> torch.Tensor:
    """Run ``job`` as rank ``rank`` of ``world_size``: join the group, load this rank's DiT(s) on its
    device, take rank 0's conditioning and sample. Returns the RAW latent (the same on every rank).
    Every rank must call it with the same job (rank 0's ``text`` / ``image`` / ``latents`` win)."""
    layout = job.run.parallel
    if layout is None:
        raise WanInputError("run_rank needs a parallel layout in job.run.parallel")
    layout.check_world(world_size)
    local = rank if local_rank is None else local_rank
    device = rank_device(local, job.load)
    init(rank, world_size, init_method, device)
    options = dataclasses.replace(job.load, device=device)
    dit = load_dit(job.dit, options)
    options_low = options if job.load_low is None else dataclasses.replace(job.load_low, device=device)
    dit_low = load_dit(job.dit_low, options_low) if job.dit_low else None
    check_parallel(layout, [m for m in (dit, dit_low) if m is not None], job.run)
    text, image, latents = share((job.text, job.image, job.latents) if rank == 0 else None)
    return sample_video(dit, text, image, job.sampling, job.run, dit_low=dit_low, latents=latents,
                        callback=callback if rank == 0 else None)
