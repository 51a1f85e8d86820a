"""End to end: the Lightning Wan2.2 I2V A14B graph, ours beside ComfyUI's native graph of the same
recipe, same files, one process.

The recipe (workflows/wan22_i2v_a14b_lightning): the high- and low-noise fp8 experts, each with its
Lightning 4-step LoRA at strength 1, UMT5 fp8 scaled, the Wan 2.1 VAE; a start image, 832x480x81,
4 euler steps on the simple schedule, cfg 1, shift 5, the low-noise expert from step 2, seed 42.
Timed per run: text encode + 4 steps + VAE decode (models loaded once, before the warm-up run).

- ours: ``wan.job.pipelines.I2VPipeline`` (bf16 compute, SDPA pinned), the LoRAs as RunOptions;
- ComfyUI: its own nodes called in graph order: UNETLoader -> LoraLoaderModelOnly ->
  ModelSamplingSD3 (shift 5) per expert, CLIPLoader (wan) -> CLIPTextEncode x2, VAELoader,
  WanImageToVideo, KSamplerAdvanced 0-2 (noise added, leftover noise returned) and 2-4, VAEDecode;
  its default ops for each file, --use-pytorch-cross-attention. Both sides run in one process
  under the same pinned SDPA backend.

    python bench/e2e.py --models /path/to/ComfyUI/models --results bench/results/e2e.json   # a GPU
    python bench/e2e.py --small          # tiny files of the same formats, 64x64x5, any device (CI)

``--results`` writes the rows with the GPU, versions, date and code version (bench/tables.py makes
the README's end-to-end table from it). With --small ComfyUI's CLIPLoader cannot build UMT5 at the
tiny file's size; its own Wan text encoder classes are built at that size instead
(tests/server/wan_test_helpers.py, WanTestTinyUMT5Loader).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, SDPA_BACKENDS, code_version, comfy, comfy_nodes, free, measure, timing_row  # noqa: E402

from wan.job.options import LoadOptions, RunOptions  # noqa: E402
from wan.job.pipelines import I2VPipeline, load_components  # noqa: E402
from wan.weights.lora import load_lora  # noqa: E402

# role -> (ComfyUI models folder, file name): the names the bundled Lightning workflow uses
FILES = {
    "dit": ("diffusion_models", "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"),
    "dit_low": ("diffusion_models", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"),
    "text_encoder": ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    "vae": ("vae", "wan_2.1_vae.safetensors"),
    "lora": ("loras", "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors"),
    "lora_low": ("loras", "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors"),
}
TINY_ROLES = {"dit": "i2v22_high", "dit_low": "i2v22_low", "text_encoder": "umt5", "vae": "vae21",
              "lora": "lightning_i2v_high", "lora_low": "lightning_i2v_low"}  # tests/support/tiny_models.py
PROMPT = ("A portrait of a seated man, his gaze engaging the viewer with a gentle smile. One hand rests on a "
          "wide-brimmed hat in his lap, while the other lifts in a gesture of greeting.")
NEGATIVE = "No blurry face, no distorted hands, no extra limbs, no missing limbs, no floating hat."
RECIPE = dict(steps=4, cfg=1.0, shift=5.0, sampler="euler", scheduler="simple", seed=42, switch_step=2)
GRAPH = "Lightning Wan2.2 I2V A14B (fp8 experts + 4-step LoRAs)"


def start_image(width: int, height: int) -> torch.Tensor:
    """[1, H, W, 3] in 0..1, seeded: the same start frame for both sides."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, height, width, 3, generator=g)


def ours(files: dict, args, device, image):
    def make():
        options = LoadOptions(dtype=args.dtype, device=device, attention="sdpa")
        parts = load_components(**{k: files[k] for k in ("dit", "dit_low", "text_encoder", "vae")},
                                options=options, vae_dtype=args.dtype)
        pipe = I2VPipeline(**parts)
        run = RunOptions(loras=((load_lora(files["lora"]), 1.0),), loras_low=((load_lora(files["lora_low"]), 1.0),))
        return lambda: pipe(PROMPT, NEGATIVE, width=args.width, height=args.height, num_frames=args.frames,
                            noise="comfy", run=run, image=image[0], **RECIPE)
    return make


def native(files: dict, args, image):
    def make():
        nodes = comfy_nodes()
        folder_paths = comfy("folder_paths")
        for role, (folder, _) in FILES.items():
            folder_paths.add_model_folder_path(folder, str(Path(files[role]).parent), is_default=True)
        name = {role: Path(path).name for role, path in files.items()}
        shift = comfy("comfy_extras.nodes_model_advanced").ModelSamplingSD3()
        experts = []
        for dit, lora in (("dit", "lora"), ("dit_low", "lora_low")):
            model = nodes.UNETLoader().load_unet(name[dit], "default")[0]
            model = nodes.LoraLoaderModelOnly().load_lora_model_only(model, name[lora], 1.0)[0]
            experts.append(shift.patch(model, RECIPE["shift"])[0])
        if args.small:
            sys.path.insert(0, os.path.join(ROOT, "tests", "server"))
            from wan_test_helpers import WanTestTinyUMT5Loader

            clip = WanTestTinyUMT5Loader().load(name["text_encoder"])[0]
        else:
            clip = nodes.CLIPLoader().load_clip(name["text_encoder"], type="wan")[0]
        vae = nodes.VAELoader().load_vae(name["vae"])[0]
        to_video = comfy("comfy_extras.nodes_wan").WanImageToVideo

        def run():
            pos = nodes.CLIPTextEncode().encode(clip, PROMPT)[0]
            neg = nodes.CLIPTextEncode().encode(clip, NEGATIVE)[0]
            pos, neg, latent = to_video.execute(pos, neg, vae, args.width, args.height, args.frames, 1,
                                                start_image=image)[:3]
            sampler = nodes.KSamplerAdvanced()
            common = (RECIPE["steps"], RECIPE["cfg"], RECIPE["sampler"], RECIPE["scheduler"], pos, neg)
            switch = RECIPE["switch_step"]
            latent = sampler.sample(experts[0], "enable", RECIPE["seed"], *common, latent, 0, switch, "enable")[0]
            latent = sampler.sample(experts[1], "disable", RECIPE["seed"], *common, latent, switch, 10000, "disable")[0]
            return nodes.VAEDecode().decode(vae, latent)[0]
        return run
    return make


def tiny_files(folder: Path) -> dict:
    from tiny_models import write_set

    written = write_set(folder, only=set(TINY_ROLES.values()))
    return {role: written[tiny] for role, tiny in TINY_ROLES.items()}


def run_case(rows, args, label, make, device):
    try:
        step = make()
        times, peak = measure(step, device, args.reps, args.sdpa)
        rows.append(timing_row(label, times, peak, seconds_key="s_per_run"))
    except Exception as e:  # one failing side (OOM, a missing file) must not hide the other
        rows.append({"case": label, "error": f"{type(e).__name__}: {str(e)[:300]}"})
    print(json.dumps(rows[-1]), flush=True)
    step = None
    if label.startswith("ComfyUI"):
        comfy("comfy.model_management").unload_all_models()
    free(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="a ComfyUI models folder holding the recipe's files")
    p.add_argument("--small", action="store_true", help="tiny files of the same formats and a 64x64x5 video")
    p.add_argument("--reps", type=int, default=3, help="timed runs per side (after one warm-up run)")
    p.add_argument("--sdpa", choices=["any", *SDPA_BACKENDS], default=None,
                   help="SDPA backend both sides use (default: cudnn on CUDA, any elsewhere)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--results", default=None, help="write the rows with GPU, versions, date and code version")
    args = p.parse_args(argv)
    if not args.small and not args.models:
        p.error("give --models (a ComfyUI models folder) or --small")
    args.width, args.height, args.frames = (64, 64, 5) if args.small else (832, 480, 81)
    device = torch.device(args.device)
    args.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    args.sdpa = args.sdpa or ("cudnn" if device.type == "cuda" else "any")
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        if args.small:
            files = tiny_files(Path(tmp))
        else:
            files = {role: str(Path(args.models) / folder / name) for role, (folder, name) in FILES.items()}
        image = start_image(args.width, args.height)
        rows = []
        print(f"# {GRAPH}, {args.width}x{args.height}x{args.frames} on {device}", flush=True)
        run_case(rows, args, "ComfyUI native", native(files, args, image), device)
        run_case(rows, args, "ours", ours(files, args, device, image), device)
    times = {r["case"]: r["s_per_run"] for r in rows if "s_per_run" in r}
    if len(times) == 2:
        print(f"ratio ours / ComfyUI native: {times['ours'] / times['ComfyUI native']:.3f}", flush=True)
    if args.results:
        with open(args.results, "w") as f:
            json.dump(results_record(rows, args, device), f, indent=1)
            f.write("\n")
    return rows


def results_record(rows: list[dict], args, device) -> dict:
    cuda = device.type == "cuda"
    return {"table": "e2e", "gpu": torch.cuda.get_device_name(device) if cuda else f"CPU ({device})",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "date": datetime.date.today().isoformat(), "code_version": code_version(),
            "source": "bench/e2e.py", "timed_steps": args.reps, "graph": GRAPH,
            "size": f"{args.width}x{args.height}x{args.frames}",
            "notes": [f"SDPA backend pinned on both sides: {args.sdpa}",
                      "one run: text encode + 4 steps (2 per expert) + VAE decode, models loaded"],
            "rows": rows}


if __name__ == "__main__":
    main()
