"""Wan 2.2 Fun 5B control conditioning (48-channel Wan2.2 VAE latents) against ComfyUI's
Wan22FunControlToVideo, in-process on a tiny ComfyUI Wan 2.2 VAE holding the same seeded weights as
ours. ``y`` is compared with what ComfyUI's model (model_base.WAN22: image_to_video, Wan22 latent
format) builds from the node outputs for the 5B control model's input width (148 = 48 noise + 48
control + 4 mask + 48 start image); the reference latent with its extra_conds (process_latent_in).

Tolerance: max|ours - ComfyUI| <= 1e-5 * max|ComfyUI| (the two VAEs' own agreement); the mask exact.
"""

import types

import pytest
import torch
from refs import comfy, comfy_extras
from vae_fixtures import rel_err

from test_pipeline_conditioning import vae22  # noqa: F401 (fixture: our and ComfyUI's tiny Wan2.2 VAE)

from wan.errors import WanInputError
from wan.job.conditioning_fun import fit_to_model, fun_control_conditioning
from wan.models.dit.config import DIT_PRESETS

TOL = 1e-5
W, H, FRAMES = 64, 32, 9
CFG = DIT_PRESETS["wan22_fun_control_5b"]


def _cond():
    return [[torch.zeros(1, 1, 8), {}]]


def _comfy_y(cond: dict, noise_shape):
    model_base = comfy("comfy.model_base")
    fmt = comfy("comfy.latent_formats").Wan22()
    fake = types.SimpleNamespace(
        diffusion_model=types.SimpleNamespace(patch_embedding=types.SimpleNamespace(
            weight=torch.empty(8, CFG.in_dim, 1, 2, 2))),
        latent_format=fmt, process_latent_in=fmt.process_in, image_to_video=True)
    kw = {k: cond[k] for k in ("concat_latent_image", "concat_mask", "concat_mask_index")}
    return model_base.WAN21.concat_cond(fake, noise=torch.zeros(noise_shape), device="cpu", **kw)


@pytest.mark.parametrize("with_start, with_ref", [(False, False), (True, True)])
def test_control_5b_matches_wan22_fun_control(vae22, with_start, with_ref):  # noqa: F811
    ours_vae, ref_vae = vae22
    g = torch.Generator().manual_seed(11)
    control = torch.rand(5, 48, 40, 3, generator=g)  # shorter than the video, another size and aspect
    start = torch.rand(2, 40, 64, 3, generator=g) if with_start else None
    ref = torch.rand(1, 64, 64, 3, generator=g) if with_ref else None
    node = comfy_extras("nodes_wan").Wan22FunControlToVideo
    pos, _, latent = node.execute(_cond(), _cond(), ref_vae, W, H, FRAMES, 1, ref_image=ref, start_image=start,
                                  control_video=control)
    ours = fun_control_conditioning(ours_vae, None, W, H, FRAMES, control_video=control, start_image=start,
                                    reference_image=ref)
    assert ours.latent_shape() == tuple(latent["samples"].shape)
    ours_y = fit_to_model(ours, CFG).y
    ref_y = _comfy_y(pos[0][1], latent["samples"].shape)
    assert ours_y.shape == ref_y.shape and ours_y.shape[1] == CFG.cond_channels
    for c in range(48, 52):
        assert torch.equal(ours_y[:, c], ref_y[:, c]), f"mask channel {c}"
    err = rel_err(ours_y, ref_y)
    print(f"Fun 5B control (start {with_start}) y rel err vs ComfyUI {err:.2e}", end="")
    assert err <= TOL
    assert ours_y[:, :48, 2:].abs().max() == 0  # after the 5 control frames (2 latent frames): empty
    if with_ref:
        fmt = comfy("comfy.latent_formats").Wan22()
        ref_latent = fmt.process_in(pos[0][1]["reference_latents"][-1])[:, :, 0]
        rerr = rel_err(ours.reference, ref_latent)
        print(f", reference {rerr:.2e}", end="")
        assert ours.reference.shape == ref_latent.shape == (1, 48, H // 16, W // 16) and rerr <= TOL
    else:
        assert ours.reference is None
    print()


def test_5b_control_refuses_the_other_layouts(vae22):  # noqa: F811
    """A 5B conditioning meets a 16-channel control model (or the reverse) as a clear error."""
    ours_vae, _ = vae22
    cond = fun_control_conditioning(ours_vae, None, W, H, FRAMES, control_video=torch.rand(5, H, W, 3))
    with pytest.raises(WanInputError, match="takes 36 conditioning channels, the image_embeds hold 100"):
        fit_to_model(cond, DIT_PRESETS["wan22_fun_control_a14b"])
