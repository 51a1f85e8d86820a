"""The loaders' model cache under ComfyUI's own model management, in-process (ComfyUI 0.3.75 on the
CPU): a model a node computes with is listed among ComfyUI's loaded models, ComfyUI's
unload_all_models (behind POST /free) unloads it to its offload device, after which the cache holds
it only as long as something else does, and a block-swapped model is listed but never moved. No
ComfyUI function is replaced."""

from __future__ import annotations

import gc
import sys

import pytest
import torch
from refs import comfy, import_pack


@pytest.fixture(scope="module")
def mm():
    return comfy("comfy.model_management")


@pytest.fixture
def common(monkeypatch):
    module = sys.modules[import_pack("wan_pack_memory_test").__name__ + ".nodes._common"]
    monkeypatch.setattr(module, "MODEL_CACHE", module.ModelCache())
    return module


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights")
    return str(path)


def _loader(loads: list, device="cpu"):
    def load():
        loads.append(1)
        return torch.nn.Linear(4, 4, device=device)
    return load


def _listed(mm, common, module) -> bool:
    entry = common.MODEL_CACHE.entry_of(module)
    return entry is not None and any(p is entry.patcher for p in mm.loaded_models())


def test_unload_all_models_reaches_the_cache(mm, common, weights):
    loads = []
    cache = common.MODEL_CACHE
    model = cache.get("vae", weights, (), _loader(loads), offload=torch.device("cpu"))
    assert cache.get("vae", weights, (), _loader(loads), offload=torch.device("cpu")) is model
    with common.on_device(model, mm.get_torch_device()):
        assert _listed(mm, common, model)
    mm.unload_all_models()
    assert not _listed(mm, common, model)
    # Still referenced (as by a cached ComfyUI node output): the same model, not read again.
    assert cache.get("vae", weights, (), _loader(loads), offload=torch.device("cpu")) is model
    with common.on_device(model, mm.get_torch_device()):
        assert _listed(mm, common, model)
    mm.unload_all_models()
    del model
    gc.collect()
    # Nothing refers to it any more (ComfyUI's node cache was reset): the next job loads the file.
    again = cache.get("vae", weights, (), _loader(loads), offload=torch.device("cpu"))
    assert len(loads) == 2 and len(cache) == 1
    assert not hasattr(mm.free_memory, "__wrapped__") and mm.free_memory.__module__ == "comfy.model_management"
    del again


def test_comfyui_moves_the_model_to_its_offload_device(mm, common, weights):
    # The "meta" device stands in for a second device: only ComfyUI's unload can put it there.
    model = common.MODEL_CACHE.get("dit", weights, (), _loader([]), offload=torch.device("meta"))
    with common.on_device(model, mm.get_torch_device()):
        assert model.weight.device.type == "cpu"
    mm.unload_all_models()
    assert model.weight.device.type == "meta"


def test_block_swapped_model_is_listed_but_never_moved(mm, common, weights):
    # Built on "meta": ComfyUI moving it anywhere would raise (meta tensors hold no data to copy).
    loads = []
    model = common.MODEL_CACHE.get("dit", weights, ("swap",), _loader(loads, "meta"), offload=None)
    assert _listed(mm, common, model)
    mm.unload_all_models()
    assert not _listed(mm, common, model) and model.weight.device.type == "meta"
    assert common.MODEL_CACHE.get("dit", weights, ("swap",), _loader(loads, "meta"), offload=None) is model
    assert _listed(mm, common, model) and len(loads) == 1
    mm.unload_all_models()
