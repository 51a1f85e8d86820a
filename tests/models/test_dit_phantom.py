"""Phantom's time-axis subject frames in our DiT against ComfyUI's WanModel given ``time_dim_concat``
(the same seeded tiny T2V weights, fp32 CPU): the subject frames join the video's after it, take
their own rotary frames, and only the video's frames come out. Tolerance: dit_fixtures.RTOL/ATOL
(max|ours - ref| <= 1e-5 * max|ref| + 1e-6), as test_dit_parity.
"""

import pytest
import torch

from dit_fixtures import check, comfy_model, make_inputs, our_model, random_weights, tiny_config
from wan.errors import WanInputError

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def t2v():
    cfg = tiny_config("t2v_1_3b")
    sd = random_weights(cfg, seed=7)
    return cfg, our_model(cfg, sd), comfy_model(cfg, sd)


@pytest.mark.parametrize("subjects,batch", [(1, 1), (3, 2)])
@torch.no_grad()
def test_subject_frames_match_comfyui_time_dim_concat(t2v, subjects, batch):
    cfg, ours, ref = t2v
    inp = make_inputs(cfg, frames=3, height=4, width=6, batch=batch)
    g = torch.Generator().manual_seed(11)
    subject = torch.randn(1, cfg.out_dim, subjects, 4, 6, generator=g)
    got = ours(inp.x, inp.t, inp.context, subject=subject)
    want = ref(inp.x, inp.t, inp.context_padded, time_dim_concat=subject.expand(batch, -1, -1, -1, -1))
    assert got.shape == inp.x.shape  # the subject frames are cut off the output
    err = check(got, want)
    print(f"Phantom {subjects} subject frames, batch {batch}: max err {err:.2e}")
    plain = ours(inp.x, inp.t, inp.context)
    assert (plain - got).abs().max() > 1e-3  # the frames do reach the video's tokens


@torch.no_grad()
def test_odd_sizes_pad_as_comfyui(t2v):
    cfg, ours, ref = t2v
    inp = make_inputs(cfg, frames=2, height=5, width=7)
    subject = torch.randn(1, cfg.out_dim, 2, 5, 7, generator=torch.Generator().manual_seed(3))
    got = ours(inp.x, inp.t, inp.context, subject=subject)
    want = ref(inp.x, inp.t, inp.context_padded, time_dim_concat=subject)
    print(f"Phantom odd size: max err {check(got, want):.2e}")


def test_subject_on_image_model_is_refused():
    cfg = tiny_config("i2v_14b")
    model = our_model(cfg, random_weights(cfg))
    inp = make_inputs(cfg)
    with pytest.raises(WanInputError, match="text-to-video"):
        model(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y, subject=torch.zeros(1, 16, 1, 4, 6))
    t2v_cfg = tiny_config("t2v_1_3b")
    model = our_model(t2v_cfg, random_weights(t2v_cfg))
    inp = make_inputs(t2v_cfg)
    with pytest.raises(WanInputError, match="grid"):
        model(inp.x, inp.t, inp.context, subject=torch.zeros(1, 16, 1, 8, 6))
