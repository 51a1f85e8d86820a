"""Wan Multi-GPU through the nodes, in process, with real ranks: the pack imported as ComfyUI imports
it, Wan Model Loader -> Wan Sampler with a Wan Multi-GPU group of 2 Ray actors (gloo on the CPU),
each loading the tiny GGUF file itself and running ``wan.parallel.rank.run_rank``. The latent equals
the same sampler run in this one process (fp32; the issue's bar: 1e-5 of max|latent|)."""

from __future__ import annotations

import functools
import sys

import pytest
import torch

from refs import comfy, import_pack, pack_module
from tiny_models import NAMES, write_set

PACK = "wan_pack_multi_gpu_sampler_test"
ROLE = "t2v_gguf"
W, H, FRAMES, STEPS = 32, 32, 5, 3


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("comfy_models")
    write_set(d, only=(ROLE,))
    return d


@pytest.fixture
def pack(models_dir, monkeypatch):
    import ray

    torch.set_num_threads(2)
    folder_paths = comfy("folder_paths")
    import_pack(PACK)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "diffusion_models",
                        ([str(models_dir / NAMES[ROLE][0])], {".safetensors", ".gguf"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    mod = functools.partial(pack_module, name=PACK)
    monkeypatch.setattr(mod("nodes.loaders"), "MODEL_CACHE", mod("nodes._common").ModelCache())
    yield mod
    mod("wan.gpus.group").release_all()
    ray.shutdown()


def _latent(pack, model, multi_gpu=None) -> torch.Tensor:
    conditioning = pack("wan.job.conditioning")
    g = torch.Generator().manual_seed(9)
    text = conditioning.PromptEmbeds(torch.randn(1, 512, 4096, generator=g), torch.randn(1, 512, 4096, generator=g))
    embeds = conditioning.t2v_conditioning(W, H, FRAMES, 16)
    out = pack("nodes.sampler").WanSampler().sample(model, text, embeds, STEPS, 5.0, 5.0, 3, "unipc", 1.0,
                                                    multi_gpu=multi_gpu)
    return out[0]["samples"]


def test_two_ranks_equal_one_process(pack):
    (model,) = pack("nodes.loaders").WanModelLoader().load(NAMES[ROLE][1], "fp32", "disabled", "main_device", "sdpa")
    expected = _latent(pack, model)
    for layout in ("cfg", "ring"):
        (group,) = pack("nodes.multi_gpu").WanMultiGPU().make("", 2, layout)
        got = _latent(pack, model, group)
        err = ((got - expected).abs().max() / expected.abs().max()).item()
        assert err <= 1e-5, (layout, err)
        print(f"{layout}: max|diff|/max|ref| = {err:.2e}")
