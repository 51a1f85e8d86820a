"""Block swap: outputs bit-identical to the unswapped model, and swapped blocks resident only
around their own forward (checked on the CPU with ``simulate=True``, where "loading" a block clones
its tensors and "offloading" drops the clones, exactly the moves made on a GPU)."""

import pytest
import torch

from dit_fixtures import make_inputs, random_weights
from wan.models.dit.config import DIT_PRESETS
from wan.errors import WanInputError
from wan.models.dit.model import WanDiT
from wan.models.dit.loading import load_dit
from wan.runtime.blockswap import BlockSwapArgs, enable_block_swap
from wan.weights.fp8 import quantize_fp8

CFG = DIT_PRESETS["i2v_14b"].tiny(num_layers=4)


def _model(packed: bool = False) -> WanDiT:
    sd = random_weights(CFG)
    if packed:
        return load_dit(quantize_fp8(sd), dtype=torch.float32)
    m = WanDiT(CFG)
    m.load_state_dict(sd)
    return m.eval().requires_grad_(False)


def _run(model, inp):
    with torch.no_grad():
        return model(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y)


@pytest.mark.parametrize("packed,prefetch", [(False, True), (True, False)])
def test_swap_is_bit_exact_and_blocks_resident_only_while_running(packed, prefetch):
    torch.set_num_threads(2)
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    model = _model(packed)
    plain = _run(model, inp)
    masters = {i: [t.data_ptr() for t in model.blocks[i].state_dict().values()] for i in range(4)}

    swapper = enable_block_swap(model, 3, "cpu", "cpu", prefetch=prefetch, offload_embeddings=True,
                                simulate=True)
    seen = []

    def check(i):
        def hook(module, args):
            resident = swapper.resident_blocks()
            seen.append((i, resident))
            if i >= 1:  # a swapped block runs on fresh copies, not on its host tensors
                ptrs = [t.data_ptr() for t in module.state_dict().values()]
                assert not set(ptrs) & set(masters[i])
        return hook

    handles = [b.register_forward_pre_hook(check(i)) for i, b in enumerate(model.blocks)]
    swapped = _run(model, inp)
    swapped_again = _run(model, inp)
    for h in handles:
        h.remove()

    assert torch.equal(swapped, plain) and torch.equal(swapped_again, plain)
    expect = {0: [1] if prefetch else [], 1: [1, 2] if prefetch else [1],
              2: [2, 3] if prefetch else [2], 3: [3]}
    assert seen == [(i, expect[i]) for i in range(4)] * 2
    assert swapper.resident_blocks() == []  # nothing stays after a forward
    assert swapper.loads == 2 * (3 + 2)  # 3 blocks + text and image embeddings, per forward
    swapper.remove()
    assert torch.equal(_run(model, inp), plain)


def test_noop_when_device_is_offload_device_and_validation():
    model = _model()
    swapper = enable_block_swap(model, 2, "cpu", "cpu")
    assert not swapper.active and not model.blocks[0]._forward_pre_hooks
    with pytest.raises(WanInputError, match="has 4 blocks"):
        enable_block_swap(model, 5, "cpu", "cpu", simulate=True)
    with pytest.raises(WanInputError, match="blocks_to_swap"):
        BlockSwapArgs(blocks_to_swap=-1)
