"""Jobs too big for the machine are refused before they allocate, naming the inputs and the sizes
(wan.job.memory), with a simulated available-memory figure; the counts are checked to be lower
bounds of what a small job really holds at once (so a job that fits is never refused)."""

import weakref

import pytest
import torch
from dit_fixtures import our_model, random_weights, tiny_config
from torch.utils._python_dispatch import TorchDispatchMode
from vae_fixtures import TINY21, random_weights as vae_weights

import wan.job.memory as memory
import wan.job.sample as job_sample
from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds, i2v_conditioning, t2v_conditioning, vae_encode
from wan.job.options import SamplingOptions
from wan.job.pipelines import decode_frames
from wan.job.sample import sample_video
from wan.models.vae.wan21 import WanVAE

GB = 1e9
F32 = 4


@pytest.fixture(scope="module")
def dit():
    cfg = tiny_config("t2v_1_3b")
    context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(3))
    return our_model(cfg, random_weights(cfg, seed=4)), PromptEmbeds(context, None)


@pytest.fixture(scope="module")
def vae():
    model = WanVAE(TINY21)
    model.load_state_dict(vae_weights(model.state_dict(), seed=1))
    return model.eval()


def available(monkeypatch, gb: float):
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(gb * GB))


def test_sampler_refuses_a_latent_the_host_cannot_hold(dit, monkeypatch):
    model, text = dit
    available(monkeypatch, 9.1)
    monkeypatch.setattr(job_sample, "randn_like_cpu", lambda *a, **k: pytest.fail("allocated the noise"))
    cond = t2v_conditioning(8192, 8192, 1025, 16)
    # 16 channels x 257 latent frames x 1024 x 1024 float32 = 17.2 GB a latent; four of them at once
    latent = 16 * 257 * 1024 * 1024 * F32
    with pytest.raises(WanInputError) as info:
        sample_video(model, text, cond, SamplingOptions(steps=1, cfg=1.0))
    message = str(info.value)
    assert message.startswith("width 8192, height 8192, num_frames 1025 needs ")
    assert f"{4 * latent / GB:.1f} GB for the noise and latents" in message and f"{latent / GB:.1f} GB)" in message
    assert "9.1 GB available" in message


def test_a_normal_tiny_job_passes(dit, vae):
    model, text = dit
    latent = sample_video(model, text, t2v_conditioning(32, 32, 5, 16), SamplingOptions(steps=1, cfg=1.0))
    assert decode_frames(vae, latent).shape == (5, 32, 32, 3)


def test_decode_refuses_what_it_would_preallocate(vae, monkeypatch):
    available(monkeypatch, 9.1)
    latent = torch.empty(1, 16, 25, 512, 512, device="meta")  # 4096x4096, 97 frames: never allocated
    # the bf16 video (3 x 97 x 4096 x 4096 x 2 bytes = 9.8 GB) and its two float32 copies scaled to 0..1
    video = 3 * 97 * 4096 * 4096
    with pytest.raises(WanInputError) as info:
        decode_frames(vae.to(torch.bfloat16), latent)
    vae.float()
    message = str(info.value)
    assert message.startswith("decoding a latent of width 4096, height 4096, num_frames 97 needs ")
    assert f"{(video * 2 + 2 * video * F32) / GB:.1f} GB for the decoded frames" in message
    assert "9.1 GB available" in message


def test_encode_refuses_before_building_the_frames(vae, monkeypatch):
    available(monkeypatch, 9.1)
    monkeypatch.setattr(torch, "full", lambda *a, **k: pytest.fail("built the frames"))
    image = torch.rand(1, 64, 64, 3)
    with pytest.raises(WanInputError, match=r"^width 8192, height 8192, num_frames 1025 needs .* GB for the frames"):
        i2v_conditioning(vae, None, image, 8192, 8192, 1025)
    with pytest.raises(WanInputError, match=r"^encoding 97 frames of 4096x4096 \(image\) needs "):
        vae_encode(vae, torch.empty(97, 4096, 4096, 3, device="meta"))


class _Peak(TorchDispatchMode):
    """The most bytes of tensor storage created inside the mode and alive at once (CPU)."""

    def __init__(self):
        super().__init__()
        self.live, self.peak, self.seen = 0, 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key not in self.seen and storage.nbytes():
                    self.seen.add(key)
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._gone, key, storage.nbytes())
        return out

    def _gone(self, key, size):
        self.seen.discard(key)
        self.live -= size


def _needed(monkeypatch, run) -> int:
    """The bytes a check asked for (the smallest available figure that lets it pass)."""
    asked = []

    def figure(device):
        return 10 ** 15

    def require(needs, what, inputs, advice=""):
        asked.append(sum(needs.values()))

    monkeypatch.setattr(memory, "available_bytes", figure)
    monkeypatch.setattr(memory, "require", require)
    run()
    return max(asked)


def test_counts_are_lower_bounds_of_what_a_job_holds(dit, vae, monkeypatch):
    model, text = dit
    cond = t2v_conditioning(64, 64, 9, 16)
    sampling = SamplingOptions(steps=2, cfg=1.0, sampler="euler")
    needed = _needed(monkeypatch, lambda: sample_video(model, text, cond, sampling))
    with _Peak() as peak:
        latent = sample_video(model, text, cond, sampling)
    assert 0 < needed <= peak.peak
    needed = _needed(monkeypatch, lambda: decode_frames(vae, latent))
    with _Peak() as peak:
        decode_frames(vae, latent)
    assert 0 < needed <= peak.peak
