"""The Python API: one pipeline class per Wan task, each ``__call__`` returning frames.

    pipe = T2VPipeline.from_files(dit="wan2.1_t2v_1.3B.gguf", text_encoder="umt5_xxl.safetensors",
                                  vae="wan_2.1_vae.safetensors")
    frames = pipe("a cat walking on a wall", steps=30, seed=1)   # [81, 480, 832, 3] float in 0..1

Tasks: T2V / T2I (one frame), I2V (start image), FLF2V (start and end image), VACE (reference
image, control video, mask), Wan2.2 TI2V-5B (optional start image), and Wan2.2 A14B (any of the
above with ``dit_low=`` the low-noise expert). The building blocks the ComfyUI nodes use directly
live in ``conditioning`` (prompt and image conditioning) and ``sample.sample_video``; what rides on
the model for a run (LoRAs, step cache, Enhance-A-Video, context windows) is ``run=RunOptions(...)``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from .conditioning import (
    PromptEmbeds,
    VideoConditioning,
    as_images,
    encode_prompts,
    i2v_conditioning,
    t2v_conditioning,
    ti2v_conditioning,
    vace_conditioning,
)
from ..errors import WanFileError, WanInputError
from ..models.identify import identify_file
from ..runtime.cancel import cancel_hook
from . import load
from .conditioning_animate import animate_conditioning
from .decode_file import decode_to_file
from .memory import check_decode, encoder_on, place_encoder, vae_tiling
from .options import LoadOptions, RunOptions, SamplingOptions
from .sample import plan_args, sample_video
from ..sampling.context import ContextOptions
from ..sampling.guidance import GuidanceOptions
from ..video import check_options, format_of

__all__ = [
    "FLF2VPipeline", "I2VPipeline", "T2IPipeline", "T2VPipeline", "TI2VPipeline", "VACEPipeline",
    "WanPipeline", "decode_frames", "encode_prompts", "i2v_conditioning", "sample_video",
    "t2v_conditioning", "ti2v_conditioning", "vace_conditioning", "PromptEmbeds", "VideoConditioning",
    "load_components", "find_components", "LoadOptions", "PreparedJob", "decode_to_file",
]

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".sft")


def decode_frames(vae, latent: torch.Tensor, tile="auto") -> torch.Tensor:
    """RAW latent [1, C, T, h, w] -> frames [F, H, W, 3] float32 in 0..1 on the CPU. ``tile``:
    "auto" (the largest tile, or none, that fits the VAE device's free memory: ``memory.vae_tiling``),
    None (untiled) or a tiling for ``vae.decode``."""
    if tile == "auto":
        tile = vae_tiling(vae, latent.shape)
    check_decode(vae, latent.shape, tile)
    p = next(vae.parameters())
    video = vae.decode(latent.to(device=p.device, dtype=p.dtype), tile=tile)
    return ((video[0].float().clamp(-1, 1) + 1) / 2).movedim(0, -1).cpu()


# -- loading ---------------------------------------------------------------------------------------
def load_components(
    dit=None, text_encoder=None, vae=None, clip_vision=None, dit_low=None,
    dtype: torch.dtype | None = None, vae_dtype: torch.dtype = torch.float32, device=None,
    options: LoadOptions | None = None,
) -> dict:
    """Models from files (GGUF or safetensors; None skips a part): the keyword arguments of the
    pipeline constructors, each loaded by ``wan.job.load``.

    ``options`` apply to both DiTs (quantization, attention, block swap, compile) and give the
    text encoder and CLIP vision their dtype and device; the VAE takes ``vae_dtype``. Without
    ``options``, ``dtype`` (default bf16) and ``device`` make them; giving both is an error.
    """
    if options is None:
        options = LoadOptions(dtype=torch.bfloat16 if dtype is None else dtype, device=device)
    elif dtype is not None or device is not None:
        raise WanInputError("pass dtype and device inside options=LoadOptions(...), not beside it")
    out = {}
    if dit is not None:
        out["dit"] = load.load_dit(dit, options)
    if dit_low is not None:
        out["dit_low"] = load.load_dit(dit_low, options)
    if text_encoder is not None:
        out["text_encoder"] = load.load_text_encoder(text_encoder, options)
    if vae is not None:
        out["vae"] = load.load_vae(vae, dataclasses.replace(options, dtype=vae_dtype))
    if clip_vision is not None:
        out["clip_vision"] = load.load_clip_vision(clip_vision, options)
    return out



def find_components(folder: str | os.PathLike) -> dict[str, str]:
    """{role: path} for the weight files in ``folder``, each role read from the file's header
    (``identify.identify_file``), never from its name. Roles: dit, dit_low, text_encoder, vae,
    clip_vision. Two DiTs are the Wan2.2 A14B experts; only then does a name decide which is the
    high-noise one (a file named ``*low_noise*`` is the low-noise expert)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WanFileError(folder, "is not a folder")
    found: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in WEIGHT_SUFFIXES or not path.is_file():
            continue
        role = identify_file(str(path)).role
        if role in ("dit", "text_encoder", "vae", "clip_vision"):
            found.setdefault(role, []).append(str(path))
    out = {}
    for role, paths in found.items():
        if role == "dit" and len(paths) == 2:
            low = [p for p in paths if "low" in Path(p).name.lower()]
            if len(low) != 1:
                raise WanFileError(folder, f"two diffusion models ({', '.join(Path(p).name for p in paths)}) and "
                                   "no way to tell the low-noise expert: name it *low_noise*")
            out["dit_low"] = low[0]
            out["dit"] = next(p for p in paths if p != low[0])
        elif len(paths) > 1:
            raise WanFileError(folder, f"holds {len(paths)} files of role {role}: "
                               f"{', '.join(Path(p).name for p in paths)}; keep one")
        else:
            out[role] = paths[0]
    for role in ("dit", "text_encoder", "vae"):
        if role not in out:
            raise WanFileError(folder, f"no {role.replace('_', ' ')} file (.safetensors or .gguf) found")
    return out


# -- pipelines ----------------------------------------------------------------------------------------
class WanPipeline:
    """Shared machinery; use a task class. Components are ready models (see ``load_components``)."""

    needs_clip = False
    default_frames = 81

    def __init__(self, dit, text_encoder, vae, clip_vision=None, dit_low=None, boundary: float | None = None):
        self.dit = dit
        self.text_encoder = text_encoder
        self.vae = vae
        self.clip_vision = clip_vision
        self.dit_low = dit_low
        self.boundary = boundary
        cfg = getattr(dit, "cfg", None)
        if cfg is not None and cfg.out_dim != vae.z_dim:
            raise WanInputError(f"the diffusion model ({cfg.variant}) works on {cfg.out_dim}-channel latents, "
                                f"the VAE on {vae.z_dim}: {'Wan2.2' if cfg.out_dim == 48 else 'Wan2.1'} VAE needed")

    @classmethod
    def from_files(cls, dit, text_encoder, vae, clip_vision=None, dit_low=None,
                   dtype: torch.dtype | None = None, vae_dtype: torch.dtype = torch.float32, device=None,
                   boundary: float | None = None, options: LoadOptions | None = None):
        """The pipeline of these files; see ``load_components`` for ``dtype``, ``device`` and ``options``."""
        parts = load_components(dit=dit, text_encoder=text_encoder, vae=vae, clip_vision=clip_vision,
                                dit_low=dit_low, dtype=dtype, vae_dtype=vae_dtype, device=device, options=options)
        return cls(**parts, boundary=boundary)

    @classmethod
    def from_pretrained(cls, folder, dtype: torch.dtype | None = None, vae_dtype: torch.dtype = torch.float32,
                        device=None, boundary: float | None = None, options: LoadOptions | None = None):
        """The pipeline of the files in ``folder`` (see ``find_components``)."""
        files = find_components(folder)
        if not cls.needs_clip:
            files.pop("clip_vision", None)
        return cls.from_files(**files, dtype=dtype, vae_dtype=vae_dtype, device=device, boundary=boundary,
                              options=options)

    # subclasses build the conditioning
    def conditioning(self, width, height, num_frames, **inputs) -> VideoConditioning:
        raise NotImplementedError

    def default_shift(self, width: int, height: int) -> float:
        return 5.0

    def __call__(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 832,
        height: int = 480,
        num_frames: int | None = None,
        steps: int = 30,
        cfg: float = 5.0,
        shift: float | None = None,
        sampler: str = "unipc",
        seed: int = 0,
        denoise: float = 1.0,
        latents: torch.Tensor | None = None,
        context: ContextOptions | None = None,
        cfg_low: float | None = None,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        output_type: str = "frames",
        run: RunOptions | None = None,
        scheduler: str = "default",
        sigmas=None,
        timesteps=None,
        noise: str | None = None,
        switch_step: int | None = None,
        shift_low: float | None = None,
        sampler_low: str | None = None,
        guidance: GuidanceOptions | None = None,
        **inputs,
    ) -> torch.Tensor:
        """Generate; returns frames [F, H, W, 3] float32 in 0..1 (``output_type="latent"``: the RAW
        latent). ``inputs`` are the task's images (``image``, ``end_image``, ``reference_image``,
        ``control_video``, ``mask``, ``strength``). ``shift`` None: the official default for the task
        and size. ``run``: LoRAs, step cache, Enhance-A-Video, context windows (``context`` is a
        shorthand for ``run.context``). ``scheduler``: a name of ``schedules.SCHEDULERS``; ``sigmas``
        (ComfyUI SIGMAS) or ``timesteps`` (lightx2v's 1000, 750, 500, 250 style, shifted) replace
        steps, scheduler and denoise. ``noise``: the noise stream, "comfy" or "diffusers" (None: the
        sampler's own; ``sampling/noise.py``). ``cfg`` may be a list, one cfg per step. Wan2.2 A14B:
        ``switch_step`` (instead of the pipeline's boundary), ``shift_low``, ``sampler_low``;
        ``guidance``: CFG-Zero*, skip-layer guidance, NAG. See ``sample_video`` for the rest."""
        if output_type not in ("frames", "latent"):
            raise WanInputError(f"output_type must be 'frames' or 'latent', got {output_type!r}")
        job = self.prepare(prompt, negative_prompt, width=width, height=height, num_frames=num_frames, steps=steps,
                           cfg=cfg, shift=shift, sampler=sampler, seed=seed, denoise=denoise, latents=latents,
                           context=context, cfg_low=cfg_low, cancel=cancel, run=run, scheduler=scheduler,
                           sigmas=sigmas, timesteps=timesteps, noise=noise, switch_step=switch_step,
                           shift_low=shift_low, sampler_low=sampler_low, guidance=guidance, **inputs)
        with cancel_hook(cancel):  # the VAE's decode polls it too
            latent = sample_video(self.dit, job.text, job.image, job.sampling, job.run, dit_low=self.dit_low,
                                  latents=job.latents, callback=callback, cancel=cancel)
            if output_type == "latent":
                return latent
            return decode_frames(self.vae, latent)

    def write(self, path: str | os.PathLike, prompt: str, negative_prompt: str = "", *, fps: float = 16.0,
              format: str | None = None, tile=None, crf: int | None = None, audio=None, metadata=None,
              **kw) -> Path:
        """Generate and write the video to ``path`` (returned), decoded straight into the file
        (``decode_file``): host RAM stays flat in the frame count. ``format`` None: from the file's
        extension (.mp4 .webm .gif .webp); ``tile``: the VAE's tiling; ``crf``, ``audio``,
        ``metadata``: ``wan.video.write_video``'s; the rest are ``__call__``'s."""
        format = format_of(path) if format is None else format
        check_options(format, fps, crf=crf, audio=audio)  # before minutes of sampling
        latent = self(prompt, negative_prompt, output_type="latent", **kw)
        with cancel_hook(kw.get("cancel")):
            return decode_to_file(self.vae, latent, path, fps=fps, format=format, tile=tile, crf=crf,
                                  audio=audio, metadata=metadata)

    def prepare(self, prompt: str, negative_prompt: str = "", width: int = 832, height: int = 480,
                num_frames: int | None = None, steps: int = 30, cfg: float = 5.0, shift: float | None = None,
                sampler: str = "unipc", seed: int = 0, denoise: float = 1.0, latents: torch.Tensor | None = None,
                context: ContextOptions | None = None, cfg_low: float | None = None,
                cancel: Callable[[], bool] | None = None, run: RunOptions | None = None, scheduler: str = "default",
                sigmas=None, timesteps=None, noise: str | None = None, switch_step: int | None = None,
                shift_low: float | None = None, sampler_low: str | None = None,
                guidance: GuidanceOptions | None = None, **inputs) -> "PreparedJob":
        """Everything ``sample_video`` takes, from the arguments of ``__call__``: the options checked,
        the prompts encoded and the images conditioned (text encoder, CLIP vision and VAE encode run
        here, so a multi-process run does this on one rank and shares the result)."""
        run = RunOptions() if run is None else run
        if context is not None:
            if run.context is not None:
                raise WanInputError("context windows given twice: as context= and as run.context")
            run = dataclasses.replace(run, context=context)
        cfg_per_step = None
        if isinstance(cfg, (list, tuple)):
            cfg_per_step, cfg = tuple(cfg), 1.0
        extra = dict(cfg_low=cfg_low, boundary=self.boundary, switch_step=switch_step, cfg_per_step=cfg_per_step,
                     shift_low=shift_low, sampler_low=sampler_low, guidance=guidance, scheduler=scheduler,
                     sigmas=sigmas, timesteps=timesteps, noise=noise)
        # checked before any model work; the task's default shift is filled in once the size is known
        sampling = SamplingOptions(steps=steps, cfg=cfg, shift=1.0 if shift is None else shift, seed=seed,
                                   sampler=sampler, denoise=denoise, **extra)
        num_frames = self.default_frames if num_frames is None else num_frames
        with cancel_hook(cancel):  # the VAE's encode polls it too
            image_embeds = self.conditioning(width, height, num_frames, **inputs)
            # the text encoder runs where this job's memory plan has room for it (memory.place_encoder)
            plan = plan_args(self.dit, self.dit_low, sampling.needs_negative, image_embeds, sampling, run)
            where = place_encoder(self.text_encoder, **plan)
            device = plan["experts"][0]._wan_auto_swap.device if where is not None else None
            with encoder_on(self.text_encoder, where, device, self.dit):
                text = encode_prompts(self.text_encoder, prompt, negative_prompt if sampling.needs_negative else None)
        if shift is None:
            sampling = dataclasses.replace(sampling, shift=self.default_shift(image_embeds.width, image_embeds.height))
        return PreparedJob(text, image_embeds, sampling, run, latents)


class PreparedJob(NamedTuple):
    """The inputs of ``sample_video`` besides the models (``WanPipeline.prepare``)."""

    text: PromptEmbeds
    image: VideoConditioning
    sampling: SamplingOptions
    run: RunOptions
    latents: torch.Tensor | None


def _no_inputs(task: str, inputs: dict) -> None:
    if inputs:
        raise WanInputError(f"{task} takes no {', '.join(sorted(inputs))}")


class T2VPipeline(WanPipeline):
    """Text-to-video (Wan2.1 T2V, Wan2.2 T2V A14B with ``dit_low``)."""

    def default_shift(self, width, height):
        # official configs: Wan2.2 T2V A14B samples with shift 12, Wan2.1 T2V with 5
        return 12.0 if self.dit_low is not None else 5.0

    def conditioning(self, width, height, num_frames, **inputs):
        _no_inputs("text-to-video", inputs)
        return t2v_conditioning(width, height, num_frames, self.vae.z_dim)


class T2IPipeline(T2VPipeline):
    """Text-to-image: a one-frame video; returns [1, H, W, 3]."""

    default_frames = 1

    def __call__(self, prompt: str, negative_prompt: str = "", width: int = 1024, height: int = 1024, **kw):
        if kw.setdefault("num_frames", 1) != 1:
            raise WanInputError(f"text-to-image makes one frame, got num_frames={kw['num_frames']}")
        return super().__call__(prompt, negative_prompt, width=width, height=height, **kw)


class I2VPipeline(WanPipeline):
    """Image-to-video: ``image`` (start frame(s)); ``end_image`` too makes it FLF2V."""

    needs_clip = True

    def default_shift(self, width, height):
        # the official Wan2.1 generate.py lowers the shift to 3.0 for image-to-video at 480p;
        # Wan2.2 I2V A14B uses 5.0 at every size
        if self.dit_low is not None:
            return 5.0
        return 3.0 if width * height <= 832 * 480 else 5.0

    def conditioning(self, width, height, num_frames, image=None, end_image=None, noise_aug_strength=0.0, **inputs):
        _no_inputs("image-to-video", inputs)
        if image is None and end_image is None:
            raise WanInputError("image-to-video needs image= (a [H, W, 3] or [N, H, W, 3] tensor in 0..1)")
        has_clip = getattr(getattr(self.dit, "cfg", None), "has_image_emb", self.clip_vision is not None)
        if has_clip and self.clip_vision is None:
            raise WanInputError("this image-to-video model needs a CLIP vision encoder (clip_vision_h)")
        clip = self.clip_vision if has_clip else None
        return i2v_conditioning(self.vae, clip, image, width, height, num_frames, end_image=end_image,
                                noise_aug_strength=noise_aug_strength)


class FLF2VPipeline(I2VPipeline):
    """First-last-frame-to-video: ``image`` and ``end_image`` both required."""

    def conditioning(self, width, height, num_frames, image=None, end_image=None, **inputs):
        if image is None or end_image is None:
            raise WanInputError("first-last-frame-to-video needs both image= and end_image=")
        return super().conditioning(width, height, num_frames, image=image, end_image=end_image, **inputs)


class VACEPipeline(WanPipeline):
    """VACE: ``reference_image``, ``control_video``, ``mask`` and ``strength``, any of them optional."""

    def conditioning(self, width, height, num_frames, reference_image=None, control_video=None, mask=None,
                     strength=1.0, **inputs):
        _no_inputs("VACE", inputs)
        return vace_conditioning(self.vae, width, height, num_frames, strength, reference_image=reference_image,
                                 control_video=control_video, mask=mask)


class AnimatePipeline(WanPipeline):
    """Wan 2.2 Animate: ``reference_image`` (the character, also seen by CLIP), ``pose_video`` and
    ``face_video`` ([N, H, W, 3] in 0..1), replace mode ``background_video`` with ``character_mask``
    [N, H, W]; one window (see ``conditioning_animate``)."""

    needs_clip = True
    default_frames = 77

    def conditioning(self, width, height, num_frames, reference_image=None, pose_video=None, face_video=None,
                     background_video=None, character_mask=None, **inputs):
        _no_inputs("Wan Animate", inputs)
        clip_fea = None
        if reference_image is not None and self.clip_vision is not None:
            clip_fea = self.clip_vision.encode(as_images(reference_image, "reference_image")[:1]).float()
        cond, _ = animate_conditioning(self.vae, width, height, num_frames, reference_image, pose_video, face_video,
                                       clip_fea=clip_fea, background_video=background_video, character_mask=character_mask)
        return cond


class TI2VPipeline(WanPipeline):
    """Wan2.2 TI2V-5B: text-to-video, or image-to-video with ``image`` (Wan2.2 VAE)."""

    default_frames = 121

    def __call__(self, prompt: str, negative_prompt: str = "", width: int = 1280, height: int = 704, **kw):
        return super().__call__(prompt, negative_prompt, width=width, height=height, **kw)

    def conditioning(self, width, height, num_frames, image=None, **inputs):
        _no_inputs("Wan2.2 TI2V", inputs)
        return ti2v_conditioning(self.vae, width, height, num_frames, image=image)
