"""The nodes pass on the library's memory refusal (wan.job.memory) unchanged, in-process: Wan Empty
Embeds at its widget maximum into Wan Sampler, and Wan VAE Decode of a latent too big to decode, each
refused with the inputs and sizes named before anything is allocated, on a simulated machine."""

import pytest
import torch
from dit_fixtures import our_model, random_weights
import refs
from vae_fixtures import TINY21, random_weights as vae_weights
from wan.install.tiny import dit_config

PACK = "wan_pack_memory_nodes"
GB = 1e9


def pack_module(name: str):
    return refs.pack_module(name, PACK)


@pytest.fixture
def machine(monkeypatch):
    """9.1 GB available on every device (the pack's own copy of wan.job.memory)."""
    monkeypatch.setattr(pack_module("wan.job.memory"), "available_bytes", lambda device: int(9.1 * GB))


def test_empty_embeds_into_the_sampler_refused_by_size(machine):
    cfg = dit_config("t2v_1_3b")
    dit = our_model(cfg, random_weights(cfg, seed=4))
    text = pack_module("wan.job.conditioning").PromptEmbeds(torch.zeros(1, 512, cfg.text_dim), None)
    embeds = pack_module("nodes.encoders").WanEmptyEmbeds().make(8192, 8192, 1025)[0]
    model = pack_module("nodes.loaders").WanModel.loaded(dit, "tiny")
    error = pack_module("wan.errors").WanInputError
    latent = 16 * 257 * 1024 * 1024 * 4  # bytes of one float32 latent of this size
    with pytest.raises(error, match=rf"^width 8192, height 8192, num_frames 1025 needs {4 * latent / GB:.1f} GB "
                                    r"for the noise and latents .* 9\.1 GB available"):
        pack_module("nodes.sampler").WanSampler().sample(model, text, embeds, 1, 1.0, 5.0, 0, "euler", 1.0)


def test_vae_decode_refused_by_size(machine):
    vae_module = pack_module("wan.models.vae.wan21")
    vae = vae_module.WanVAE(vae_module.VAEConfig(**TINY21.__dict__))
    vae.load_state_dict(vae_weights(vae.state_dict(), seed=1))
    latent = torch.empty(1, 16, 25, 512, 512, device="meta")  # 4096x4096, 97 frames
    video = 3 * 97 * 4096 * 4096 * 4  # the float32 video and its two float32 copies scaled to 0..1
    error = pack_module("wan.errors").WanInputError
    with pytest.raises(error, match=rf"^decoding a latent of width 4096, height 4096, num_frames 97 needs "
                                    rf"{3 * video / GB:.1f} GB .* 9\.1 GB available"):
        pack_module("nodes.vae").WanVAEDecode().decode(vae, {"samples": latent}, False, 256, 64)
