"""Block swap on a HuMo DiT: each block's audio cross-attention is part of the block, so it moves with
it and the output stays bit-identical to the unswapped model (CPU, ``simulate=True`` as
test_blockswap); the audio projection is a small module outside the blocks and stays resident."""

import torch

from dit_fixtures import make_inputs, random_weights
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.runtime.blockswap import enable_block_swap

CFG = DIT_PRESETS["humo_17b"].tiny(num_layers=3)


def test_swap_of_humo_blocks_is_bit_exact():
    torch.set_num_threads(2)
    model = WanDiT(CFG)
    model.load_state_dict(random_weights(CFG))
    model.eval().requires_grad_(False)
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    g = torch.Generator().manual_seed(5)
    kw = dict(audio_embed=torch.randn(1, 2, 8, 5, 1280, generator=g),
              reference_latent=torch.randn(1, 16, 1, 4, 4, generator=g))
    with torch.no_grad():
        plain = model(inp.x, inp.t, inp.context, **kw)
        swapper = enable_block_swap(model, 2, "cpu", "cpu", prefetch=True, offload_embeddings=True, simulate=True)
        swapped = model(inp.x, inp.t, inp.context, **kw)
    assert torch.equal(swapped, plain)
    assert 1 not in swapper.resident_blocks() and 2 not in swapper.resident_blocks()
