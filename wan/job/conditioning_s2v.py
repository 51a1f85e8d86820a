"""Wan 2.2 S2V conditioning: speech (wav2vec2 hidden states), a reference image, an optional
control video and the motion of earlier frames -> what the S2V DiT takes, the same numbers as
ComfyUI's WanSoundImageToVideo and WanSoundImageToVideoExtend.

The audio follows the reference pipeline: the encoder's 50 frames per second are resampled to 30,
then picked at the video's 16 fps in buckets of whole clips (frames past the end of the speech are
silent, zeros); each clip takes ``4 * latent frames`` of them from ``frame_offset`` on. A long
speech is made clip after clip (``sound_extend``), each continuing the motion of the latents
before it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .conditioning import TEMPORAL, VideoConditioning, _check_vae, as_images, check_size, fit_images, normalize_latent, vae_encode
from ..errors import WanInputError
from ..models.dit.s2v import AUDIO_PER_LATENT, MOTION_FRAMES, SoundInputs

ENCODER_RATE = 50  # wav2vec2 hidden-state frames per second of speech
AUDIO_RATE = 30  # the rate the S2V pipeline resamples them to
FPS = 16  # the S2V model's video frame rate
MOTION_VIDEO_FRAMES = (MOTION_FRAMES - 1) * TEMPORAL + 1  # 73 frames -> 19 motion latent frames


def audio_features(audio_encoder_output) -> torch.Tensor:
    """ComfyUI's AUDIO_ENCODER_OUTPUT -> [layers, frames at 30 fps, dim] float32."""
    if not isinstance(audio_encoder_output, dict) or "encoded_audio_all_layers" not in audio_encoder_output:
        raise WanInputError("audio_encoder_output must be an AUDIO_ENCODER_OUTPUT (a dict with "
                            "'encoded_audio_all_layers', as Wan Audio Encode or AudioEncoderEncode give it)")
    layers = list(audio_encoder_output["encoded_audio_all_layers"])
    if not layers or any(not isinstance(x, torch.Tensor) or x.ndim != 3 for x in layers):
        raise WanInputError("audio_encoder_output['encoded_audio_all_layers'] must hold [B, frames, dim] tensors")
    feat = torch.cat(layers).float()  # [layers * B, T, D]
    if feat.shape[1] < 1:
        raise WanInputError("audio_encoder_output holds no audio frames (empty audio)")
    size = int(feat.shape[1] / ENCODER_RATE * AUDIO_RATE)
    if size < 1:
        raise WanInputError(f"the audio is too short: {feat.shape[1]} encoder frames ({feat.shape[1] / ENCODER_RATE:.3f} s)")
    return F.interpolate(feat.transpose(1, 2), size=size, mode="linear", align_corners=True).transpose(1, 2)


def audio_buckets(feat: torch.Tensor, clip_frames: int) -> torch.Tensor:
    """[layers, T, dim] at 30 fps -> [1, layers, dim, N] at the video's 16 fps, N a whole number of
    clips of ``clip_frames`` covering the speech (frames after its end are zeros)."""
    layers, t, dim = feat.shape
    clips = int(t / (clip_frames * AUDIO_RATE / FPS)) + 1
    n = clips * clip_frames
    total = math.ceil(n / FPS * AUDIO_RATE)  # the speech padded to whole clips
    picks = np.round(np.linspace(0.0, n / FPS, n, endpoint=False) * AUDIO_RATE).astype(int)
    picks = torch.as_tensor(np.clip(picks, 0, total - 1))
    out = feat.new_zeros(layers, n, dim)
    inside = picks < t
    out[:, inside] = feat[:, picks[inside]]
    return out.permute(0, 2, 1)[None]


def _fitted(images, name: str, width: int, height: int) -> torch.Tensor:
    return fit_images(as_images(images, name), width, height, "bilinear")


def sound_conditioning(
    vae,
    width: int,
    height: int,
    num_frames: int,
    audio_encoder_output=None,
    ref_image=None,
    control_video=None,
    ref_motion=None,
    motion_latent: torch.Tensor | None = None,
    frame_offset: int = 0,
) -> tuple[VideoConditioning, int]:
    """The conditioning of one S2V clip and the audio frame the next clip starts at.

    Images are [N, H, W, 3] in 0..1 at any size (centre-cropped and resized bilinearly, as ComfyUI).
    ref_image: the speaker (first image); control_video: a pose/control video, its first
    ``num_frames`` frames (later latent frames get none); ref_motion: frames before this clip (the
    last 73 are kept, fewer are padded in front with grey); motion_latent: instead of ref_motion,
    the RAW latent [1, 16, T, h, w] of the clips before (``sound_extend``); frame_offset: the audio
    frame (at 16 fps) this clip starts at. Past the end of the speech a clip gets no audio.
    """
    _check_vae(vae, 16, "Wan S2V")
    w, h, f = check_size(width, height, num_frames, 16)
    if isinstance(frame_offset, bool) or not isinstance(frame_offset, int) or frame_offset < 0:
        raise WanInputError(f"frame_offset must be an integer >= 0, got {frame_offset!r}")
    latent_t = (f - 1) // TEMPORAL + 1
    clip = latent_t * AUDIO_PER_LATENT
    audio = None
    if audio_encoder_output is not None:
        embed = audio_buckets(audio_features(audio_encoder_output), clip)[..., frame_offset:frame_offset + clip]
        if embed.shape[3] > 0:
            if embed.shape[3] < clip:  # a clip longer than the earlier ones: silence after the speech
                embed = F.pad(embed, (0, clip - embed.shape[3]))
            audio = embed
            frame_offset += clip
    reference = None
    if ref_image is not None:
        reference = normalize_latent(vae_encode(vae, _fitted(ref_image, "ref_image", w, h)[:1])).cpu()
    if ref_motion is not None:
        frames = _fitted(as_images(ref_motion, "ref_motion")[-MOTION_VIDEO_FRAMES:], "ref_motion", w, h)
        if frames.shape[0] < MOTION_VIDEO_FRAMES:
            grey = torch.full((MOTION_VIDEO_FRAMES, h, w, 3), 0.5, dtype=frames.dtype)
            grey[-frames.shape[0]:] = frames
            frames = grey
        motion_latent = vae_encode(vae, frames)
    motion = None
    if motion_latent is not None:
        if motion_latent.ndim != 5 or motion_latent.shape[1] != 16 or tuple(motion_latent.shape[3:]) != (h // 8, w // 8):
            raise WanInputError(f"video_latent of shape {tuple(motion_latent.shape)}: expected a Wan2.1 latent "
                                f"[1, 16, frames, {h // 8}, {w // 8}]")
        motion = normalize_latent(motion_latent[:1, :, -MOTION_FRAMES:].float()).cpu()
    control = torch.zeros(1, 16, latent_t, h // 8, w // 8)
    if control_video is not None:
        encoded = normalize_latent(vae_encode(vae, _fitted(as_images(control_video, "control_video")[:f],
                                                           "control_video", w, h))).cpu()
        control[:, :, :encoded.shape[2]] = encoded
    sound = SoundInputs(audio_embed=audio, reference=reference, motion=motion, control=control)
    return VideoConditioning(w, h, f, 16, sound=sound), frame_offset


def sound_extend(vae, num_frames: int, video_latent: torch.Tensor, audio_encoder_output=None, ref_image=None,
                 control_video=None) -> tuple[VideoConditioning, int]:
    """The next clip after ``video_latent`` (the RAW latent [1, 16, T, h, w] of every clip so far):
    its size, its motion and its audio offset come from that latent (ComfyUI's
    WanSoundImageToVideoExtend)."""
    if not isinstance(video_latent, torch.Tensor) or video_latent.ndim != 5:
        raise WanInputError("video_latent must be a Wan video latent [B, 16, T, h, w]")
    h, w = video_latent.shape[-2] * 8, video_latent.shape[-1] * 8
    return sound_conditioning(vae, w, h, num_frames, audio_encoder_output, ref_image, control_video,
                              motion_latent=video_latent, frame_offset=video_latent.shape[2] * TEMPORAL)


def audio_clips(audio_encoder_output, num_frames: int) -> int:
    """How many clips of ``num_frames`` the speech fills (the last one partly)."""
    f = (num_frames - 1) // TEMPORAL * TEMPORAL + 1
    clip = ((f - 1) // TEMPORAL + 1) * AUDIO_PER_LATENT
    return max(1, math.ceil(audio_features(audio_encoder_output).shape[1] / AUDIO_RATE * FPS / clip))


def check_sound(dit, image: VideoConditioning, run) -> None:
    """Refuse, before sampling, what S2V cannot run: S2V embeds on another model, and context
    windows or a multi-GPU sequence split on the S2V model."""
    cfg = getattr(dit, "cfg", None)
    is_s2v = getattr(cfg, "is_s2v", False)
    if getattr(image, "sound", None) is not None and not is_s2v:
        raise WanInputError("the conditioning has speech / motion inputs (Wan Sound Embeds) but the model is "
                            f"{getattr(cfg, 'variant', 'not a Wan DiT')}: load the Wan 2.2 S2V model")
    if not is_s2v:
        return
    # Audio tokens belong to whole latent frames of the whole clip and the reference / motion
    # tokens to the whole sequence: a window or a token split would cut them apart.
    if run.context is not None:
        raise WanInputError("context windows do not apply to Wan S2V: make a long video clip by clip "
                            "(Wan Sound Extend, or the library's sound pipeline, continues each clip)")
    if run.parallel is not None and run.parallel.size > 1:
        raise WanInputError("Wan S2V runs on one GPU: its audio injector attends per latent frame and its "
                            "reference / motion tokens follow the video's, which a sequence split cuts")
