"""``python -m wan generate`` flags of Wan 2.2 Animate (--pose-video, --face-video with
--reference-image): the driving videos read for the Animate pipeline."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import WanInputError


def add_animate_arguments(inputs: argparse._ArgumentGroup) -> None:
    inputs.add_argument("--pose-video", help="Wan Animate: driving pose video (with --reference-image)")
    inputs.add_argument("--face-video", help="Wan Animate: driving face crops video")


def animate_inputs(args: argparse.Namespace, is_animate: bool, read_image: Callable, read_video: Callable) -> dict:
    """The Animate pipeline's inputs from the flags; WanInputError when they meet another model."""
    if not is_animate:
        if args.pose_video or args.face_video:
            raise WanInputError("--pose-video/--face-video need the Wan 2.2 Animate diffusion model")
        return {}
    if args.image or args.end_image or args.control_video:
        raise WanInputError("Wan Animate takes --reference-image, --pose-video and --face-video "
                            "(not --image/--end-image/--control-video)")
    inputs = {}
    if args.reference_image:
        inputs["reference_image"] = read_image(args.reference_image)
    if args.pose_video:
        inputs["pose_video"] = read_video(args.pose_video)
    if args.face_video:
        inputs["face_video"] = read_video(args.face_video)
    return inputs
