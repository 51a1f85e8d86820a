"""Wan Multi-GPU through the nodes, in process, with real ranks: the pack imported as ComfyUI imports
it, Wan Model Loader -> Wan Sampler with a Wan Multi-GPU group of 2 Ray actors (gloo on the CPU),
each loading the tiny GGUF file itself and running ``wan.parallel.rank.run_rank``. The latent equals
the same sampler run in this one process (fp32; the issue's bar: 1e-5 of max|latent|)."""

from __future__ import annotations

import sys

import pytest
import torch

from tiny_models import NAMES
from tiny_pack import open_pack, t2v_latent, write_models

PACK = "wan_pack_multi_gpu_sampler_test"
ROLE = "t2v_gguf"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return write_models(tmp_path_factory, ROLE)


@pytest.fixture
def pack(models_dir, monkeypatch):
    import ray

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    mod = open_pack(PACK, models_dir, ROLE, monkeypatch)
    yield mod
    mod("wan.gpus.group").release_all()
    ray.shutdown()


def test_two_ranks_equal_one_process(pack):
    (model,) = pack("nodes.loaders").WanModelLoader().load(NAMES[ROLE][1], "fp32", "disabled", "main_device", "sdpa")
    expected = t2v_latent(pack, model)
    for layout in ("cfg", "ring"):
        (group,) = pack("nodes.multi_gpu").WanMultiGPU().make("", 2, layout)
        got = t2v_latent(pack, model, multi_gpu=group)
        err = ((got - expected).abs().max() / expected.abs().max()).item()
        assert err <= 1e-5, (layout, err)
        print(f"{layout}: max|diff|/max|ref| = {err:.2e}")
