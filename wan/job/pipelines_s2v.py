"""The Wan 2.2 S2V pipeline: ``WanPipeline`` with the conditioning of ``conditioning_s2v``, and
speech longer than one clip made clip by clip (each clip continues the motion of the latents
before it and takes the audio from where they end, as ComfyUI's WanSoundImageToVideoExtend chain)."""

from __future__ import annotations

import torch

from .conditioning import TEMPORAL, as_images
from .conditioning_s2v import audio_clips, sound_conditioning
from .pipelines import WanPipeline, _no_inputs, decode_frames
from ..errors import WanInputError
from ..models.dit.s2v import AUDIO_PER_LATENT


class SoundPipeline(WanPipeline):
    """Wan 2.2 S2V: ``audio_encoder_output`` (ComfyUI's AUDIO_ENCODER_OUTPUT: wav2vec2 hidden
    states), ``ref_image`` (the speaker), optional ``control_video`` (frames of the whole video;
    each clip takes its part) and ``ref_motion`` (frames before the first clip). ``clips``: how
    many clips of ``num_frames`` to make (None: as many as the speech fills)."""

    default_frames = 77

    def conditioning(self, width, height, num_frames, audio_encoder_output=None, ref_image=None,
                     control_video=None, ref_motion=None, motion_latent=None, frame_offset=0, **inputs):
        _no_inputs("Wan S2V", inputs)
        cond, _ = sound_conditioning(self.vae, width, height, num_frames, audio_encoder_output, ref_image,
                                     control_video, ref_motion, motion_latent=motion_latent, frame_offset=frame_offset)
        return cond

    def __call__(self, prompt: str, negative_prompt: str = "", *, num_frames: int | None = None,
                 output_type: str = "frames", audio_encoder_output=None, control_video=None, ref_motion=None,
                 clips: int | None = None, **kw) -> torch.Tensor:
        """``WanPipeline.__call__`` once per clip; returns the frames (or the RAW latent) of all clips."""
        if output_type not in ("frames", "latent"):
            raise WanInputError(f"output_type must be 'frames' or 'latent', got {output_type!r}")
        num_frames = self.default_frames if num_frames is None else num_frames
        if clips is None:
            clips = 1 if audio_encoder_output is None else audio_clips(audio_encoder_output, num_frames)
        if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
            raise WanInputError(f"clips must be an integer >= 1, got {clips!r}")
        step = ((num_frames - 1) // TEMPORAL + 1) * AUDIO_PER_LATENT  # video frames (and audio frames) per clip
        video = None if control_video is None else as_images(control_video, "control_video")
        latent = None
        for k in range(clips):
            inputs = dict(audio_encoder_output=audio_encoder_output, frame_offset=k * step)
            if video is not None and video.shape[0] > k * step:
                inputs["control_video"] = video[k * step:]
            if latent is None:
                inputs["ref_motion"] = ref_motion
            else:
                inputs["motion_latent"] = latent
            part = super().__call__(prompt, negative_prompt, num_frames=num_frames, output_type="latent",
                                    **inputs, **kw)
            latent = part if latent is None else torch.cat([latent, part.to(latent.device)], dim=2)
        return latent if output_type == "latent" else decode_frames(self.vae, latent)
