"""The Wan Multi-GPU group's lifecycle on a real local Ray with 2 CPU ranks (gloo): the ranks form
one process group (an all-reduce across them gives the sum of both ranks' values), the group stays
warm between jobs (the same two processes), and release ends them. The job here is a stand-in for
``wan.parallel.run_rank``, sent by value."""

from __future__ import annotations

import os
import sys
import time

import pytest
import torch
import torch.distributed as dist

from wan.errors import WanInputError
from wan.gpus import group as gpu_group
from wan.gpus.layout import MultiGpuOptions


def standin_rank(job, *, rank, world_size, layout, device):
    value = torch.tensor([float(rank + job["add"])])
    dist.all_reduce(value)
    return {"rank": rank, "world_size": world_size, "layout": layout, "device": str(device),
            "sum": value.item(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def ray_module():
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    gpu_group.release_all()
    ray.shutdown()


def test_group_forms_stays_warm_and_is_released(ray_module):
    options = MultiGpuOptions(devices=(0, 1), layout="cfg", backend="cpu")
    first = gpu_group.group_for(options).run(standin_rank, {"add": 10})
    assert first["rank"] == 0 and first["world_size"] == 2 and first["layout"] == "cfg"
    assert first["sum"] == (0 + 10) + (1 + 10), "both ranks took part in one all-reduce"
    group = gpu_group.group_for(options)
    second = group.run(standin_rank, {"add": 1})
    assert second["sum"] == 3
    assert second["pid"] == first["pid"] and sorted(group.pids) == sorted(set(group.pids)), "the same warm ranks"
    assert first["pid"] != os.getpid()
    pids = list(group.pids)
    assert gpu_group.release_all() == 1
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "release ends the rank processes"
    third = gpu_group.group_for(options)
    assert third is not group and third.run(standin_rank, {"add": 0})["sum"] == 1


def test_options_refuse_bad_layouts_and_absent_gpus():
    with pytest.raises(WanInputError, match="layout 'pipeline'"):
        MultiGpuOptions(devices=(0, 1), layout="pipeline")
    with pytest.raises(WanInputError, match="3 devices do not split"):
        MultiGpuOptions(devices=(0, 1, 2), layout="cfg+ulysses")
    with pytest.raises(WanInputError, match=r"gpus \[0, 3\]: only 2 CUDA device\(s\) here"):
        MultiGpuOptions(devices=(0, 3)).check_present(2)
    with pytest.raises(WanInputError, match="no CUDA device here"):
        MultiGpuOptions(devices=(0,)).check_present(0)
