"""``python -m wan generate`` flags of HuMo (--audio with --audio-encoder, --reference-image): the
speech encoded by the audio encoder (whisper large v3) for the HuMo pipeline. The flag names are
S2V's too (s2v_args.py): one audio flag whichever audio model runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import WanInputError


def add_humo_arguments(inputs: argparse._ArgumentGroup) -> None:
    inputs.add_argument("--audio", help="HuMo: speech audio file (with --audio-encoder)")
    inputs.add_argument("--audio-encoder", help="HuMo: whisper large v3 audio encoder file")


def encode_audio_file(audio: str, encoder: str) -> dict:
    """The AUDIO_ENCODER_OUTPUT of an audio file through the encoder file: the audio library's
    ``load_audio_encoder(encoder).encode(waveform, sample_rate)`` on the file's waveform.

    The audio library (wan/audio, wan/models/audio) is built beside this branch; at the merge its two
    imports go to the top of this module and this body becomes those two calls."""
    raise WanInputError(f"--audio {audio}: this build has no audio library (wan.audio, wan.models.audio) "
                        f"to read it and run the encoder {encoder}")


def humo_inputs(args: argparse.Namespace, read_image: Callable) -> dict:
    """The HuMo pipeline's inputs from the flags; WanInputError for flags HuMo takes no input of."""
    if args.image or args.end_image or args.control_video:
        raise WanInputError("HuMo takes --reference-image, --audio and --audio-encoder "
                            "(not --image/--end-image/--control-video)")
    inputs = {}
    if args.reference_image:
        inputs["reference_image"] = read_image(args.reference_image)
    if bool(args.audio) != bool(args.audio_encoder):
        raise WanInputError("HuMo's speech needs both --audio (the file) and --audio-encoder (whisper large v3)")
    if args.audio:
        inputs["audio_encoder_output"] = encode_audio_file(args.audio, args.audio_encoder)
    return inputs
