"""Wan 2.2 S2V: "Wan Sound Embeds" (speech, a reference image, optional control video and earlier
motion -> WANIMAGEEMBEDS for the Wan Sampler) and "Wan Sound Extend" (the next clip of the speech
after a sampled latent, continuing its motion). The conditioning is ``wan.job.conditioning_s2v``;
the nodes only move the VAE to the compute device and keep their output on the CPU.

audio_encoder_output is ComfyUI's AUDIO_ENCODER_OUTPUT, so "Wan Audio Encode" and ComfyUI's own
AudioEncoderEncode both plug in.
"""

from __future__ import annotations

from ._common import CATEGORY, WANIMAGEEMBEDS, WANVAE, cancellable, main_device, on_device
from ._notices import showing_notices
from ._validate import check_received, validate
from .encoders import _size_inputs, _to_cpu, size_rule

_AUDIO = ("AUDIO_ENCODER_OUTPUT", {"tooltip": "wav2vec2 hidden states of the speech (Wan Audio Encode). Past "
                                              "its end a clip is silent."})
_REF = ("IMAGE", {"tooltip": "The speaker (the first image)."})
_CONTROL = ("IMAGE", {"tooltip": "A pose/control video; its first num_frames frames are used."})


def _cpu(cond):
    sound = cond.sound
    changes = {k: None if v is None else v.cpu() for k, v in vars(sound).items()}
    return _to_cpu(cond).replace(sound=type(sound)(**changes))


class WanSoundEmbeds:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANIMAGEEMBEDS, "INT")
    RETURN_NAMES = ("image_embeds", "audio_frame_offset")
    FUNCTION = "encode"
    DESCRIPTION = ("Wan 2.2 S2V conditioning (ComfyUI's WanSoundImageToVideo): the speaker of ref_image speaks "
                   "the audio. For speech longer than one clip, chain Wan Sound Extend nodes after the sampler.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"vae": (WANVAE,), **_size_inputs(frames=77)},
            "optional": {
                "audio_encoder_output": _AUDIO,
                "ref_image": _REF,
                "control_video": _CONTROL,
                "ref_motion": ("IMAGE", {"tooltip": "Frames before this clip (the last 73 are used) to continue."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None, num_frames=None):
        return validate(size_rule, width=width, height=height, num_frames=num_frames)

    @showing_notices  # a size rounded
    def encode(self, vae, width, height, num_frames, audio_encoder_output=None, ref_image=None, control_video=None,
               ref_motion=None):
        from ..wan.job.conditioning_s2v import sound_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        with on_device(vae, main_device()), cancellable():
            cond, offset = sound_conditioning(vae, width, height, num_frames, audio_encoder_output, ref_image,
                                              control_video, ref_motion)
        return (_cpu(cond), offset)


class WanSoundExtend:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANIMAGEEMBEDS, "INT")
    RETURN_NAMES = ("image_embeds", "audio_frame_offset")
    FUNCTION = "encode"
    DESCRIPTION = ("The next S2V clip (ComfyUI's WanSoundImageToVideoExtend): video_latent is every clip so far "
                   "(join them with LatentConcat on t); this clip continues its last frames and takes the audio "
                   "from where they end. Join its samples after video_latent and decode.")

    @classmethod
    def INPUT_TYPES(cls):
        frames = _size_inputs(frames=77)["num_frames"]
        return {
            "required": {"vae": (WANVAE,), "num_frames": frames,
                         "video_latent": ("LATENT", {"tooltip": "The samples of the clips before."})},
            "optional": {"audio_encoder_output": _AUDIO, "ref_image": _REF, "control_video": _CONTROL},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, num_frames=None):
        return validate(size_rule, num_frames=num_frames)

    @showing_notices
    def encode(self, vae, num_frames, video_latent, audio_encoder_output=None, ref_image=None, control_video=None):
        from ..wan.errors import WanInputError
        from ..wan.job.conditioning_s2v import sound_extend

        check_received(size_rule, num_frames=num_frames)
        if not isinstance(video_latent, dict) or "samples" not in video_latent:
            raise WanInputError("video_latent must be a LATENT (the Wan Sampler's samples)")
        with on_device(vae, main_device()), cancellable():
            cond, offset = sound_extend(vae, num_frames, video_latent["samples"][:1], audio_encoder_output,
                                        ref_image, control_video)
        return (_cpu(cond), offset)


NODE_CLASS_MAPPINGS = {"WanSoundEmbeds": WanSoundEmbeds, "WanSoundExtend": WanSoundExtend}
NODE_DISPLAY_NAME_MAPPINGS = {"WanSoundEmbeds": "Wan Sound Embeds", "WanSoundExtend": "Wan Sound Extend"}
