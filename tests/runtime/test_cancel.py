"""The cancel hook (wan.runtime.cancel) reaches inside long work: between DiT blocks, between query
chunks of one long attention call, between the VAE's layers inside one latent frame, between video
frames; splitting attention over the queries leaves its result bit for bit what PyTorch's one SDPA
call over the whole sequence gives; Ctrl-C maps onto the same hook."""

from __future__ import annotations

import os
import signal

import pytest
import torch
import torch.nn.functional as F
from dit_fixtures import make_inputs, our_model, random_weights, tiny_config
from vae_fixtures import TINY21
from vae_fixtures import random_weights as vae_weights

from wan.models.dit.attention import sdpa
from wan.models.vae.layers import _frame_attention
from wan.models.vae.wan21 import WanVAE
from wan.runtime.cancel import Cancelled, cancel_hook, cancel_on_sigint, check, current_hook, in_query_chunks
from wan.video import write_video


class Polls:
    """A cancel hook that counts its polls and asks to stop from poll number ``stop_at`` on."""

    def __init__(self, stop_at: int | None = None):
        self.count, self.stop_at = 0, stop_at

    def __call__(self) -> bool:
        self.count += 1
        return self.stop_at is not None and self.count >= self.stop_at


def _qkv(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g).to(dtype) for _ in range(3)]


def test_hook_is_scoped_and_none_keeps_the_outer_one():
    outer, inner = Polls(), Polls(stop_at=1)
    assert current_hook() is None
    check("nowhere")  # no hook: nothing to ask
    with cancel_hook(outer):
        with cancel_hook(None):
            assert current_hook() is outer
        with cancel_hook(inner):
            with pytest.raises(Cancelled, match="cancelled at the test"):
                check("at the test")
        assert current_hook() is outer
    assert current_hook() is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_long_dit_attention_is_split_and_equals_one_sdpa_call(dtype):
    # [B, L, H, D] with 2 * 8192 * 8192 scores: over the CPU budget (2^26), so two query chunks
    q, k, v = _qkv((1, 8192, 2, 128), dtype)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    polls = Polls()
    with cancel_hook(polls):
        out = sdpa(q, k, v)
    assert polls.count == 2
    assert torch.equal(out, ref)


def test_short_attention_is_one_call_without_polls():
    q, k, v = _qkv((1, 1024, 2, 128), torch.float32)
    polls = Polls()
    with cancel_hook(polls):
        sdpa(q, k, v)
    assert polls.count == 0


def test_cancel_stops_inside_one_attention_call():
    calls = []

    def kernel(q, k, v):
        calls.append(q.shape[1])
        return q

    chunked = in_query_chunks(kernel, cpu_scores=1 << 16)
    q = torch.zeros(1, 4096, 1, 8)
    with cancel_hook(Polls(stop_at=3)), pytest.raises(Cancelled, match="in attention, at query"):
        chunked(q, q, q)
    # 2^16 scores over 4096 keys: 16 queries a call, raised to the floor of 32; stopped before the 3rd
    assert calls == [32, 32]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vae_frame_attention_is_split_and_equals_one_sdpa_call(dtype):
    # the VAE's layout: [B*T, 1, HW, C] views of one qkv tensor; 8192^2 scores > its 2^24 budget
    y = torch.randn(1, 3 * 32, 8192, generator=torch.Generator().manual_seed(1)).to(dtype)
    q, k, v = y.reshape(1, 3, 32, 8192).transpose(-1, -2).unsqueeze(1).unbind(2)
    polls = Polls()
    with cancel_hook(polls):
        out = _frame_attention(q, k, v)
    assert polls.count == 4
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v))


def test_dit_polls_before_every_block_and_stops_between_blocks():
    cfg = tiny_config("t2v_1_3b")  # two blocks
    model = our_model(cfg, random_weights(cfg))
    inp = make_inputs(cfg)
    polls = Polls()
    with cancel_hook(polls), torch.no_grad():
        model(inp.x, inp.t, inp.context)
    assert polls.count == cfg.num_layers
    with cancel_hook(Polls(stop_at=2)), pytest.raises(Cancelled, match=f"before DiT block 2 of {cfg.num_layers}"):
        model(inp.x, inp.t, inp.context)


def test_vae_decode_stops_inside_the_first_latent_frame():
    vae = WanVAE(TINY21)
    vae.load_state_dict(vae_weights(vae.state_dict()))
    z = torch.randn(1, 16, 3, 4, 4)
    polls, frames = Polls(), []
    with cancel_hook(polls):
        vae.decode(z, frame_callback=frames.append)
    per_frame = polls.count / 3
    assert per_frame > 10  # between the decoder's layers, not only between latent frames
    frames.clear()
    with cancel_hook(Polls(stop_at=5)), pytest.raises(Cancelled, match="in the VAE"):
        vae.decode(z, frame_callback=frames.append)
    assert frames == []  # stopped inside the first latent frame


def test_vae_encode_stops(tmp_path):
    vae = WanVAE(TINY21)
    vae.load_state_dict(vae_weights(vae.state_dict()))
    with cancel_hook(Polls(stop_at=1)), pytest.raises(Cancelled):
        vae.encode(torch.zeros(1, 3, 5, 16, 16))


def test_video_writer_stops_between_frames_and_leaves_no_file(tmp_path):
    frames = torch.rand(12, 16, 16, 3)
    out = tmp_path / "clip.mp4"
    with cancel_hook(Polls(stop_at=4)), pytest.raises(Cancelled, match="while writing 3 of 12 frames"):
        write_video(out, frames, fps=8, format="video/h264-mp4")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_cancels_at_the_next_check_then_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with cancel_on_sigint():
        check("before Ctrl-C")
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode boundary
        with pytest.raises(Cancelled, match="after Ctrl-C"):
            check("after Ctrl-C")
    assert signal.getsignal(signal.SIGINT) is before
    assert current_hook() is None
