"""Pipelines of the Fun models (VideoX-Fun inpaint, control, camera): ``WanPipeline`` with the
conditioning of ``conditioning_fun``. The task follows the model: ``fun_pipeline_class``."""

from __future__ import annotations

from ..errors import WanInputError
from .camera_poses import camera_embedding, camera_motion
from .conditioning_fun import fun_camera_conditioning, fun_control_conditioning, fun_inpaint_conditioning
from .pipelines import WanPipeline, _no_inputs


class _FunPipeline(WanPipeline):
    needs_clip = True

    def _clip(self):
        has_clip = getattr(getattr(self.dit, "cfg", None), "has_image_emb", self.clip_vision is not None)
        if has_clip and self.clip_vision is None:
            raise WanInputError("this Fun model takes CLIP vision tokens of the start image: give clip_vision_h")
        return self.clip_vision if has_clip else None


class FunInpaintPipeline(_FunPipeline):
    """Fun inpaint: ``image`` (start frames) and/or ``end_image``."""

    def conditioning(self, width, height, num_frames, image=None, end_image=None, **inputs):
        _no_inputs("Fun inpaint", inputs)
        if image is None and end_image is None:
            raise WanInputError("Fun inpaint needs image= (start frames), end_image= or both")
        return fun_inpaint_conditioning(self.vae, self._clip() if image is not None else None, width, height,
                                        num_frames, start_image=image, end_image=end_image)


class FunControlPipeline(_FunPipeline):
    """Fun control: ``control_video`` [N, H, W, 3] and optional ``image`` (start frames) and
    ``reference_image``."""

    def conditioning(self, width, height, num_frames, control_video=None, image=None, reference_image=None,
                     **inputs):
        _no_inputs("Fun control", inputs)
        if control_video is None:
            raise WanInputError("Fun control needs control_video= (frames [N, H, W, 3] in 0..1)")
        return fun_control_conditioning(self.vae, self._clip() if image is not None else None, width, height,
                                        num_frames, control_video=control_video, start_image=image,
                                        reference_image=reference_image)


class FunCameraPipeline(_FunPipeline):
    """Fun camera: ``camera`` (a [1, 24, T, H, W] embedding) or ``camera_motion`` (a preset name of
    ``camera_poses.MOTIONS``, with ``camera_speed``), and optional ``image`` (start frames)."""

    def conditioning(self, width, height, num_frames, camera=None, camera_motion_name=None, camera_speed=1.0,
                     image=None, **inputs):
        _no_inputs("Fun camera", inputs)
        if camera is None and camera_motion_name is not None:
            camera = camera_embedding(camera_motion(camera_motion_name, num_frames, camera_speed), width, height)
        return fun_camera_conditioning(self.vae, self._clip() if image is not None else None, width, height,
                                       num_frames, camera=camera, start_image=image)


def fun_pipeline_class(cfg) -> type[WanPipeline] | None:
    """The Fun pipeline of a DiT config, or None for the other tasks."""
    if cfg.model_type == "fun_control":
        return FunControlPipeline
    if cfg.model_type == "camera":
        return FunCameraPipeline
    if cfg.variant.startswith("fun_inpaint"):
        return FunInpaintPipeline
    return None
