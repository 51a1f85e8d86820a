"""Wan Phantom Embeds and Wan Track Embeds in process: registered under their titles, outputs equal
the library's conditioning on the same inputs, malformed tracks refused naming the input before the
VAE runs; the Phantom embeds sample through sample_video on a tiny T2V DiT (the dual CFG's three
passes per step), the video's frames only coming out."""

import importlib

import pytest
import torch

from refs import import_pack
from vae_fixtures import pack_vae21


@pytest.fixture(scope="module")
def pack():
    name = import_pack().__name__
    mods = ("nodes.phantom", "nodes", "wan.errors", "wan.job.conditioning_phantom", "wan.job.conditioning_ati",
            "wan.job.sample", "wan.job.conditioning", "wan.job.options", "wan.models.dit.model",
            "wan.models.dit.config")
    return {m: importlib.import_module(f"{name}.{m}") for m in mods}


@pytest.fixture(scope="module")
def vae(pack):
    return pack_vae21(seed=5)


def test_registered(pack):
    reg = pack["nodes"]
    for key, title in (("WanPhantomEmbeds", "Wan Phantom Embeds"), ("WanTrackEmbeds", "Wan Track Embeds")):
        assert key in reg.NODE_CLASS_MAPPINGS and reg.NODE_DISPLAY_NAME_MAPPINGS[key] == title


def test_phantom_node_equals_library_and_samples(pack, vae):
    images = torch.rand(2, 40, 56, 3)
    (cond,) = pack["nodes.phantom"].WanPhantomEmbeds().encode(vae, 48, 32, 5, 3.0, images)
    lib = pack["wan.job.conditioning_phantom"].phantom_conditioning(vae, images, 48, 32, 5, 3.0)
    assert torch.equal(cond.subject, lib.subject) and cond.subject_cfg == 3.0
    cfg = pack["wan.models.dit.config"].DIT_PRESETS["t2v_1_3b"].tiny()
    dit = pack["wan.models.dit.model"].WanDiT(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in dit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    calls = []
    dit.register_forward_pre_hook(lambda m, a, kw: calls.append(kw.get("subject") is not None), with_kwargs=True)
    text = pack["wan.job.conditioning"].PromptEmbeds(torch.randn(1, 5, cfg.text_dim, generator=g),
                                                     torch.randn(1, 5, cfg.text_dim, generator=g))
    opts = pack["wan.job.options"].SamplingOptions(steps=2, cfg=4.0, seed=1, batch_cfg=False)
    out = pack["wan.job.sample"].sample_video(dit, text, cond, opts)
    plain = pack["wan.job.sample"].sample_video(dit, text, cond.replace(subject=None), opts)
    assert out.shape == plain.shape == cond.latent_shape()
    assert calls.count(True) == 2 * 3  # text + subject, negative + subject, negative + zero subject
    assert (out - plain).abs().max() > 1e-4


def test_track_node_refuses_malformed_tracks_before_encoding(pack):
    node = pack["nodes.phantom"].WanTrackEmbeds()
    with pytest.raises(pack["wan.errors"].WanInputError, match="tracks is not valid JSON"):
        node.encode(None, torch.rand(1, 32, 48, 3), "[{x: 1}]", 48, 32, 5, 220.0, 2)


def test_track_node_equals_library(pack, vae):
    tracks = '[[{"x": 5, "y": 6}, {"x": 9, "y": 7}, {"x": 20, "y": 12}]]'
    image = torch.rand(1, 32, 48, 3)
    (cond,) = pack["nodes.phantom"].WanTrackEmbeds().encode(vae, image, tracks, 48, 32, 5, 220.0, 2)
    lib = pack["wan.job.conditioning_ati"].ati_conditioning(vae, None, image, tracks, 48, 32, 5)
    assert torch.equal(cond.y, lib.y)
