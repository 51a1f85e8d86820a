"""Audio for the speech-driven Wan models: decoding a file, resampling, and ComfyUI's AUDIO dict.

``load_audio`` decodes any file ffmpeg reads (wav, flac, mp3, m4a, ogg, a video's sound track) to a
float waveform [channels, samples]; ``resample`` changes its rate with a windowed-sinc filter (the
math of ``torchaudio.functional.resample``'s defaults: torchaudio cannot be installed beside our
torch); ``to_audio_dict``/``from_audio_dict`` convert to and from ComfyUI's AUDIO type.
"""

from .files import load_audio
from .resample import resample
from .dicts import from_audio_dict, mono, to_audio_dict

__all__ = ["load_audio", "resample", "to_audio_dict", "from_audio_dict", "mono"]
