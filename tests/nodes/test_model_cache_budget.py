"""The loaders' model cache keeps a RAM budget, in-process (ComfyUI 0.3.75 on the CPU): past it the
least recently used model is dropped (one a node computes with stays), the budget comes from
$WAN_MODEL_CACHE_GB or half the physical RAM, and a dropped model still referenced elsewhere keeps
working."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from refs import comfy, import_pack

SIDE = 100  # a Linear(100, 100) without bias: 10,000 float32 = 40,000 bytes
MODEL = SIDE * SIDE * 4


@pytest.fixture
def common():
    module = sys.modules[import_pack("wan_pack_cache_budget").__name__ + ".nodes._common"]
    yield module
    comfy("comfy.model_management").unload_all_models()


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name in "abc":
        paths[name] = tmp_path / f"{name}.bin"
        paths[name].write_bytes(b"w")
    return {k: str(v) for k, v in paths.items()}


def get(cache, path, loads):
    def load():
        loads.append(os.path.basename(path))
        return torch.nn.Linear(SIDE, SIDE, bias=False)
    return cache.get("dit", path, (), load, offload=torch.device("cpu"))


def test_least_recently_used_out_first(common, files):
    cache, loads = common.ModelCache(budget=2 * MODEL), []
    a, b = get(cache, files["a"], loads), get(cache, files["b"], loads)
    assert get(cache, files["a"], loads) is a  # a used after b
    get(cache, files["c"], loads)  # three models over a budget of two: b goes
    assert len(cache) == 2 and loads == ["a.bin", "b.bin", "c.bin"]
    assert get(cache, files["a"], loads) is a
    assert get(cache, files["b"], loads) is not b and loads[-1] == "b.bin"
    assert b(torch.ones(1, SIDE)).shape == (1, SIDE)  # still held by the test (as by ComfyUI's node cache)


def test_a_model_in_use_is_never_dropped(common, files, monkeypatch):
    cache, loads = common.ModelCache(budget=0), []
    monkeypatch.setattr(common, "MODEL_CACHE", cache)
    a = get(cache, files["a"], loads)
    with common.on_device(a, torch.device("cpu")):
        get(cache, files["b"], loads)
        get(cache, files["c"], loads)
        assert cache.entry_of(a) is not None and len(cache) == 2  # a (busy) and c (just loaded)
    get(cache, files["b"], loads)
    assert cache.entry_of(a) is None and len(cache) == 1


def test_budget_from_the_environment(common, files, monkeypatch):
    monkeypatch.setenv("WAN_MODEL_CACHE_GB", str(2 * MODEL / 1e9))
    cache, loads = common.ModelCache(), []
    for name in "abc":
        get(cache, files[name], loads)
    assert len(cache) == 2
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv("WAN_MODEL_CACHE_GB", bad)
        with pytest.raises(ValueError, match=r"^WAN_MODEL_CACHE_GB must be a number of GB >= 0"):
            get(cache, files["a"], loads)


def test_default_budget_is_half_the_ram(common, monkeypatch):
    monkeypatch.delenv("WAN_MODEL_CACHE_GB", raising=False)
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert common.cache_budget() == pytest.approx(ram / 2, rel=1e-3)
