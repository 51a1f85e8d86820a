"""Block swap through the nodes, in process, with the device simulated so that swapping really runs.

On a CPU-only server the main and offload devices are the same and block swap stands aside (nothing
to gain), so a server test of "swap equals plain" compares two plain runs. Here the pack is imported
as ComfyUI imports it, and its ``enable_block_swap`` is given ``simulate=True`` (the mode of
tests/runtime/test_blockswap.py: each swapped block is cloned in before its forward and dropped
after it, exactly the moves made on a GPU). The model goes through Wan Model Loader with
Wan Block Swap Args and Wan Sampler: the latent equals the plain model's bit for bit, the blocks
were streamed (the swapper's load count), and none stays resident afterwards.
"""

from __future__ import annotations

import functools

import pytest
import torch

from tiny_models import NAMES
from tiny_pack import STEPS, open_pack, t2v_latent, write_models

PACK = "wan_pack_blockswap_sampler_test"
ROLE = "t2v_gguf"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return write_models(tmp_path_factory, ROLE)


@pytest.fixture
def pack(models_dir, monkeypatch):
    mod = open_pack(PACK, models_dir, ROLE, monkeypatch)
    blockswap = mod("wan.runtime.blockswap")
    monkeypatch.setattr(blockswap, "enable_block_swap", functools.partial(blockswap.enable_block_swap, simulate=True))
    return mod


@pytest.mark.parametrize("prefetch,offload_embeddings", [(True, False), (False, True)])
def test_swapped_model_through_loader_and_sampler_equals_plain(pack, prefetch, offload_embeddings):
    name = NAMES[ROLE][1]
    loader = pack("nodes.loaders").WanModelLoader()
    (plain,) = loader.load(name, "fp32", "disabled", "main_device", "sdpa")
    args = pack("nodes.perf_options").WanBlockSwapArgs().make(2, offload_embeddings, prefetch)[0]
    (swapped,) = loader.load(name, "fp32", "disabled", "main_device", "sdpa", block_swap_args=args)
    assert swapped.block_swap and swapped.dit is not plain.dit
    swapper = swapped.dit._wan_block_swapper
    assert swapper.active  # the simulated device: swapping runs

    expected = t2v_latent(pack, plain)
    got = t2v_latent(pack, swapped)
    assert torch.equal(got, expected)
    # both blocks of the tiny model and, when asked, the text embedding (a T2V model has no image
    # embedding) streamed in at every model call: one per step (cfg 5 runs the conditional and
    # unconditional passes as one batch)
    assert swapper.loads == STEPS * (2 + (1 if offload_embeddings else 0)), swapper.loads
    assert swapper.resident_blocks() == []
