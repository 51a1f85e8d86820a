"""``python -m wan generate`` flags of the Fun models: which inputs go to a Fun control, inpaint or
camera pipeline (``--control-video``, ``--image``, ``--end-image``, ``--reference-image`` are the
shared input flags; the camera ones are here)."""

from __future__ import annotations

import argparse

from ..errors import WanInputError
from ..job.camera_poses import MOTIONS
from ..job.pipelines_fun import FunCameraPipeline, FunControlPipeline, FunInpaintPipeline


def add_fun_arguments(parser: argparse.ArgumentParser) -> None:
    fun = parser.add_argument_group("Fun models (control: --control-video, --image, --reference-image; "
                                    "inpaint: --image, --end-image)")
    fun.add_argument("--camera-motion", default=None, choices=tuple(MOTIONS),
                     help="Fun camera models: a camera motion preset (ComfyUI's WanCameraEmbedding)")
    fun.add_argument("--camera-speed", type=float, default=1.0, help="speed of --camera-motion (0..10)")


def fun_inputs(args: argparse.Namespace, cls, read_image, read_video) -> dict | None:
    """The pipeline inputs of a Fun pipeline class, or None when ``cls`` is none of them (the
    --camera-motion flag is then refused)."""
    if cls not in (FunControlPipeline, FunInpaintPipeline, FunCameraPipeline):
        if args.camera_motion:
            raise WanInputError("--camera-motion needs a Fun camera (Control-Camera) diffusion model")
        return None
    allowed = {FunControlPipeline: ("image", "control_video", "reference_image"),
               FunInpaintPipeline: ("image", "end_image"), FunCameraPipeline: ("image", "camera_motion")}[cls]
    given = [n for n in ("image", "end_image", "control_video", "reference_image", "camera_motion") if getattr(args, n)]
    extra = [n for n in given if n not in allowed]
    if extra:
        flags = ", ".join("--" + n.replace("_", "-") for n in extra)
        raise WanInputError(f"{flags}: not an input of this diffusion model ({cls.__doc__.split(':')[0]})")
    inputs = {}
    for name in ("image", "end_image", "reference_image"):
        if getattr(args, name):
            inputs[name] = read_image(getattr(args, name))
    if args.control_video:
        inputs["control_video"] = read_video(args.control_video)
    if args.camera_motion:
        inputs.update(camera_motion_name=args.camera_motion, camera_speed=args.camera_speed)
    return inputs
