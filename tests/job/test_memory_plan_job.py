"""wan.job.memory's side of the memory plan on a (simulated) CUDA device: the budget it reads, and
the VAE tile it picks by the VAE's own decode_bytes."""

import types

import pytest
import torch
from dit_fixtures import random_weights
from vae_fixtures import TINY21, random_weights as vae_weights

import wan.job.memory as memory
from wan.models.dit.config import DIT_PRESETS
from wan.models.vae.base import Tiling
from wan.models.vae.wan21 import WanVAE
from wan.models.dit.loading import load_dit
from wan.runtime.blockswap import BlockSwapArgs
from wan.runtime.plan_sizes import dit_activation_bytes, weight_sizes


def test_cuda_budget_is_the_free_memory_less_the_reserve(monkeypatch):
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=4)
    model = load_dit(random_weights(cfg), dtype=torch.bfloat16)
    model._wan_auto_swap = memory.AutoSwap(BlockSwapArgs(), torch.device("cuda"), torch.device("cpu"))
    free = 10**9
    monkeypatch.setattr(memory, "available_bytes", lambda device: free)
    placed = []
    monkeypatch.setattr(memory, "_place", lambda m, auto, n: placed.append(n))
    shape = (1, 16, 21, 60, 104)
    plan = memory.plan_job([model], shape, 2)
    # nothing of the model is on the (simulated) device yet, so the budget is the free memory less
    # the reserve; CUDA's fused RMS norm is assumed
    assert plan.budget == int(free * (1 - memory.DEVICE_RESERVE))
    w = weight_sizes(model)
    act = 4 * memory.nbytes(shape) + dit_activation_bytes(cfg, shape, 2, torch.bfloat16, fused_norms=True)
    assert plan.predicted_peak_bytes == w.other + sum(w.blocks[:plan.resident]) + act + (
        0 if plan.streamed == 0 else min(plan.streamed, 2) * max(w.blocks))
    assert placed == [plan.streamed]
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # unreadable: nothing planned
    assert memory.plan_job([model], shape, 2) is None


@pytest.fixture(scope="module")
def vae():
    model = WanVAE(TINY21)
    model.load_state_dict(vae_weights(model.state_dict(), seed=1))
    return model.eval()


def test_vae_tile_is_the_largest_that_fits(vae):
    latent = (1, 16, 3, 96, 96)  # 768x768
    whole = memory.decode_phase_bytes(vae, latent, None)
    assert memory.vae_tiling(vae, latent, whole) is None
    tiled = {px: memory.decode_phase_bytes(vae, latent, Tiling(px, 64)) for px in memory.VAE_TILES}
    assert tiled[512] < whole  # tiling the frame does save memory at this size
    tile = memory.vae_tiling(vae, latent, tiled[384])
    assert tile is not None and tile.tile_px == max(px for px in memory.VAE_TILES if tiled[px] <= tiled[384])
    assert memory.vae_tiling(vae, latent, 1).tile_px == memory.VAE_TILES[-1]  # nothing fits: the smallest


def test_weights_already_on_the_device_count_in_its_budget():
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=2)
    model = load_dit(random_weights(cfg), dtype=torch.bfloat16)
    held = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert memory._device_bytes(model, torch.device("cpu")) == held
    assert memory._device_bytes(model, torch.device("cuda")) == 0
    # tensors report "cuda:0" where the options say "cuda"
    on_gpu = types.SimpleNamespace(device=torch.device("cuda", 0))
    assert memory._on(on_gpu, torch.device("cuda")) and memory._on(on_gpu, torch.device("cuda:0"))
    assert not memory._on(on_gpu, torch.device("cuda:1"))
