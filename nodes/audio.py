"""Audio nodes: an audio file from ComfyUI's input folder, the wav2vec2/whisper audio encoders from
its audio_encoders folder, and their encoding, in ComfyUI's own types (AUDIO, AUDIO_ENCODER,
AUDIO_ENCODER_OUTPUT) so core's nodes and ours mix: core's AudioEncoderEncode takes our encoder, our
encode node takes core's, and the speech-driven conditioning nodes take either output.
"""

from __future__ import annotations

import os

from ..wan.audio import load_audio, to_audio_dict
from ..wan.job.audio import encode_audio, load_audio_encoder
from ..wan.job.options import PRECISIONS, LoadOptions
from ..wan.job.options import precision as dtype_of
from ._common import (
    CATEGORY, MODEL_CACHE, cancellable, file_identity, full_path, identity_of, list_files, main_device,
    offload_device, on_device,
)

AUDIO = "AUDIO"
AUDIO_ENCODER = "AUDIO_ENCODER"
AUDIO_ENCODER_OUTPUT = "AUDIO_ENCODER_OUTPUT"
FOLDER = "audio_encoders"
# what ComfyUI's LoadAudio offers (its content-type filter), for a ComfyUI without that filter
_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".webm", ".mp4", ".mov", ".mkv")


def register_audio_folder() -> None:
    """ComfyUI 0.3.75 and 0.8.0 declare models/audio_encoders; an older one learns it here."""
    import folder_paths

    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = (
            [os.path.join(folder_paths.models_dir, FOLDER)], set(folder_paths.supported_pt_extensions))


def _input_audio_files() -> list[str]:
    import folder_paths

    folder = folder_paths.get_input_directory()
    names = [n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))]
    if hasattr(folder_paths, "filter_files_content_types"):
        return sorted(folder_paths.filter_files_content_types(names, ["audio", "video"]))
    return sorted(n for n in names if n.lower().endswith(_EXTENSIONS))


class WanLoadAudio:
    CATEGORY = CATEGORY
    RETURN_TYPES = (AUDIO,)
    RETURN_NAMES = ("audio",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads an audio file (wav, flac, mp3, m4a, ogg, or a video's sound track) from the input "
                   "folder as ComfyUI's AUDIO, at its own sample rate and channels.")

    @classmethod
    def INPUT_TYPES(cls):
        # no "audio_upload": the frontends of ComfyUI 0.3.75 and 0.8.0 draw that upload button only beside
        # their own LoadAudio's player widget and fail to register any other node that asks for it
        return {"required": {"audio": (_input_audio_files(), {
            "tooltip": "An audio file in ComfyUI's input folder (upload it there, e.g. with core's Load Audio)."})}}

    @classmethod
    def IS_CHANGED(cls, audio):
        import folder_paths

        try:
            return repr(file_identity(folder_paths.get_annotated_filepath(audio)))
        except Exception:  # missing: validation reports it
            return audio

    @classmethod
    def VALIDATE_INPUTS(cls, audio):
        import folder_paths

        return True if folder_paths.exists_annotated_filepath(audio) else f"audio file not found: {audio}"

    def load(self, audio):
        import folder_paths

        return (to_audio_dict(*load_audio(folder_paths.get_annotated_filepath(audio))),)


class WanAudioEncoderLoader:
    CATEGORY = CATEGORY
    RETURN_TYPES = (AUDIO_ENCODER,)
    RETURN_NAMES = ("audio_encoder",)
    FUNCTION = "load"
    DESCRIPTION = ("Loads an audio encoder from models/audio_encoders: wav2vec2 (large English or base; Wan S2V) "
                   "or whisper large v3 (HuMo), detected from the file.")

    @classmethod
    def INPUT_TYPES(cls):
        register_audio_folder()
        return {"required": {
            "audio_encoder_name": (list_files(FOLDER),),
            "precision": (list(PRECISIONS), {"default": "fp16",
                                              "tooltip": "Storage dtype; it computes in fp32 as ComfyUI does."}),
        }}

    @classmethod
    def IS_CHANGED(cls, audio_encoder_name, **_):
        return identity_of(audio_encoder_name, FOLDER)

    def load(self, audio_encoder_name, precision="fp16"):
        register_audio_folder()
        path = full_path(audio_encoder_name, FOLDER)
        options = LoadOptions(dtype=dtype_of(precision), device=offload_device())
        return (MODEL_CACHE.get("audio_encoder", path, options, lambda: load_audio_encoder(path, options),
                                offload=offload_device()),)


class WanAudioEncode:
    CATEGORY = CATEGORY
    RETURN_TYPES = (AUDIO_ENCODER_OUTPUT,)
    RETURN_NAMES = ("audio_encoder_output",)
    FUNCTION = "encode"
    DESCRIPTION = ("Encodes audio with an audio encoder (resampled to 16 kHz and mixed to mono, as ComfyUI's "
                   "AudioEncoderEncode): the features S2V and HuMo are conditioned on.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio_encoder": (AUDIO_ENCODER,), "audio": (AUDIO,)}}

    def encode(self, audio_encoder, audio):
        if not hasattr(audio_encoder, "network"):  # core's AudioEncoderModel manages its own device
            return (encode_audio(audio_encoder, audio),)
        with cancellable(), on_device(audio_encoder, main_device()):
            return (encode_audio(audio_encoder, audio),)


NODE_CLASS_MAPPINGS = {
    "WanLoadAudio": WanLoadAudio,
    "WanAudioEncoderLoader": WanAudioEncoderLoader,
    "WanAudioEncode": WanAudioEncode,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "WanLoadAudio": "Wan Load Audio",
    "WanAudioEncoderLoader": "Wan Audio Encoder Loader",
    "WanAudioEncode": "Wan Audio Encode",
}
