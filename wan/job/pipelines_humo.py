"""The HuMo pipeline (text + reference image + speech): ``WanPipeline`` with the conditioning of
``conditioning_humo``. The task follows the model: ``humo_pipeline_class``."""

from __future__ import annotations

from .conditioning_humo import humo_conditioning
from .pipelines import WanPipeline, _no_inputs


class HumoPipeline(WanPipeline):
    """HuMo: ``audio_encoder_output`` (whisper large v3's AUDIO_ENCODER_OUTPUT: ``load_audio_encoder(path)
    .encode(waveform, sample_rate)``) and/or ``reference_image`` [N, H, W, 3] in 0..1 (the subject);
    without either, a silent text-to-video. HuMo was trained at 25 fps: write the video at 25."""

    default_frames = 97

    def conditioning(self, width, height, num_frames, audio_encoder_output=None, reference_image=None, **inputs):
        _no_inputs("HuMo", inputs)
        return humo_conditioning(self.vae, width, height, num_frames, audio_encoder_output, reference_image)


def humo_pipeline_class(cfg) -> type[WanPipeline] | None:
    """The HuMo pipeline of a DiT config, or None for the other tasks."""
    return HumoPipeline if cfg.model_type == "humo" else None
