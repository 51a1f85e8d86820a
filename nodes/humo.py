"""HuMo: the "Wan HuMo Embeds" node (speech as an AUDIO_ENCODER_OUTPUT of whisper large v3 and a
reference image -> WANIMAGEEMBEDS for the Wan Sampler). The conditioning is
``wan.job.conditioning_humo``; the node only moves the VAE to the compute device and keeps its output
on the CPU. ComfyUI core's Audio Encoder Encode output plugs in as well as Wan Audio Encode's.
"""

from __future__ import annotations

from ._common import WANVAE, cancellable, main_device, on_device
from ._notices import showing_notices
from ._validate import check_received
from .encoders import EmbedsNode, _size_inputs, _to_cpu, size_rule


class WanHuMoEmbeds(EmbedsNode):
    DESCRIPTION = ("HuMo conditioning: the subject of the reference image speaking the audio (whisper large v3 "
                   "features from Wan Audio Encode). Audio shorter than the video leaves the rest silent. HuMo "
                   "was trained at 25 fps: save the video at 25.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (WANVAE,),
                **_size_inputs(frames=97),
            },
            "optional": {
                "audio_encoder_output": ("AUDIO_ENCODER_OUTPUT", {
                    "tooltip": "Speech encoded by whisper large v3 (Wan Audio Encode); absent: a silent video."}),
                "reference_image": ("IMAGE", {
                    "tooltip": "The subject (first frame used; centre-cropped and resized to the video size)."}),
            },
        }

    @showing_notices  # a size rounded, audio shorter than the video
    def encode(self, vae, width, height, num_frames, audio_encoder_output=None, reference_image=None):
        from ..wan.job.conditioning_humo import humo_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        with on_device(vae, main_device()), cancellable():
            cond = humo_conditioning(vae, width, height, num_frames, audio_encoder_output, reference_image)
        return (_to_cpu(cond),)


NODE_CLASS_MAPPINGS = {"WanHuMoEmbeds": WanHuMoEmbeds}
NODE_DISPLAY_NAME_MAPPINGS = {"WanHuMoEmbeds": "Wan HuMo Embeds"}
