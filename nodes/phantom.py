"""Phantom (subject to video) and ATI (trajectory control) nodes: conditioning for the Wan Sampler.

Wan Phantom Embeds builds the subject frames as ComfyUI's WanPhantomSubjectToVideo does, with the
subject scale of the DualCFGGuider its Phantom graphs use (the sampler's cfg is the text scale,
cfg_conds). Wan Track Embeds builds ATI's image-to-video conditioning as WanTrackToVideo does from
the same JSON tracks text.
"""

from __future__ import annotations

from ._common import WANCLIPEMBEDS, WANVAE, cancellable, main_device, on_device
from ._validate import check_received
from .encoders import EmbedsNode, _size_inputs, _to_cpu, size_rule


class WanPhantomEmbeds(EmbedsNode):
    DESCRIPTION = ("Phantom subject to video (Phantom-Wan, a Wan2.1 T2V model): subject images joined to the video "
                   "on the time axis, guided by a dual CFG: the sampler's cfg pulls to the prompt, subject_cfg to "
                   "the subjects (ComfyUI's WanPhantomSubjectToVideo + DualCFGGuider).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (WANVAE,), **_size_inputs(),
                             "subject_cfg": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                                       "round": 0.01, "tooltip": (
                                                           "Subject guidance scale (DualCFGGuider's "
                                                           "cfg_cond2_negative); 1: plain CFG on the prompt.")})},
                "optional": {"subject_images": ("IMAGE", {
                    "tooltip": "Up to num_frames subject images (Phantom was trained on 1-4); resized and "
                               "cropped to the size."})}}

    def encode(self, vae, width, height, num_frames, subject_cfg, subject_images=None):
        from ..wan.job.conditioning_phantom import phantom_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        with on_device(vae, main_device()), cancellable():
            cond = phantom_conditioning(vae, subject_images, width, height, num_frames, subject_cfg)
        return (_to_cpu(cond),)


class WanTrackEmbeds(EmbedsNode):
    DESCRIPTION = ("ATI trajectory control (the Wan2.1 ATI 14B I2V model): a start image and point tracks as "
                   "ComfyUI's WanTrackToVideo takes them (JSON: one list of {x, y} pixel points per track, 24 "
                   "fps, 121 points); an empty list is plain image-to-video.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (WANVAE,), "start_image": ("IMAGE", {"tooltip": "The first frame."}),
                             "tracks": ("STRING", {"multiline": True, "default": "[]"}), **_size_inputs(),
                             "temperature": ("FLOAT", {"default": 220.0, "min": 1.0, "max": 1000.0, "step": 0.1}),
                             "topk": ("INT", {"default": 2, "min": 1, "max": 10})},
                "optional": {"clip_embeds": (WANCLIPEMBEDS, {"tooltip": "Wan CLIP Vision Encode of the start image."})}}

    def encode(self, vae, start_image, tracks, width, height, num_frames, temperature, topk, clip_embeds=None):
        from ..wan.job.conditioning_ati import ati_conditioning
        from ..wan.job.tracks import parse_tracks

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        parsed = parse_tracks(tracks)  # a typo fails here, before the VAE moves
        with on_device(vae, main_device()), cancellable():
            cond = ati_conditioning(vae, None, start_image, parsed, width, height, num_frames, temperature, topk)
        return (_to_cpu(cond.replace(clip_fea=clip_embeds)),)


NODE_CLASS_MAPPINGS = {"WanPhantomEmbeds": WanPhantomEmbeds, "WanTrackEmbeds": WanTrackEmbeds}
NODE_DISPLAY_NAME_MAPPINGS = {"WanPhantomEmbeds": "Wan Phantom Embeds", "WanTrackEmbeds": "Wan Track Embeds"}
