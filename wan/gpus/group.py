"""A warm group of Ray actors, one per device, joined in one torch.distributed process group (NCCL on
GPUs, gloo on the CPU), that runs one job on every rank: ``fn(job, rank=, world_size=, local_rank=)``
(``wan.parallel.rank.run_rank``, which finds the group already formed), rank 0's answer returned. The group stays up between jobs and
goes with ``release`` (the nodes' unload path and POST /free call ``release_all``).

Ray is optional and imported by ``cluster.import_ray`` only when a group starts.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import WanError
from ..farm.cluster import connect, import_ray
from . import package_alias
from .layout import MultiGpuOptions

log = logging.getLogger(__name__)
PACK_ROOT = Path(__file__).resolve().parents[2]
JOIN_TIMEOUT_S = 120


class RankActor:
    """Ray actor body: one rank of the group; ``device`` index on CUDA, ignored on the CPU."""

    def __init__(self, rank: int, world_size: int, backend: str, device: int):
        self.rank, self.world_size, self.backend = rank, world_size, backend
        if backend == "cuda":
            torch.cuda.set_device(device)  # the actor sees every GPU; it is pinned to its own
            self.device = torch.device("cuda", device)
        else:
            self.device = torch.device("cpu")

    def rendezvous(self) -> str:
        """Rank 0: where the others meet it (one machine: the group lives beside its ComfyUI)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return f"tcp://127.0.0.1:{sock.getsockname()[1]}"

    def join(self, init_method: str) -> int:
        dist.init_process_group("nccl" if self.backend == "cuda" else "gloo", init_method=init_method,
                                rank=self.rank, world_size=self.world_size,
                                timeout=datetime.timedelta(seconds=JOIN_TIMEOUT_S))
        return os.getpid()

    def run(self, fn, job):
        local = self.device.index if self.device.type == "cuda" else None  # the actor sees every GPU
        return fn(job, rank=self.rank, world_size=self.world_size, local_rank=local)

    def leave(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


class RankGroup:
    def __init__(self, options: MultiGpuOptions):
        self.options = options
        package = __package__.rpartition(".wan.")[0]  # "" when this library is the top-level ``wan``
        env = package_alias.environment(package, str(PACK_ROOT)) if package else {}
        self.ray = connect(None, PACK_ROOT, env=env)
        actor = self.ray.remote(RankActor).options(num_cpus=0, num_gpus=0)
        self.actors = [actor.remote(rank, options.world_size, options.backend, device)
                       for rank, device in enumerate(options.devices)]
        try:
            where = self.ray.get(self.actors[0].rendezvous.remote())
            self.pids = self.ray.get([a.join.remote(where) for a in self.actors], timeout=JOIN_TIMEOUT_S + 30)
        except Exception:
            self.release()
            raise
        log.info("Wan Multi-GPU: %d ranks (%s, %s) ready", options.world_size, options.layout, options.backend)

    def run(self, fn, job):
        """``fn`` on every rank; rank 0's answer. A rank that dies ends the group (the next job starts a new one)."""
        refs = [a.run.remote(fn, job) for a in self.actors]
        try:
            return self.ray.get(refs)[0]
        except self.ray.exceptions.RayActorError as error:
            self.release()
            raise WanError(f"a rank of the Wan Multi-GPU group died during the job ({error}); "
                           "the group was released and the next job starts a new one") from error

    def release(self) -> None:
        actors, self.actors = self.actors, []
        for actor in actors:
            try:
                self.ray.get(actor.leave.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - it is killed below in any case
                pass
            self.ray.kill(actor)


_GROUPS: dict[MultiGpuOptions, RankGroup] = {}
_LOCK = threading.Lock()


def group_for(options: MultiGpuOptions) -> RankGroup:
    """The warm group for ``options``, started on first use; a group holding any of the same devices
    under other options is released first (a device belongs to one group)."""
    import_ray()
    if options.backend == "cuda":
        options.check_present(torch.cuda.device_count())
    with _LOCK:
        group = _GROUPS.get(options)
        if group is not None and group.actors:
            return group
        for other in [o for o in _GROUPS if set(o.devices) & set(options.devices)]:
            _GROUPS.pop(other).release()
        group = _GROUPS[options] = RankGroup(options)
        return group


def release_all() -> int:
    """Release every warm group (the unload path, POST /free); how many there were."""
    with _LOCK:
        groups = list(_GROUPS.values())
        _GROUPS.clear()
    for group in groups:
        group.release()
    return len(groups)
