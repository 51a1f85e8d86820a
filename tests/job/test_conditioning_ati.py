"""ATI trajectories against ComfyUI: parse_json_tracks / pad_pts / process_tracks / patch_motion and
WanTrackToVideo's outputs (concat_mask, concat_latent_image), in-process on a ComfyUI VAE holding the
same seeded tiny weights as ours; ``y`` compared with what ComfyUI's model builds from them
(model_base.WAN21.concat_cond for the I2V 14B input width).

Tolerance: track features exact to 1e-6; the patch <= 1e-5 * max|ComfyUI| (float32 sums in another
order); ``y`` <= 1e-5 * max (the two VAEs' agreement).
"""

import json
import random
import types

import numpy as np
import pytest
import torch
from refs import comfy, comfy_extras
from vae_fixtures import rel_err, vae21_with_comfy

from wan.errors import WanInputError
from wan.job.conditioning_ati import ati_conditioning
from wan.job.tracks import parse_tracks, patch_motion, track_features

TOL = 1e-5
W, H, FRAMES = 64, 48, 9


@pytest.fixture(scope="module")
def nodes_wan():
    return comfy_extras("nodes_wan")


@pytest.fixture(scope="module")
def vae21():
    return vae21_with_comfy(seed=47)


def _tracks(n, lengths, seed=0, w=W, h=H):
    rnd = random.Random(seed)
    return [[{"x": rnd.uniform(-4, w + 4), "y": rnd.uniform(-4, h + 4)} for _ in range(lengths[i % len(lengths)])]
            for i in range(n)]


def _comfy_features(nodes_wan, tracks, w, h, frames):
    arr = np.stack([nodes_wan.pad_pts(t) for t in tracks], axis=0)
    return nodes_wan.process_tracks(arr, (w, h), frames - 1)


@pytest.mark.parametrize("frames", [1, 5, 9, 33, 81, 97])
def test_track_features_match_process_tracks(nodes_wan, frames):
    tracks = _tracks(3, [121, 40, 200])  # exact, padded and cut lengths
    want = _comfy_features(nodes_wan, tracks, W, H, frames)
    got = track_features(tracks, W, H, frames)
    assert got.shape == want.shape == (frames, 3, 4)
    assert (got - want).abs().max() <= 1e-6


def test_121_frames_take_every_point():
    # ComfyUI's resampling leaves 120 of 121 frames here (its patch then fails); ours takes the 121 points
    tracks = _tracks(2, [121], seed=1)
    got = track_features(tracks, W, H, 121)
    assert got.shape == (121, 2, 4)
    assert torch.allclose(got[:, 0, 1], torch.tensor([t["x"] for t in tracks[0]]) / H * 2 - W / H, atol=1e-5)


@pytest.mark.parametrize("topk,temperature", [(2, 220.0), (1, 20.0), (5, 60.0)])
def test_patch_motion_matches_comfyui(nodes_wan, topk, temperature):
    tracks = _tracks(4, [121, 60], seed=3, w=W, h=H)
    feats = track_features(tracks, W, H, FRAMES)
    latent = torch.randn(16, 3, H // 8, W // 8, generator=torch.Generator().manual_seed(2))
    ref_mask, ref_latent = nodes_wan.patch_motion([feats[None]], latent[None], temperature=temperature, topk=topk,
                                                  vae_divide=(4, 16))
    mask, got = patch_motion(feats, latent, temperature, topk)
    assert mask.shape == ref_mask[0].shape and got.shape == ref_latent[0].shape
    assert (mask - ref_mask[0]).abs().max() <= TOL
    assert rel_err(got, ref_latent[0]) <= TOL
    assert (got[:, 1:] - latent[:, 1:]).abs().max() > 1e-3  # the tracks moved something


def _comfy_y(cond, noise_shape):
    model_base = comfy("comfy.model_base")
    fmt = comfy("comfy.latent_formats").Wan21()
    fake = types.SimpleNamespace(
        diffusion_model=types.SimpleNamespace(
            patch_embedding=types.SimpleNamespace(weight=torch.empty(8, 36, 1, 2, 2))),
        latent_format=fmt, process_latent_in=fmt.process_in, image_to_video=True)
    kw = {k: cond[k] for k in ("concat_latent_image", "concat_mask") if k in cond}
    return model_base.WAN21.concat_cond(fake, noise=torch.zeros(noise_shape), device="cpu", **kw)


@pytest.mark.parametrize("spec", ["one_track", "tracks", "batches", "empty"])
def test_ati_conditioning_matches_wan_track_to_video(nodes_wan, vae21, spec):
    ours_vae, ref_vae = vae21
    tracks = _tracks(3, [121, 30], seed=5)
    text = {"one_track": json.dumps(tracks[0]), "tracks": json.dumps(tracks),
            "batches": json.dumps([tracks, tracks[:1]]), "empty": "[]"}[spec]
    image = torch.rand(2, 60, 80, 3)  # another size; the first image only is used
    pos, _neg, latent = nodes_wan.WanTrackToVideo.execute([[torch.zeros(1, 1, 8), {}]], [[torch.zeros(1, 1, 8), {}]],
                                                          ref_vae, text, W, H, FRAMES, 1, 220.0, 2, start_image=image)
    ours = ati_conditioning(ours_vae, None, image, text, W, H, FRAMES)
    assert ours.latent_shape() == tuple(latent["samples"].shape)
    want = _comfy_y(pos[0][1], latent["samples"].shape)
    assert ours.y.shape == want.shape
    assert (ours.y[:, :4] - want[:, :4]).abs().max() <= TOL
    err = rel_err(ours.y, want)
    print(f"ATI {spec}: y rel err {err:.2e}")
    assert err <= TOL


def test_malformed_tracks_are_refused_naming_the_input(nodes_wan):
    bad = '[[{"x": 1, "y": 2}, {"x": 3 "y": 4}]]'
    assert nodes_wan.parse_json_tracks(bad) == []  # ComfyUI: silently plain image-to-video
    with pytest.raises(WanInputError, match="tracks is not valid JSON"):
        parse_tracks(bad)
    with pytest.raises(WanInputError, match="track 0"):
        parse_tracks('[[{"x": 1}]]')
    with pytest.raises(WanInputError, match="list of tracks"):
        parse_tracks('{"x": 1, "y": 2}')
    assert parse_tracks("[{'x': 1, 'y': 2}]") == [[{"x": 1, "y": 2}]]  # single quotes, as ComfyUI
    with pytest.raises(WanInputError, match="topk"):
        ati_conditioning(None, None, torch.rand(1, 8, 8, 3), "[]", W, H, FRAMES, topk=0)
