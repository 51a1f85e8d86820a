"""HuMo conditioning: text + a reference image + speech -> what the DiT takes, the same numbers as
ComfyUI's WanHuMoImageToVideo (and its model's extra_conds) build.

Speech arrives as an AUDIO_ENCODER_OUTPUT (whisper large v3: every hidden state, 50 per second);
each latent frame gets a window of 8 whisper frames (at 25 per second, the video's rate) of 5 layer
groups. Audio shorter than the video leaves the later frames silent (zeros), as ComfyUI does, and
says so. The negative pass is silent and sees a blank reference (``humo_conds``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .conditioning import TEMPORAL, VideoConditioning, _check_vae, as_images, check_size, fit_images, \
    normalize_latent, vae_encode
from ..errors import WanInputError
from ..models.dit.humo import AUDIO_GROUPS, WHISPER_DIM
from ..notices import notify

WHISPER_RATE, VIDEO_RATE = 50, 25  # whisper hidden states per second; HuMo's frame rate
SAMPLES_PER_FRAME = 640  # 16 kHz audio samples per video frame at 25 fps
WHISPER_LAYERS = 33  # whisper large v3's hidden states: the embedding and 32 layers
# hidden states averaged into each of the 5 groups (the last group is the final layer alone)
_GROUPS = ((0, 8), (8, 16), (16, 24), (24, 32), (32, 33))
_SHIFT = 2  # audio frames either side of a latent frame's 4 video frames


@dataclass(frozen=True)
class HumoInputs:
    """audio: [1, T, 8, 5, 1280] whisper windows per latent frame (None: silence); reference /
    blank_reference: [1, 16, 1, h, w] normalised latents of the reference image (a black frame when none
    is given) and of the negative pass's blank one."""

    audio: torch.Tensor | None
    reference: torch.Tensor
    blank_reference: torch.Tensor


def _layers(encoded) -> torch.Tensor:
    if not isinstance(encoded, dict) or "encoded_audio_all_layers" not in encoded or "audio_samples" not in encoded:
        raise WanInputError("audio_encoder_output must be an AUDIO_ENCODER_OUTPUT (a dict with encoded_audio_all_layers "
                            "and audio_samples: Wan Audio Encode or ComfyUI's Audio Encoder Encode)")
    layers = encoded["encoded_audio_all_layers"]
    if not isinstance(layers, (list, tuple)) or len(layers) < WHISPER_LAYERS:
        raise WanInputError(f"HuMo takes whisper large v3's {WHISPER_LAYERS} hidden states; the audio encoder output "
                            f"has {len(layers) if isinstance(layers, (list, tuple)) else 'no list of'} layers "
                            "(a wav2vec2 encoder is S2V's, not HuMo's)")
    emb = torch.stack([torch.as_tensor(x).float().cpu() for x in layers], dim=2)  # [B, T, L, D]
    if emb.ndim != 4:
        raise WanInputError(f"audio encoder layers of shape {tuple(emb.shape[:2]) + tuple(emb.shape[3:])}: HuMo takes "
                            f"whisper large v3's [B, T, {WHISPER_DIM}]")  # the width is the model's to check
    return emb


def audio_windows(encoded: dict, num_frames: int) -> torch.Tensor:
    """AUDIO_ENCODER_OUTPUT -> [1, latent frames, 8, 5, 1280]: per latent frame the whisper features
    (resampled to 25 per second, 5 layer groups) of its video frames and 2 either side; the first
    latent frame (one video frame) gets 3 silent ones in front."""
    emb = _layers(encoded)
    kept = int(encoded["audio_samples"]) // SAMPLES_PER_FRAME * 2  # whisper pads its input to 30 s
    emb = emb[:1, :kept]
    groups = torch.stack([emb[:, :, a:b].mean(dim=2) for a, b in _GROUPS], dim=2)[0]  # [T, 5, D]
    frames = int(groups.shape[0] / WHISPER_RATE * VIDEO_RATE)
    if frames < 1:
        raise WanInputError(f"the audio is too short for HuMo ({encoded['audio_samples']} samples: "
                            "not one video frame)")
    feats = F.interpolate(groups.flatten(1).T[None], size=frames, mode="linear", align_corners=True)[0].T
    feats = feats.view(frames, AUDIO_GROUPS, emb.shape[-1])
    latent_frames = (num_frames - 1) // TEMPORAL + 1
    # index i of every window: frame 0 sees 3 silent slots then frames -2..2; latent frame k >= 1
    # sees video frames 4k-3..4k and 2 either side
    first = [-1 << 30] * 3 + list(range(-_SHIFT, _SHIFT + 1))
    rest = [list(range(4 * k - 3 - _SHIFT, 4 * k + 1 + _SHIFT)) for k in range(1, latent_frames)]
    index = torch.tensor([first] + rest)
    if int(index.max()) >= frames:
        notify(f"the audio covers {frames} video frames, fewer than the {num_frames} asked: the rest is silent")
    padded = torch.cat([feats, feats.new_zeros(1, AUDIO_GROUPS, emb.shape[-1])])  # the last row: silence
    inside = (index >= 0) & (index < frames)
    return padded[torch.where(inside, index, frames)][None]  # [1, T, 8, 5, D]


def humo_conditioning(vae, width: int, height: int, num_frames: int, audio_encoder_output: dict | None = None,
                      reference_image: torch.Tensor | None = None) -> VideoConditioning:
    """The conditioning of one HuMo video. reference_image: [N, H, W, 3] in 0..1 at any size (its first
    frame, centre-cropped and bilinear-resized to the output size); audio_encoder_output: whisper large
    v3's AUDIO_ENCODER_OUTPUT (None: a silent video)."""
    _check_vae(vae, 16, "HuMo")
    w, h, f = check_size(width, height, num_frames, 16)
    audio = None if audio_encoder_output is None else audio_windows(audio_encoder_output, f)
    if reference_image is None:
        raw = torch.zeros(1, 16, 1, h // 8, w // 8)
    else:
        raw = vae_encode(vae, fit_images(as_images(reference_image, "reference_image")[:1], w, h, "bilinear")).cpu()
    humo = HumoInputs(audio, normalize_latent(raw), normalize_latent(torch.zeros_like(raw)))
    return VideoConditioning(w, h, f, 16, humo=humo)


def humo_conds(humo: HumoInputs, pos: dict, neg: dict | None, device) -> None:
    """The DiT keywords of a HuMo run: the negative pass is silent and sees the blank reference."""
    if humo.audio is not None:
        pos["audio_embed"] = humo.audio.to(device)
    pos["reference_latent"] = humo.reference.to(device)
    if neg is not None:
        neg["reference_latent"] = humo.blank_reference.to(device)


def check_humo(dit, image: VideoConditioning, run) -> None:
    """Refuse what HuMo cannot run, before any work."""
    cfg = getattr(dit, "cfg", None)
    if not getattr(cfg, "is_humo", False):
        if getattr(image, "humo", None) is not None and cfg is not None:
            raise WanInputError(f"the conditioning is HuMo's (Wan HuMo Embeds) but the model is {cfg.variant}: "
                                "load a HuMo model (humo_1_7b or humo_17b)")
        return
    if run.context is not None:
        raise WanInputError("context windows do not apply to HuMo: the reference frame and the audio windows belong "
                            "to the whole clip (make the video at full length)")
    if run.parallel is not None and run.parallel.size > 1:
        raise WanInputError("HuMo runs on one GPU: its audio attention groups the tokens per latent frame, which a "
                            "sequence split cuts")
