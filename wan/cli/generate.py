"""``python -m wan generate``: a video (or an image) from a prompt, and optionally images.

    python -m wan generate --dit wan2.1_t2v_1.3B_Q8_0.gguf --text-encoder umt5_xxl_fp8.safetensors \\
        --vae wan_2.1_vae.safetensors --prompt "a red fox in the snow" --out fox.mp4

The task follows the diffusion model (read from its weights): T2V, I2V (``--image``; with
``--end-image`` first-last-frame), VACE (``--reference-image``, ``--control-video``), Wan2.2 TI2V
(optional ``--image``), Wan2.2 A14B (``--dit`` high-noise + ``--dit-low``), the Fun models (control:
``--control-video``; inpaint: ``--image``/``--end-image``; camera: ``--camera-motion``, fun_args.py),
Phantom (``--subject-image``) and ATI (``--tracks``; subject_args.py). The output format comes from
the extension: .mp4 .webm .gif .webp, or .png for one frame. Progress goes to stderr.

Every option the nodes offer is here too: LoRAs (``--lora FILE:STRENGTH``, repeatable; ``--lora-low``
for the low-noise expert), ``--block-swap``, ``--compile``, ``--attention``, ``--quantization``, step
cache (``--cache``), Enhance-A-Video (``--feta``) and context windows (``--context``); they become the
library's LoadOptions and RunOptions (``--parallel``: each step split over torchrun's processes).
Schedules: ``--scheduler`` (ComfyUI's names too) or ``--timesteps 1000,750,500,250``. The experts and guidance (``--switch-step``, ``--boundary``,
``--shift-low``, ``--sampler-low``, ``--cfg 2,1,1,1``, ``--cfg-zero-star``, ``--slg``, ``--nag``)
become SamplingOptions fields, checked before any model loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import torch

from ..errors import WanError, WanInputError
from .animate_args import add_animate_arguments, animate_inputs
from ..job import pipelines
from ..job.pipelines_fun import fun_pipeline_class
from ..job.pipelines_s2v import SoundPipeline
from ..job.pipelines_humo import HumoPipeline, humo_pipeline_class
from ..job.options import PRECISIONS, QUANTIZATIONS, LoadOptions, RunOptions, SamplingOptions
from ..models.dit.attention_backends import ATTENTION_MODES
from ..parallel.launch import launch
from ..runtime.blockswap import AUTO, BlockSwapArgs
from ..runtime.cache import CacheArgs
from ..runtime.compile import TorchCompileArgs
from ..runtime.dequant_cache import DEQUANT_CACHE_MODES
from ..runtime.feta import FetaArgs
from ..sampling.cfg_zero import CFGZeroStar
from ..sampling.guidance import GuidanceOptions
from ..sampling.nag import NAGOptions
from ..sampling.noise import NOISE_STREAMS
from ..sampling.slg import SkipLayerGuidance
from ..sampling.samplers import SAMPLERS
from ..sampling.schedules import SCHEDULERS
from ..runtime.cancel import Cancelled, cancel_on_sigint
from ..job.decode_file import decode_to_file
from ..video import BY_EXTENSION as FORMATS
from ..weights.lora import HIGH_NOISE, LOW_NOISE, check_loras, load_lora
from .fun_args import add_fun_arguments, fun_inputs
from .subject_args import add_subject_arguments, subject_class, subject_inputs
from .s2v_args import add_s2v_arguments, s2v_inputs
from .humo_args import humo_inputs
from .specs import CONTEXT_OVERLAP, block_swap_spec, cfg_spec, context_spec, layers_spec, lora_spec, parallel_spec, timesteps_spec



def add_guidance_arguments(parser: argparse.ArgumentParser) -> None:
    """The Wan Expert Options and Wan Guidance Options nodes' options."""
    experts = parser.add_argument_group("Wan2.2 A14B experts and guidance (those of the option nodes)")
    experts.add_argument("--switch-step", type=int, default=None, metavar="N",
                         help="low-noise expert from step N on (1..steps-1; Lightning: 4 steps, 2)")
    experts.add_argument("--boundary", type=float, default=None,
                         help="sigma where the low-noise expert takes over (default 0.875 T2V, 0.9 I2V)")
    experts.add_argument("--shift-low", type=float, default=None, help="shift of the low-noise expert's schedule")
    experts.add_argument("--sampler-low", default=None, choices=tuple(SAMPLERS), help="sampler of the low-noise expert")
    experts.add_argument("--cfg-zero-star", type=int, nargs="?", const=0, default=None, metavar="ZERO_INIT_STEPS",
                         help="CFG-Zero* (ComfyUI's CFGZeroStar); optionally zero the first N steps")
    experts.add_argument("--slg", type=layers_spec, default=None, metavar="LAYERS",
                         help="skip-layer guidance skipping these blocks (e.g. 9 or 7,8,9)")
    experts.add_argument("--slg-scale", type=float, default=3.0)
    experts.add_argument("--slg-start", type=float, default=0.01, help="start percent")
    experts.add_argument("--slg-end", type=float, default=0.15, help="end percent")
    experts.add_argument("--slg-rescale", type=float, default=0.0, help="rescaling scale")
    experts.add_argument("--nag", type=float, default=None, metavar="SCALE",
                         help="normalized attention guidance with this scale (the negative prompt at cfg 1)")
    experts.add_argument("--nag-tau", type=float, default=2.5)
    experts.add_argument("--nag-alpha", type=float, default=0.25)


def guidance_options(args: argparse.Namespace) -> GuidanceOptions | None:
    """The GuidanceOptions of the command line (None: none asked for)."""
    zero = None if args.cfg_zero_star is None else CFGZeroStar(args.cfg_zero_star)
    slg = None if not args.slg else SkipLayerGuidance(args.slg, args.slg_scale, args.slg_start, args.slg_end,
                                                     args.slg_rescale)
    nag = None if args.nag is None else NAGOptions(args.nag, args.nag_tau, args.nag_alpha)
    if zero is None and slg is None and nag is None:
        return None
    return GuidanceOptions(cfg_zero_star=zero, slg=slg, nag=nag)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("model files (GGUF or safetensors)")
    files.add_argument("--dit", help="diffusion model (Wan2.2 A14B: the high-noise expert)")
    files.add_argument("--dit-low", help="Wan2.2 A14B low-noise expert")
    files.add_argument("--text-encoder", help="UMT5-XXL text encoder")
    files.add_argument("--vae", help="Wan 2.1 VAE (Wan 2.2 VAE for TI2V-5B)")
    files.add_argument("--clip-vision", help="CLIP vision H (Wan2.1 image-to-video)")
    files.add_argument("--model-dir", help="folder holding the files above (roles read from the files)")
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--prompt", required=True)
    inputs.add_argument("--negative-prompt", default="")
    inputs.add_argument("--image", help="start image (image-to-video, TI2V)")
    inputs.add_argument("--end-image", help="end image (first-last-frame-to-video)")
    inputs.add_argument("--reference-image", help="VACE reference image; Wan Animate: the character")
    inputs.add_argument("--control-video", help="VACE control video")
    inputs.add_argument("--vace-strength", type=float, default=1.0)
    add_animate_arguments(inputs)
    add_s2v_arguments(inputs)  # --audio/--audio-encoder: S2V and HuMo
    add_fun_arguments(parser)
    add_subject_arguments(parser)
    gen = parser.add_argument_group("generation")
    gen.add_argument("--width", type=int, default=832)
    gen.add_argument("--height", type=int, default=480)
    gen.add_argument("--frames", type=int, default=None, help="1 + 4k frames (default 81; 1 for .png)")
    gen.add_argument("--steps", type=int, default=30)
    gen.add_argument("--cfg", type=cfg_spec, default=5.0, help="CFG, or one per step: 2,1,1,1")
    gen.add_argument("--cfg-low", type=float, default=None, help="CFG of the low-noise expert (default --cfg)")
    gen.add_argument("--shift", type=float, default=None, help="sigma shift (default: the official one for the task)")
    gen.add_argument("--sampler", default="unipc", choices=tuple(SAMPLERS))
    gen.add_argument("--scheduler", default="default", choices=SCHEDULERS,
                     help="sigma grid: default = the sampler's own; ComfyUI's names equal its KSampler's")
    gen.add_argument("--timesteps", type=timesteps_spec, default=None, metavar="T1,T2,...",
                     help="explicit DiT timesteps on the 1000 scale, e.g. 1000,750,500,250 (lightx2v style; "
                          "the shift is applied); replaces --steps and --scheduler")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--noise", default=None, choices=NOISE_STREAMS,
                     help="noise stream: comfy (as ComfyUI's KSampler) or diffusers (default: the sampler's own)")
    opts = parser.add_argument_group("model and run options (those of the nodes)")
    opts.add_argument("--lora", action="append", default=[], type=lora_spec, metavar="FILE[:STRENGTH]",
                      help="apply a LoRA for this run (repeatable; strength default 1)")
    opts.add_argument("--lora-low", action="append", default=[], type=lora_spec, metavar="FILE[:STRENGTH]",
                      help="a LoRA for the Wan2.2 A14B low-noise expert (--dit-low)")
    opts.add_argument("--block-swap", type=block_swap_spec, default=AUTO, metavar="auto|N",
                      help="keep N transformer blocks in system memory, streamed to the device as they run; "
                           "auto (default): planned per job from the device's free memory")
    opts.add_argument("--memory-budget", type=float, default=None, metavar="GB",
                      help="device memory the block swap auto plan may use (default: what the device has free)")
    opts.add_argument("--compile", action="store_true", help="torch.compile each transformer block")
    opts.add_argument("--attention", default="auto", choices=ATTENTION_MODES,
                      help="attention kernel (auto: the fastest this GPU runs, else sdpa)")
    opts.add_argument("--sdpa-edge-steps", type=int, default=0, metavar="N",
                      help="with 8-bit attention (int8, sage, auto): the first and last N steps use sdpa")
    opts.add_argument("--fp16-accumulation", action="store_true",
                      help="with --dtype fp16: matrix products accumulate in fp16 (faster on GeForce GPUs)")
    opts.add_argument("--dequant-cache", default="off", choices=DEQUANT_CACHE_MODES,
                      help="keep packed (GGUF/fp8/nvfp4) blocks' expanded weights on the device: no per-step "
                           "expansion, at their bf16 size (auto: what fits in free GPU memory)")
    opts.add_argument("--quantization", default="disabled", choices=QUANTIZATIONS,
                      help="fp8_e4m3fn: store a safetensors DiT's block weights as fp8; _fast: also multiply in fp8")
    opts.add_argument("--cache", type=float, default=None, metavar="THRESHOLD",
                      help="step cache (TeaCache): skip steps while the change stays below THRESHOLD (e.g. 0.2)")
    opts.add_argument("--feta", type=float, default=None, metavar="WEIGHT",
                      help="Enhance-A-Video with this weight (e.g. 2)")
    opts.add_argument("--context", type=context_spec, default=None, metavar="FRAMES[:OVERLAP]",
                      help=f"denoise in windows of FRAMES pixel frames overlapping by OVERLAP (default "
                           f"{CONTEXT_OVERLAP})")
    add_guidance_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, help="output file: .mp4 .webm .gif .webp, or .png (one frame)")
    out.add_argument("--fps", type=float, default=16.0)
    out.add_argument("--dtype", default="bf16", choices=tuple(PRECISIONS), help="weights and compute dtype")
    out.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    out.add_argument("--quiet", action="store_true", help="no progress output")
    out.add_argument("--parallel", type=parallel_spec, default=None, metavar="cfg=2,ulysses=2,ring=1",
                     help="split each step over the processes of `torchrun --nproc-per-node N` (N = the "
                          "product): cfg=2 cond/uncond, ulysses (divides the heads), ring (any)")


class ProgressBar:
    """A one-line text progress bar on stderr (no dependency)."""

    def __init__(self, quiet: bool, width: int = 30):
        self.quiet, self.width, self.start = quiet, width, None

    def __call__(self, step: int, total: int, _preview=None) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.start is None or step <= 1:
            self.start = now - 1e-9 if step <= 1 else now
        filled = self.width * step // max(total, 1)
        rate = (now - self.start) / max(step - 1, 1) if step > 1 else 0.0
        eta = f" {rate * (total - step):5.1f}s left" if step > 1 else ""
        print(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {step}/{total} steps{eta}",
              end="\n" if step >= total else "", file=sys.stderr, flush=True)


def _say(args, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def _read_image(path: str):
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise WanInputError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(arr)[None]


def _read_video(path: str):
    import imageio_ffmpeg
    import numpy as np

    try:
        reader = imageio_ffmpeg.read_frames(path, pix_fmt="rgb24")
        meta = next(reader)
        w, h = meta["size"]
        frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader]
    except (OSError, RuntimeError, StopIteration) as exc:
        raise WanInputError(f"cannot read video {path}: {exc}") from None
    return torch.from_numpy(np.stack(frames).astype(np.float32) / 255.0)


def _pipeline_class(dit, args):
    kind = dit.cfg.model_type
    fun = fun_pipeline_class(dit.cfg) or humo_pipeline_class(dit.cfg)
    if fun is not None:
        return fun
    if kind == "t2v":
        if args.image or args.end_image:
            raise WanInputError("this diffusion model is text-to-video: it takes no --image/--end-image")
        return pipelines.T2VPipeline
    if kind in ("i2v", "flf2v"):
        if not (args.image or args.end_image):
            raise WanInputError(f"this diffusion model ({dit.cfg.variant}) is image-to-video: give --image")
        return pipelines.I2VPipeline
    if kind == "vace":
        return pipelines.VACEPipeline
    if kind == "animate":
        return pipelines.AnimatePipeline
    if kind == "s2v":
        return SoundPipeline
    return pipelines.TI2VPipeline


def _inputs(args: argparse.Namespace, cls) -> dict:
    """The pipeline's inputs from the input flags, each refused where the model takes no such input."""
    fun = fun_inputs(args, cls, _read_image, _read_video)
    if fun is not None:
        return fun
    if cls is HumoPipeline:
        return humo_inputs(args, _read_image)
    sound = s2v_inputs(args, cls is SoundPipeline, _read_image, _read_video)
    if cls is SoundPipeline:
        return sound
    animate = cls is pipelines.AnimatePipeline
    inputs = animate_inputs(args, animate, _read_image, _read_video)
    if animate:
        return inputs
    if args.image:
        inputs["image"] = _read_image(args.image)
    if args.end_image:
        inputs["end_image"] = _read_image(args.end_image)
    if (args.reference_image or args.control_video) and cls.__name__ != "VACEPipeline":
        raise WanInputError("--reference-image/--control-video need a VACE, Fun control or Animate diffusion model")
    if cls.__name__ == "VACEPipeline":
        inputs["strength"] = args.vace_strength
        if args.reference_image:
            inputs["reference_image"] = _read_image(args.reference_image)
        if args.control_video:
            inputs["control_video"] = _read_video(args.control_video)
    return inputs


def _write(path: str, vae, latent, fps: float) -> tuple[int, int, int]:
    """The latent to ``path``: a video decoded straight into the file (``decode_file``), or a .png
    of its one frame; returns (frames, width, height)."""
    _b, _c, frames, height, width = vae.decoded_shape(latent.shape)
    ext = os.path.splitext(path)[1].lower()
    if ext != ".png":
        decode_to_file(vae, latent, path, fps=fps, format=FORMATS[ext])
        return frames, width, height
    if frames != 1:
        raise WanInputError(f".png holds one frame, got {frames}; use --frames 1 or a video extension")
    from PIL import Image

    arr = (pipelines.decode_frames(vae, latent)[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    tmp = path + ".part"
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)
    return frames, width, height


def _options(args: argparse.Namespace):
    """(LoadOptions, RunOptions) of the command line; LoRA files are read here."""
    if args.lora_low and not args.dit_low:
        raise WanInputError("--lora-low is for the low-noise expert: give --dit-low too")
    load = LoadOptions(dtype=PRECISIONS[args.dtype], device=args.device, quantization=args.quantization,
                       attention=args.attention, fp16_accumulation=args.fp16_accumulation,
                       dequant_cache=args.dequant_cache, block_swap=BlockSwapArgs(args.block_swap),
                       compile=TorchCompileArgs() if args.compile else None)
    run = RunOptions(loras=tuple((load_lora(path), strength) for path, strength in args.lora),
                     loras_low=tuple((load_lora(path), strength) for path, strength in args.lora_low),
                     cache=None if args.cache is None else CacheArgs(threshold=args.cache),
                     feta=None if args.feta is None else FetaArgs(weight=args.feta), context=args.context,
                     memory_budget=None if args.memory_budget is None else int(args.memory_budget * 1e9),
                     sdpa_edge_steps=args.sdpa_edge_steps)
    return load, run


def _sampling_checks(args: argparse.Namespace, guidance) -> dict:
    """The expert and guidance keywords of the pipeline call, checked before any model loads."""
    extra = dict(switch_step=args.switch_step, shift_low=args.shift_low, sampler_low=args.sampler_low,
                 guidance=guidance)
    cfg = args.cfg
    per_step = dict(cfg_per_step=cfg, cfg=1.0) if isinstance(cfg, tuple) else dict(cfg=cfg)
    SamplingOptions(steps=args.steps, sampler=args.sampler, seed=args.seed, cfg_low=args.cfg_low,
                    boundary=args.boundary, **per_step, **extra)
    if (args.switch_step is not None or args.boundary is not None or args.shift_low is not None
            or args.sampler_low is not None) and not args.dit_low and not args.model_dir:
        raise WanInputError("--switch-step, --boundary, --shift-low and --sampler-low are for the Wan2.2 A14B "
                            "experts: give --dit-low too")
    return extra


def _report_loras(args, parts: dict, run) -> None:
    # the nodes log how each LoRA matches its model (naming the expert of a pair); say the same
    # here, and fail on a LoRA for another model before anything is sampled
    pair = parts.get("dit_low") is not None
    chains = (("dit", run.loras, HIGH_NOISE if pair else None), ("dit_low", run.loras_low, LOW_NOISE))
    for role, chain, expert in chains:
        if chain:
            check_loras(parts[role], chain, expert, say=lambda line: _say(args, line))


def run(args: argparse.Namespace) -> int:
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in FORMATS and ext != ".png":
        print(f"generate: --out must end in .mp4, .webm, .gif, .webp or .png, got {args.out!r}", file=sys.stderr)
        return 2
    if args.model_dir is None and not (args.dit and args.text_encoder and args.vae):
        print("generate: give --dit, --text-encoder and --vae (or --model-dir)", file=sys.stderr)
        return 2
    frames_n = args.frames if args.frames is not None else (1 if ext == ".png" else 81)
    try:
        expert_kw = _sampling_checks(args, guidance_options(args))
        load_options, run_options = _options(args)
        files = dict(dit=args.dit, dit_low=args.dit_low, text_encoder=args.text_encoder, vae=args.vae,
                     clip_vision=args.clip_vision)
        if args.model_dir:
            found = pipelines.find_components(args.model_dir)
            files.update({k: v for k, v in found.items() if files.get(k) is None})
        group = None
        if args.parallel is not None:  # torchrun: rank 0 encodes, decodes and writes; all ranks sample
            group = launch(args.parallel, load_options)
            load_options = dataclasses.replace(load_options, device=group.device)
            run_options = dataclasses.replace(run_options, parallel=args.parallel)
            args.quiet = args.quiet or not group.first
            files = files if group.first else {k: files[k] for k in ("dit", "dit_low")}
        t0 = time.monotonic()
        _say(args, "loading models ...")
        parts = pipelines.load_components(**files, options=load_options, vae_dtype=torch.float32)
        _say(args, f"loaded {parts['dit'].cfg.variant} in {time.monotonic() - t0:.1f}s")
        _report_loras(args, parts, run_options)
        cls = subject_class(args, _pipeline_class(parts["dit"], args))
        if not cls.needs_clip:
            parts.pop("clip_vision", None)
        pipe = cls(**parts, boundary=args.boundary) if group is None or group.first else None
        inputs = {**_inputs(args, cls), **subject_inputs(args, cls, _read_image)}
        t0 = time.monotonic()
        with cancel_on_sigint():  # Ctrl-C stops at the next cancel point; no output is written
            call = dict(width=args.width, height=args.height, num_frames=frames_n, steps=args.steps, cfg=args.cfg,
                        cfg_low=args.cfg_low, shift=args.shift, sampler=args.sampler, seed=args.seed,
                        callback=ProgressBar(args.quiet), run=run_options, scheduler=args.scheduler,
                        timesteps=args.timesteps, noise=args.noise, **expert_kw, **inputs)
            if group is None:
                latent = pipe(args.prompt, args.negative_prompt, output_type="latent", **call)
            else:  # the latent on rank 0, None on the others
                latent = group.generate(pipe, parts["dit"], parts.get("dit_low"), args.prompt,
                                        args.negative_prompt, **call)
                group.close()
            if latent is None:
                return 0
            frames, width, height = _write(args.out, pipe.vae, latent, args.fps)
    except Cancelled as exc:
        print(f"\ngenerate: {exc} (Ctrl-C)", file=sys.stderr)
        return 130
    except (WanError, OSError) as exc:
        print(f"\ngenerate: {exc}", file=sys.stderr)
        return 1
    _say(args, f"wrote {args.out} ({frames} frames, {width}x{height}) "
               f"in {time.monotonic() - t0:.1f}s")
    return 0
