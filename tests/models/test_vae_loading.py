"""VAE loading: diffusers AutoencoderKLWan parity, layout equivalence, full-size names, refusals.

Parity tolerance (fp32, CPU): max|ours - ref| <= 1e-5 * max|ref|.
"""

import pytest
import torch
from refs import comfy
from vae_fixtures import TINY21, TINY22, random_weights, rel_err

from wan.errors import WanFileError
from wan.models.vae.wan21 import WAN21_VAE, WanVAE
from wan.models.vae.wan22 import WAN22_VAE, WanVAE22
from wan.models.vae.loading import diffusers_to_official, load_vae, vae_spec

TOL = 1e-5


def _diffusers(version, **kw):
    from diffusers import AutoencoderKLWan

    if version == "2.1":
        return AutoencoderKLWan(**kw)
    return AutoencoderKLWan(is_residual=True, in_channels=12, out_channels=12, patch_size=2,
                            scale_factor_spatial=16, latents_mean=[0.0] * 48, latents_std=[1.0] * 48, **kw)


def _tiny_diffusers(version):
    if version == "2.1":
        ref = _diffusers("2.1", base_dim=TINY21.dim, z_dim=16, num_res_blocks=TINY21.num_res_blocks)
    else:
        ref = _diffusers("2.2", base_dim=TINY22.dim, decoder_base_dim=TINY22.dec_dim, z_dim=48,
                         num_res_blocks=TINY22.num_res_blocks)
    ref.load_state_dict(random_weights(ref.state_dict(), seed=7))
    return ref.eval()


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_diffusers_layout_matches_diffusers_and_comfyui(version):
    torch.set_num_threads(2)
    ref = _tiny_diffusers(version)
    dsd = ref.state_dict()
    ours = load_vae(dsd)
    assert type(ours) is (WanVAE if version == "2.1" else WanVAE22)
    # Both layouts give the same tensors.
    official = diffusers_to_official(dsd)
    same = load_vae(official)
    assert ours.state_dict().keys() == same.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), same.state_dict().values()))
    # The renamed weights load strictly into ComfyUI's own model too.
    if version == "2.1":
        cref = comfy("comfy.ldm.wan.vae").WanVAE(dim=TINY21.dim, z_dim=16, num_res_blocks=TINY21.num_res_blocks,
                                                 temperal_downsample=[False, True, True])
    else:
        cref = comfy("comfy.ldm.wan.vae2_2").WanVAE(dim=TINY22.dim, dec_dim=TINY22.dec_dim, z_dim=48,
                                                    num_res_blocks=TINY22.num_res_blocks,
                                                    temperal_downsample=[False, True, True])
    cref.load_state_dict(official, strict=True)

    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        z_ref = ref.encode(video).latent_dist.mean
        z = ours.encode(video)
        assert rel_err(z, z_ref) <= TOL
        v_ref = ref.decode(z_ref).sample  # diffusers clamps to -1..1, as ours does by default
        assert rel_err(ours.decode(z_ref), v_ref) <= TOL
        assert rel_err(cref.decode(z_ref).clamp(-1, 1), v_ref) <= TOL


def _meta_state(factory):
    with torch.device("meta"):
        return factory().state_dict()


def _shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_full_size_layouts_detected_with_reference_names(version):
    if version == "2.1":
        comfy_sd = _meta_state(lambda: comfy("comfy.ldm.wan.vae").WanVAE(
            dim=96, z_dim=16, num_res_blocks=2, temperal_downsample=[False, True, True]))
        diff_sd = _meta_state(lambda: _diffusers("2.1"))  # AutoencoderKLWan's defaults are Wan 2.1's
        cls, preset = WanVAE, WAN21_VAE
    else:
        comfy_sd = _meta_state(lambda: comfy("comfy.ldm.wan.vae2_2").WanVAE(
            dim=160, z_dim=48, num_res_blocks=2, temperal_downsample=[False, True, True]))
        diff_sd = _meta_state(lambda: _diffusers("2.2", base_dim=160, decoder_base_dim=256, z_dim=48))
        cls, preset = WanVAE22, WAN22_VAE
    for sd in (comfy_sd, diff_sd, {f"first_stage_model.{k}": v for k, v in comfy_sd.items()}):
        got_cls, cfg, official = vae_spec(sd)
        assert got_cls is cls and cfg == preset
        assert _shapes(official) == _shapes(comfy_sd)


def _official_tiny():
    m = WanVAE(TINY21)
    return random_weights(m.state_dict(), seed=3)


def test_refusals_name_the_problem():
    sd = _official_tiny()
    dit = {"patch_embedding.weight": torch.zeros(1), "blocks.0.self_attn.q.weight": torch.zeros(1)}
    with pytest.raises(WanFileError, match="not a Wan VAE: it looks like a Wan (DiT|diffusion)"):
        load_vae(dit, path="model.safetensors")
    umt5 = {"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(1), "shared.weight": torch.zeros(1)}
    with pytest.raises(WanFileError, match="not a Wan VAE: it looks like a UMT5"):
        load_vae(umt5)
    partial = {k: v for i, (k, v) in enumerate(sd.items()) if i % 7}
    with pytest.raises(WanFileError, match="incomplete"):
        load_vae(partial, path="vae.safetensors")
    bad = dict(sd)
    bad["decoder.middle.0.residual.2.weight"] = torch.zeros(3, 3, 3, 3, 3)
    with pytest.raises(WanFileError, match="decoder.middle.0.residual.2.weight has shape"):
        load_vae(bad)
    extra = dict(sd, **{"encoder.bogus.weight": torch.zeros(1)})
    with pytest.raises(WanFileError, match="unexpected tensor encoder.bogus.weight"):
        load_vae(extra)
    wrong_z = random_weights(WanVAE(TINY21.__class__(dim=8, z_dim=8, num_res_blocks=1)).state_dict())
    with pytest.raises(WanFileError, match="16 latent channels"):
        load_vae(wrong_z)


def test_half_precision_weights_compute_in_their_dtype():
    sd = _official_tiny()
    ref = load_vae(sd)
    vae = load_vae({k: v.to(torch.bfloat16) for k, v in sd.items()}, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in vae.parameters())
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    z = vae.encode(video)
    assert z.dtype == torch.bfloat16
    assert rel_err(z, ref.encode(video)) < 0.05
    out = vae.decode(z)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 3, 5, 16, 16)
