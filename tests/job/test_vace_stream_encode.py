"""The VACE control video is VAE-encoded chunk by chunk (wan.job.conditioning.vae_encode_chunks):
the context equals the one-shot encode of the whole masked video (the official and ComfyUI way:
build every frame, encode at once), and the VAE never sees more than one causal chunk (1, then 4
frames). The streaming encoder itself equals ``WanVAE.encode``, untiled and tiled."""

import pytest
import torch

from vae_fixtures import TINY21, random_weights
from wan.errors import WanInputError
from wan.job.conditioning import fit_images, normalize_latent, vace_conditioning, vae_encode
from wan.models.vae.wan21 import WanVAE

W, H, FRAMES = 48, 32, 13


@pytest.fixture(scope="module")
def vae():
    torch.set_num_threads(2)
    model = WanVAE(TINY21).eval()
    model.load_state_dict(random_weights(model.state_dict(), seed=5))
    return model


@pytest.mark.parametrize("tile", [None, (16, 8)])
def test_encode_chunks_equal_encode(vae, tile):
    video = torch.rand(1, 3, 9, H, W) * 2 - 1
    whole = vae.encode(video, tile=tile)
    chunks = [video[:, :, :1], video[:, :, 1:5], video[:, :, 5:9]]
    streamed = torch.cat(list(vae.encode_chunks(iter(chunks), (H, W), tile=tile)), dim=2)
    assert torch.equal(streamed, whole)


def test_encode_chunks_refuse_a_chunk_of_the_wrong_length(vae):
    video = torch.rand(1, 3, 9, H, W)
    with pytest.raises(WanInputError, match=r"chunk 2 must be \[B, 3, 4, 32, 48\]"):
        list(vae.encode_chunks(iter([video[:, :, :1], video[:, :, 1:4]]), (H, W)))


def test_vace_context_equals_the_one_shot_encode(vae, monkeypatch):
    control = torch.rand(10, 40, 64, 3)  # shorter than FRAMES (grey after it) and another size (fitted)
    mask = (torch.rand(FRAMES, 40, 64) > 0.5).float()
    seen = []
    encode_chunk = vae._encode_chunk
    monkeypatch.setattr(vae, "_encode_chunk", lambda x, cache: seen.append(x.shape[2]) or encode_chunk(x, cache))
    ours = vace_conditioning(vae, W, H, FRAMES, 1.0, control_video=control, mask=mask)
    assert max(seen) == 4 and len(seen) == 2 * 4  # two videos of 13 frames: 1 + 4 + 4 + 4 each
    monkeypatch.undo()

    video = torch.cat([fit_images(control, W, H), torch.full((FRAMES - 10, H, W, 3), 0.5)])
    m = fit_images(mask[..., None], W, H)
    inactive = vae_encode(vae, (video - 0.5) * (1 - m) + 0.5)
    reactive = vae_encode(vae, (video - 0.5) * m + 0.5)
    expected = torch.cat([normalize_latent(inactive), normalize_latent(reactive)], dim=1)
    assert torch.equal(ours.vace_context[0, 0, :32], expected[0])
