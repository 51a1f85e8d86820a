"""Wan Multi-GPU in-process under ComfyUI 0.3.75's model management, with the pack imported as ComfyUI
imports it (a package named for its folder), on 2 CPU ranks of a local Ray: the node starts the
group, the ranks receive the job's objects under the pack's package name (as the sampler sends them)
and answer from one process group, and ComfyUI's unload_all_models (behind POST /free) ends the ranks.
The rank job is a stand-in for wan.parallel.run_rank, sent by value."""

from __future__ import annotations

import os
import sys
import time

import pytest
import torch
import torch.distributed as dist
from refs import comfy, pack_module

PACK = "wan_pack_multi_gpu_test"


def standin_rank(job, *, rank, world_size, local_rank):
    value = torch.tensor([float(job.steps) * (rank + 1)])
    dist.all_reduce(value)
    return {"job_type": f"{type(job).__module__}.{type(job).__qualname__}", "sum": value.item(),
            "pid": os.getpid(), "local_rank": local_rank}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def ray_module(monkeypatch):
    import ray

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    pack_module("wan.gpus.group", PACK).release_all()
    ray.shutdown()


def test_node_starts_ranks_that_comfyui_unload_releases(ray_module):
    mm = comfy("comfy.model_management")
    multi = pack_module("nodes.multi_gpu", PACK)
    group_module = pack_module("wan.gpus.group", PACK)
    (options,) = multi.WanMultiGPU().make("", 2, "cfg")
    assert options.devices == (0, 1) and options.layout == "cfg" and options.backend == "cpu"
    job = pack_module("wan.job.options", PACK).SamplingOptions(steps=3)
    answer = group_module.group_for(options).run(standin_rank, job)
    assert answer["job_type"] == f"{PACK}.wan.job.options.SamplingOptions", "the rank sees the pack's own class"
    assert answer["sum"] == 3 * 1 + 3 * 2 and answer["local_rank"] is None  # CPU ranks
    (again,) = multi.WanMultiGPU().make("", 2, "cfg")
    pids = list(group_module.group_for(again).pids)
    assert answer["pid"] in pids, "the node's second run keeps the same warm ranks"
    mm.unload_all_models()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "ComfyUI's unload released the ranks"
    assert group_module.release_all() == 0


def test_bad_gpu_list_is_refused_before_any_actor():
    multi = pack_module("nodes.multi_gpu", PACK)
    errors = pack_module("wan.errors", PACK)
    with pytest.raises(errors.WanInputError, match="gpus '0,x'"):
        multi.WanMultiGPU().make("0,x", 2, "ulysses")
