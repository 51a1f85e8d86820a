"""Pipelines of Phantom (subject images on a Wan2.1 T2V model, dual CFG) and ATI (trajectory
control on the Wan2.1 I2V 14B model): ``T2VPipeline`` and ``I2VPipeline`` with the conditioning of
``conditioning_phantom`` and ``conditioning_ati``.

Neither model differs from its base in its weights (Phantom-Wan is a T2V 14B/1.3B, ATI an I2V 14B,
tensor for tensor; ComfyUI has no detection for them either), so the task follows the inputs, not
the file: ``subject_pipeline_class`` picks Phantom when subject images are given to a text-to-video
model and ATI when tracks are given to an image-to-video one.
"""

from __future__ import annotations

import math

import torch

from ..errors import WanInputError
from .conditioning import as_images, encode_prompts, fit_images, t2v_conditioning
from .conditioning_ati import ati_conditioning
from .conditioning_phantom import SUBJECT_CFG, phantom_conditioning
from .pipelines import I2VPipeline, T2VPipeline, WanPipeline, _no_inputs


def subject_batch(images, width: int, height: int) -> torch.Tensor | None:
    """Subject images as one batch [N, H, W, 3]: a tensor as it is, or a list of images of any sizes,
    each centre-cropped and resized to the video's (rounded) size as ComfyUI's node resizes them."""
    if images is None or isinstance(images, torch.Tensor):
        return images
    if not isinstance(images, (list, tuple)) or not images:
        raise WanInputError("subject_images must be a tensor [N, H, W, 3] or a non-empty list of images")
    size = t2v_conditioning(width, height, 1)
    return torch.cat([fit_images(as_images(im, f"subject_images[{i}]"), size.width, size.height)
                      for i, im in enumerate(images)])


class PhantomPipeline(T2VPipeline):
    """Phantom subject to video: ``subject_images`` (a [N, H, W, 3] batch or a list of images, at
    most num_frames used) and ``subject_cfg``, the subject scale of the dual CFG (the call's ``cfg``
    is the text scale). Without subject images: plain text-to-video."""

    def conditioning(self, width, height, num_frames, subject_images=None, subject_cfg=SUBJECT_CFG, **inputs):
        _no_inputs("Phantom", inputs)
        return phantom_conditioning(self.vae, subject_batch(subject_images, width, height), width, height,
                                    num_frames, subject_cfg)

    def prepare(self, prompt: str, negative_prompt: str = "", *args, **kw):
        job = super().prepare(prompt, negative_prompt, *args, **kw)
        # the dual CFG's middle and uncond passes need the negative prompt even at cfg 1
        # (DualCFGGuider runs them whenever the subject scale is not 1)
        if job.image.subject is not None and job.text.negative is None and not math.isclose(job.image.subject_cfg, 1.0):
            job = job._replace(text=encode_prompts(self.text_encoder, prompt, negative_prompt))
        return job


class ATIPipeline(I2VPipeline):
    """ATI trajectory control: ``image`` (the start frame) and ``tracks`` (JSON text as ComfyUI's
    WanTrackToVideo takes it, or parsed tracks), ``temperature`` and ``topk``; no tracks: plain
    image-to-video."""

    def conditioning(self, width, height, num_frames, image=None, tracks=None, temperature=220.0, topk=2, **inputs):
        _no_inputs("ATI", inputs)
        if image is None:
            raise WanInputError("ATI needs image= (the start frame, [H, W, 3] or [N, H, W, 3] in 0..1)")
        has_clip = getattr(getattr(self.dit, "cfg", None), "has_image_emb", self.clip_vision is not None)
        if has_clip and self.clip_vision is None:
            raise WanInputError("this image-to-video model needs a CLIP vision encoder (clip_vision_h)")
        return ati_conditioning(self.vae, self.clip_vision if has_clip else None, image,
                                "[]" if tracks is None else tracks, width, height, num_frames, temperature, topk)


def subject_pipeline_class(cls: type[WanPipeline], subject: bool, tracks: bool) -> type[WanPipeline]:
    """The pipeline class for a model's task class ``cls`` given subject images and/or tracks: Phantom
    on a text-to-video model, ATI on an image-to-video one; ``cls`` when neither is given."""
    if subject and tracks:
        raise WanInputError("subject images (Phantom) and tracks (ATI) are inputs of different models: give one")
    if subject:
        if cls is not T2VPipeline:
            raise WanInputError(f"subject images (Phantom) need a text-to-video model (Phantom-Wan), not "
                                f"{cls.__doc__.split(':')[0].split('(')[0].strip()}")
        return PhantomPipeline
    if tracks:
        if cls is not I2VPipeline:
            raise WanInputError(f"tracks (ATI) need the Wan2.1 ATI image-to-video model, not "
                                f"{cls.__doc__.split(':')[0].split('(')[0].strip()}")
        return ATIPipeline
    return cls
