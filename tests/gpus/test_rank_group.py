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


def standin_rank(job, *, rank, world_size, local_rank):
    value = torch.tensor([float(rank + job["add"])])
    dist.all_reduce(value)
    return {"rank": rank, "world_size": world_size, "local_rank": local_rank,
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
    assert first["rank"] == 0 and first["world_size"] == 2 and first["local_rank"] is None
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


@pytest.mark.parametrize("layout, n, degrees", [
    ("ulysses", 4, (1, 4, 1)), ("ring", 3, (1, 1, 3)), ("cfg", 2, (2, 1, 1)),
    ("cfg+ulysses", 4, (2, 2, 1)), ("cfg+ring", 6, (2, 1, 3))])
def test_layout_names_mean_these_degrees(layout, n, degrees):
    p = MultiGpuOptions(devices=tuple(range(n)), layout=layout, backend="cpu").parallel_layout()
    assert (p.cfg, p.ulysses, p.ring) == degrees and p.size == n


def test_cfg_alone_takes_two_gpus():
    with pytest.raises(WanInputError, match="layout 'cfg' runs cond and uncond on 2 GPUs, not 4"):
        MultiGpuOptions(devices=(0, 1, 2, 3), layout="cfg", backend="cpu").parallel_layout()
