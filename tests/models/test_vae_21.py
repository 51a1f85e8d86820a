"""Wan 2.1 VAE against ComfyUI's comfy.ldm.wan.vae with the same seeded random weights (fp32, CPU).

Tolerance: max|ours - ref| <= 1e-5 * max|ref| for encode and decode.
"""

import pytest
import torch
from refs import comfy
from vae_fixtures import TINY21, random_weights, rel_err

from wan.errors import WanInputError
from wan.job.conditioning import denormalize_latent, normalize_latent
from wan.models.vae.wan21 import WAN21_VAE, WanVAE

TOL = 1e-5


@pytest.fixture(scope="module")
def pair():
    torch.set_num_threads(2)
    ours = WanVAE(TINY21).eval()
    sd = random_weights(ours.state_dict(), seed=21)
    ours.load_state_dict(sd)
    ref = comfy("comfy.ldm.wan.vae").WanVAE(
        dim=TINY21.dim, z_dim=16, num_res_blocks=TINY21.num_res_blocks, temperal_downsample=[False, True, True]
    ).eval()
    ref.load_state_dict(sd, strict=True)
    return ours, ref


@pytest.mark.parametrize("frames", [1, 9])
def test_encode_decode_match_comfyui(pair, frames):
    ours, ref = pair
    batch = 2 if frames == 1 else 1
    video = torch.rand(batch, 3, frames, 32, 48) * 2 - 1
    with torch.no_grad():
        z_ref = ref.encode(video)
        z = ours.encode(video)
        assert z.shape == (batch, 16, 1 + (frames - 1) // 4, 4, 6) == z_ref.shape
        assert rel_err(z, z_ref) <= TOL
        v_ref = ref.decode(z_ref)
        v = ours.decode(z_ref, clamp=False)
    assert v.shape == (batch, 3, frames, 32, 48) == v_ref.shape
    assert rel_err(v, v_ref) <= TOL
    # The raw model ranges past -1..1 with random weights, so the clamp is really exercised.
    assert v_ref.abs().max() > 1
    assert torch.equal(ours.decode(z_ref), v.clamp(-1, 1))


def test_frame_callback_streams_same_frames(pair):
    ours, _ = pair
    z = torch.randn(1, 16, 3, 4, 4)
    chunks = []
    assert ours.decode(z, frame_callback=chunks.append) is None
    assert [c.shape[2] for c in chunks] == [1, 4, 4]
    assert torch.equal(torch.cat(chunks, 2), ours.decode(z))


def test_latent_statistics_match_comfyui_latent_format(pair):
    # The statistics kept beside the VAE, applied where the library applies them (job/conditioning).
    ours, _ = pair
    fmt = comfy("comfy.latent_formats").Wan21()
    z = torch.randn(2, 16, 3, 4, 4) * 3
    torch.testing.assert_close(normalize_latent(z), fmt.process_in(z), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(denormalize_latent(z), fmt.process_out(z), rtol=1e-6, atol=1e-6)
    assert ours.z_dim == 16 and ours.spatial_compression == 8 and ours.temporal_compression == 4


def test_bad_frame_counts_and_sizes(pair):
    ours, _ = pair
    with pytest.raises(WanInputError, match="1 \\+ 4k"):
        ours.encode(torch.zeros(1, 3, 4, 16, 16))
    with pytest.raises(WanInputError, match="divisible by 8"):
        ours.encode(torch.zeros(1, 3, 1, 12, 16))
    with pytest.raises(WanInputError, match="latent"):
        ours.decode(torch.zeros(1, 48, 1, 2, 2))
    with pytest.raises(WanInputError, match="at least one latent frame"):
        ours.decode(torch.zeros(1, 16, 0, 2, 2))


def test_full_size_names_and_shapes_match_comfyui():
    cv = comfy("comfy.ldm.wan.vae")
    with torch.device("meta"):
        ref = cv.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                        temperal_downsample=[False, True, True], dropout=0.0)
        ours = WanVAE(WAN21_VAE)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes


def test_feature_cache_size_does_not_grow_with_frames(pair):
    # What a streamed decode keeps between chunks must be bounded: the cache holds at most two
    # frames per causal layer, so its size is the same after the 3rd chunk as after the 6th.
    from wan.models.vae.base import Untiled

    ours, _ = pair
    z = torch.randn(1, 16, 6, 2, 2)
    run = Untiled()
    sizes = []
    with torch.no_grad():
        for i in range(z.shape[2]):
            run(ours._decode_chunk, z[:, :, i:i + 1])
            sizes.append(sum(t.numel() for t in run.cache._frames.values()))
    assert sizes[2] == sizes[-1] > 0
    assert max(t.shape[2] for t in run.cache._frames.values()) <= 2
