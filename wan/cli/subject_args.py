"""``python -m wan generate`` flags of Phantom (``--subject-image``, repeatable, and ``--subject-cfg``
on a text-to-video model) and ATI (``--tracks FILE.json``, ``--track-temperature``, ``--track-topk``
with ``--image`` on the ATI image-to-video model). Neither model is told apart from its base by its
weights, so the flags choose the pipeline (``pipelines_phantom.subject_pipeline_class``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import WanInputError
from ..job.conditioning_phantom import SUBJECT_CFG
from ..job.pipelines_phantom import ATIPipeline, PhantomPipeline, subject_pipeline_class
from ..job.tracks import parse_tracks


def add_subject_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Phantom (subject images, a text-to-video model) and ATI (tracks, with --image)")
    group.add_argument("--subject-image", action="append", default=[], metavar="FILE",
                       help="Phantom: a subject image (repeatable, 1-4 as Phantom was trained; cropped and "
                            "resized to the video's size)")
    group.add_argument("--subject-cfg", type=float, default=None, metavar="SCALE",
                       help=f"Phantom: the subject scale of the dual CFG (default {SUBJECT_CFG}; --cfg is the "
                            "text scale; 1: plain CFG)")
    group.add_argument("--tracks", default=None, metavar="FILE.json",
                       help='ATI: point tracks as ComfyUI\'s WanTrackToVideo takes them ([[{"x": .., "y": ..}, '
                            "...], ...] in pixels of the video, 24 fps)")
    group.add_argument("--track-temperature", type=float, default=None, metavar="T",
                       help="ATI: the tracks' temperature (1..1000, default 220)")
    group.add_argument("--track-topk", type=int, default=None, metavar="K",
                       help="ATI: tracks mixed per latent pixel (1..10, default 2)")


def subject_class(args: argparse.Namespace, cls):
    """The pipeline class the Phantom/ATI flags make of the model's ``cls``; their options are
    refused without the input they tune."""
    if args.subject_cfg is not None and not args.subject_image:
        raise WanInputError("--subject-cfg tunes Phantom's subject images: give --subject-image too")
    if (args.track_temperature is not None or args.track_topk is not None) and not args.tracks:
        raise WanInputError("--track-temperature and --track-topk tune ATI's tracks: give --tracks too")
    return subject_pipeline_class(cls, bool(args.subject_image), bool(args.tracks))


def subject_inputs(args: argparse.Namespace, cls, read_image: Callable) -> dict:
    """The Phantom or ATI pipeline inputs of the flags ({} for the other classes)."""
    if cls is PhantomPipeline:
        cfg = SUBJECT_CFG if args.subject_cfg is None else args.subject_cfg
        return dict(subject_images=[read_image(path) for path in args.subject_image], subject_cfg=cfg)
    if cls is not ATIPipeline:
        return {}
    try:
        with open(args.tracks, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise WanInputError(f"cannot read --tracks {args.tracks}: {exc}") from None
    out = dict(tracks=parse_tracks(text, name=f"--tracks {args.tracks}"))
    if args.track_temperature is not None:
        out["temperature"] = args.track_temperature
    if args.track_topk is not None:
        out["topk"] = args.track_topk
    return out
