"""Block swap on the Wan family's derived models: Animate (the face adapter runs between the blocks,
the pose latents enter at the patch embedding), the Fun camera adapter and the Fun 2.2 5B control
model (48-channel latents, a reference frame of tokens in front of the video's). Each swapped model's
output must equal the unswapped model's bit for bit, with prefetch on and off, with the text and
image embeddings offloaded, and swapped blocks resident only around their own forward (simulated on
the CPU as in test_blockswap: "loading" clones a block's tensors, "offloading" drops the clones).

The Animate face adapter, motion encoder and face encoder are not blocks: they stay resident (the
adapter's fuser blocks are small; the encoders run once per run under ``face_memo``).
"""

import pytest
import torch

from dit_fixtures import make_inputs, random_weights
from wan.models.dit.config import DIT_PRESETS, FACE_EVERY
from wan.models.dit.loading import load_dit
from wan.models.dit.model import WanDiT
from wan.runtime.blockswap import enable_block_swap
from wan.weights.fp8 import quantize_fp8

torch.set_num_threads(2)

ANIMATE = DIT_PRESETS["wan22_animate_14b"].tiny(num_layers=2 * FACE_EVERY)  # face adapter after blocks 0 and 5
CAMERA = DIT_PRESETS["camera_1_3b"].tiny(num_layers=3)
FUN_5B = DIT_PRESETS["wan22_fun_control_5b"].tiny(num_layers=3)


def _model(cfg, sd, packed=False) -> WanDiT:
    if packed:
        return load_dit(quantize_fp8(sd), dtype=torch.float32)
    m = WanDiT(cfg)
    m.load_state_dict(sd, strict=True)
    return m.eval().requires_grad_(False)


def _inputs(cfg):
    inp = make_inputs(cfg, frames=3, height=4, width=4)
    g = torch.Generator().manual_seed(21)
    kw = dict(clip_fea=inp.clip_fea, y=inp.y)
    if cfg.is_animate:
        kw["pose_latents"] = torch.randn(1, cfg.out_dim, 2, 4, 4, generator=g)
        kw["face_pixels"] = torch.rand(1, 3, 1, 512, 512, generator=g) * 2 - 1
    if cfg.camera_in_dim:
        kw["camera"] = torch.randn(1, cfg.camera_in_dim, 3, 8 * 4, 8 * 4, generator=g)
    if cfg.ref_in_dim:
        kw["reference"] = torch.randn(1, cfg.ref_in_dim, 4, 4, generator=g)
    return inp, kw


def _run(model, inp, kw):
    with torch.no_grad():
        return model(inp.x, inp.t, inp.context, **kw)


CASES = [  # (config, blocks to swap, prefetch, packed fp8)
    pytest.param(ANIMATE, 10, True, False, id="animate-all-prefetch"),
    pytest.param(ANIMATE, 6, False, False, id="animate-6-no-prefetch"),
    pytest.param(ANIMATE, 7, True, True, id="animate-7-fp8"),
    pytest.param(CAMERA, 3, True, False, id="camera-prefetch"),
    pytest.param(CAMERA, 2, False, True, id="camera-fp8"),
    pytest.param(FUN_5B, 3, True, False, id="fun5b-prefetch"),
    pytest.param(FUN_5B, 2, False, True, id="fun5b-fp8"),
]


@pytest.mark.parametrize("cfg,n_swap,prefetch,packed", CASES)
def test_swap_is_bit_exact_with_the_family_inputs(cfg, n_swap, prefetch, packed):
    sd = random_weights(cfg, seed=5)
    inp, kw = _inputs(cfg)
    model = _model(cfg, sd, packed)
    plain = _run(model, inp, kw)
    # the family's own inputs change the output: the comparison below sees them
    bare = {k: v for k, v in kw.items() if k in ("clip_fea", "y")}
    assert (_run(model, inp, bare) - plain).abs().max() > 1e-4

    n = cfg.num_layers
    first = n - n_swap
    masters = {i: {t.data_ptr() for t in model.blocks[i].state_dict().values()} for i in range(n)}
    swapper = enable_block_swap(model, n_swap, "cpu", "cpu", prefetch=prefetch, offload_embeddings=True,
                                simulate=True)
    seen = []

    def check(i):
        def hook(module, args):
            seen.append((i, swapper.resident_blocks()))
            if i >= first:  # a swapped block runs on fresh copies, not on its host tensors
                assert not {t.data_ptr() for t in module.state_dict().values()} & masters[i]
        return hook

    handles = [b.register_forward_pre_hook(check(i)) for i, b in enumerate(model.blocks)]
    face_seen = []
    if cfg.is_animate:  # the face adapter runs after block i (i % 5 == 0) while block i is resident
        for j, fuser in enumerate(model.face_adapter.fuser_blocks):
            handles.append(fuser.register_forward_pre_hook(
                lambda m, a, j=j: face_seen.append((j * FACE_EVERY, swapper.resident_blocks()))))
    with model.face_memo() if cfg.is_animate else torch.no_grad():
        swapped = _run(model, inp, kw)
        swapped_again = _run(model, inp, kw)
    for h in handles:
        h.remove()

    assert torch.equal(swapped, plain) and torch.equal(swapped_again, plain)

    def expect(i):  # swapped blocks resident when block i starts: itself, and the next with prefetch
        return [j for j in (i, i + 1) if first <= j < n and (j == i or prefetch)]

    assert seen == [(i, expect(i)) for i in range(n)] * 2
    if cfg.is_animate:
        # after block i's forward hook: block i is offloaded, block i + 1 resident only if prefetched
        assert face_seen == [(i, [j for j in (i + 1,) if prefetch and first <= j < n])
                             for i in range(0, n, FACE_EVERY)] * 2
    embeddings = 1 + int(cfg.has_image_emb)
    assert swapper.loads == 2 * (n_swap + embeddings)
    assert swapper.resident_blocks() == []
    swapper.remove()
    assert torch.equal(_run(model, inp, kw), plain)
