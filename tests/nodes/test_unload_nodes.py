"""Host memory after unloading, in-process with ComfyUI 0.3.75 on the CPU: Wan Unload Models and
ComfyUI's own unload path (what POST /free runs: unload_all_models, the node cache dropped, a
garbage collection) both let a block-swapped DiT and its host copies go, and only then empty
torch's pinned host cache (simulated here: no CUDA) and trim the heap."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest
import torch
from dit_fixtures import our_model, random_weights
from refs import comfy, import_pack
from wan.install.tiny import dit_config

PACK = "wan_pack_unload_test"


@pytest.fixture(scope="module")
def mm():
    return comfy("comfy.model_management")


def _module(name: str):
    import_pack(PACK)
    return sys.modules[f"{PACK}.{name}"]


@pytest.fixture
def common(monkeypatch):
    module = _module("nodes._common")
    monkeypatch.setattr(module, "MODEL_CACHE", module.ModelCache())
    return module


@pytest.fixture
def swapped(tmp_path):
    """{path: a model file, dit: a tiny DiT with its last block swapped, host: a weakref to one of its
    host copies}; a test pops the DiT to hold its only reference."""
    blockswap = _module("wan.runtime.blockswap")
    cfg = dit_config("t2v_1_3b")
    dit = our_model(cfg, random_weights(cfg, seed=1))
    swapper = blockswap.enable_block_swap(dit, 1, "cpu", "cpu", simulate=True)
    host = weakref.ref(swapper.blocks[len(dit.blocks) - 1].host[0])
    path = tmp_path / "dit.safetensors"
    path.write_bytes(b"weights")
    return {"path": str(path), "dit": dit, "host": host}


class PinnedCache:
    """torch's pinned host cache as CUDA would have it: records whether the host copy was gone
    when it was emptied."""

    def __init__(self, host):
        self.host, self.emptied_after_free = host, []

    def __call__(self):
        self.emptied_after_free.append(self.host() is None)


@pytest.fixture
def pinned(monkeypatch, swapped):
    # models of earlier tests (still listed with ComfyUI, or collected now) may have a release pending
    # on the timer thread: let it run before the simulated cache records, so what it records is this
    # test's own releases
    comfy("comfy.model_management").unload_all_models()
    gc.collect()
    _wait_for_release()
    cache = PinnedCache(swapped["host"])
    monkeypatch.setattr(torch._C, "_host_emptyCache", cache, raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    return cache


def _wait_for_release():
    timer = _module("wan.runtime.host_memory")._timer
    if timer is not None:
        timer.join()


def test_unload_node_drops_the_cache_and_the_pinned_copies(mm, common, swapped, pinned):
    path, dit, host = swapped["path"], swapped.pop("dit"), swapped["host"]
    cache = common.MODEL_CACHE
    assert cache.get("dit", path, (), lambda d=dit: d, offload=None) is dit  # block swap: never moved
    model = weakref.ref(dit)
    del dit
    gc.collect()
    assert model() is not None and host() is not None  # the cache holds them

    node = _module("nodes.unload").WanUnloadModels
    out = node().unload(value="after")
    assert out["result"] == ("after",) and "1 cached" in out["ui"]["text"][0]
    assert len(cache) == 0 and model() is None and host() is None
    # the last empty came once the host copy was gone (an earlier one may come from other tests'
    # models, collected meanwhile: emptying is harmless then, it just frees nothing of ours)
    assert pinned.emptied_after_free and pinned.emptied_after_free[-1] is True
    _wait_for_release()
    assert node.IS_CHANGED() != node.IS_CHANGED()  # never cached: every run unloads


def test_comfyui_free_path_releases_the_pinned_copies(mm, common, swapped, pinned):
    path, dit, host = swapped["path"], swapped.pop("dit"), swapped["host"]
    common.MODEL_CACHE.get("dit", path, (), lambda d=dit: d, offload=None)
    model = weakref.ref(dit)
    mm.unload_all_models()  # POST /free: ComfyUI unloads, the cache then holds the model weakly
    gc.collect()
    assert model() is not None  # the test's reference stands for ComfyUI's node cache
    del dit
    gc.collect()  # ComfyUI's worker collects once the node cache is reset
    _wait_for_release()
    assert model() is None and host() is None
    assert pinned.emptied_after_free and pinned.emptied_after_free[-1] is True
