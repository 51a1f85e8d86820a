"""Wan 2.2 VAE against ComfyUI's comfy.ldm.wan.vae2_2 with the same seeded random weights (fp32, CPU).

Tolerance: max|ours - ref| <= 1e-5 * max|ref| for encode and decode.
"""

import pytest
import torch
from refs import comfy
from vae_fixtures import TINY22, random_weights, rel_err

from wan.job.conditioning import denormalize_latent, normalize_latent
from wan.models.vae.wan22 import WAN22_VAE, WanVAE22, patchify, unpatchify

TOL = 1e-5


@pytest.fixture(scope="module")
def pair():
    torch.set_num_threads(2)
    ours = WanVAE22(TINY22).eval()
    sd = random_weights(ours.state_dict(), seed=22)
    ours.load_state_dict(sd)
    ref = comfy("comfy.ldm.wan.vae2_2").WanVAE(
        dim=TINY22.dim, dec_dim=TINY22.dec_dim, z_dim=48, num_res_blocks=TINY22.num_res_blocks,
        temperal_downsample=[False, True, True],
    ).eval()
    ref.load_state_dict(sd, strict=True)
    return ours, ref


def test_patchify_matches_comfyui():
    v2 = comfy("comfy.ldm.wan.vae2_2")
    x = torch.randn(2, 3, 5, 8, 12)
    assert torch.equal(patchify(x), v2.patchify(x, patch_size=2))
    assert torch.equal(unpatchify(patchify(x)), x)


@pytest.mark.parametrize("frames", [1, 9])
def test_encode_decode_match_comfyui(pair, frames):
    ours, ref = pair
    video = torch.rand(1, 3, frames, 32, 48) * 2 - 1
    with torch.no_grad():
        z_ref = ref.encode(video)
        z = ours.encode(video)
        assert z.shape == (1, 48, 1 + (frames - 1) // 4, 2, 3) == z_ref.shape
        assert rel_err(z, z_ref) <= TOL
        v_ref = ref.decode(z_ref)
        v = ours.decode(z_ref, clamp=False)
    assert v.shape == (1, 3, frames, 32, 48) == v_ref.shape
    assert rel_err(v, v_ref) <= TOL


def test_latent_statistics_match_comfyui_latent_format(pair):
    # The statistics kept beside the VAE, applied where the library applies them (job/conditioning).
    ours, _ = pair
    fmt = comfy("comfy.latent_formats").Wan22()
    z = torch.randn(1, 48, 2, 2, 2)
    torch.testing.assert_close(normalize_latent(z), fmt.process_in(z), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(denormalize_latent(z), fmt.process_out(z), rtol=1e-6, atol=1e-6)
    assert ours.z_dim == 48 and ours.spatial_compression == 16 and ours.temporal_compression == 4


def test_full_size_names_and_shapes_match_comfyui():
    v2 = comfy("comfy.ldm.wan.vae2_2")
    with torch.device("meta"):
        # The config ComfyUI's comfy.sd.VAE builds for a Wan 2.2 file (dec_dim left at its 256 default).
        ref = v2.WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                        temperal_downsample=[False, True, True], dropout=0.0)
        ours = WanVAE22(WAN22_VAE)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes
