"""The audio encoders of the speech-driven Wan models: wav2vec2 (S2V) and whisper large v3 (HuMo),
built as transformers' own modules from files in ComfyUI's published layout."""

from .encoder import AudioEncoder, audio_encoder_from_state_dict, layout_of, load_audio_encoder

__all__ = ["AudioEncoder", "audio_encoder_from_state_dict", "layout_of", "load_audio_encoder"]
