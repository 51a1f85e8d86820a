"""Workers of the tests/parallel/ tests: each runs in a process spawned with
torch.multiprocessing (gloo on 127.0.0.1), computes the single-process reference and the split
result of the same call in the same process, and rank 0 saves max|split - ref| / max|ref| per case.

One spawn covers every case of a world size (process start and imports dominate on 2 CPU cores).
"""

from __future__ import annotations

import socket
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dit_fixtures import make_inputs, our_model, random_weights, tiny_config
from safetensors.torch import save_file
from wan.errors import WanInputError
from wan.job import load
from wan.job.conditioning import PromptEmbeds, t2v_conditioning
from wan.job.options import LoadOptions, RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.parallel.job import forget_groups, groups_for
from wan.parallel.layout import ParallelLayout
from wan.parallel.model import use_parallel
from wan.runtime.blockswap import enable_block_swap
from wan.sampling.context import ContextOptions
from wan.weights.lora import load_lora
from wan.weights.quantize import write_gguf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world: int, *args) -> None:
    mp.spawn(fn, args=(world, free_port(), *args), nprocs=world, join=True)


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().max() / ref.abs().max())


def _fp32(model):
    model.dtype_override = torch.float32
    model.residual_fp32 = True
    return model


def _forward_cases(layouts, tmp):
    """(name, layout, model, kwargs) for one DiT forward of each tiny model under each layout."""
    models = {}
    for variant in ("t2v_1_3b", "i2v_14b", "ti2v_5b", "vace_1_3b"):
        cfg = tiny_config(variant)
        models[variant] = (_fp32(our_model(cfg, random_weights(cfg))), cfg)
    cfg3 = tiny_config("t2v_1_3b").tiny(dim=384)  # 3 heads: Ulysses 2 does not divide them
    models["t2v_3heads"] = (_fp32(our_model(cfg3, random_weights(cfg3))), cfg3)
    path = f"{tmp}/tiny_q8.gguf"  # 2 heads, block Linears packed as Q8_0
    write_gguf(random_weights(tiny_config("t2v_1_3b"), seed=2), path, "Q8_0")
    packed = _fp32(load.load_dit(path, LoadOptions(dtype=torch.float32, device="cpu")))
    models["gguf_q8"] = (packed, packed.cfg)
    cases = []
    for name, (model, cfg) in models.items():
        inp = make_inputs(cfg, frames=3, height=6, width=10, batch=2)  # 45 tokens: uneven shards
        kw = dict(x=inp.x, t=inp.t, context=inp.context, clip_fea=inp.clip_fea, y=inp.y, vace_context=inp.vace_context)
        if name == "ti2v_5b":  # per-frame timesteps (0 on a held first frame): per-frame modulation
            kw["t"] = torch.tensor([[0.0, 637.0, 637.0], [0.0, 212.5, 212.5]])
        for layout in layouts:
            if cfg.num_heads % layout.ulysses:
                continue
            cases.append((f"{name}-{layout.spec()}", layout, model, kw))
    return cases


def _lora(path: str, cfg, rank: int = 4) -> str:
    """A LoRA in ComfyUI's names on q, k of self-attention and the first FFN layer of every block."""
    g = torch.Generator().manual_seed(12)
    sd = {}
    for i in range(cfg.num_layers):
        for module, (out_f, in_f) in (("self_attn.q", (cfg.dim, cfg.dim)), ("self_attn.k", (cfg.dim, cfg.dim)),
                                      ("ffn.0", (cfg.ffn_dim, cfg.dim))):
            key = f"diffusion_model.blocks.{i}.{module}"
            sd[key + ".lora_A.weight"] = torch.randn(rank, in_f, generator=g) / in_f**0.5
            sd[key + ".lora_B.weight"] = torch.randn(out_f, rank, generator=g) * 0.1
            sd[key + ".alpha"] = torch.tensor(float(rank))
    save_file(sd, path)
    return path


def _sample_cases(layouts, tmp):
    cfg = tiny_config("t2v_1_3b")
    dit = _fp32(our_model(cfg, random_weights(cfg, seed=3)))
    low = _fp32(our_model(cfg, random_weights(cfg, seed=4)))
    g = torch.Generator().manual_seed(5)
    text = PromptEmbeds(torch.randn(1, 7, cfg.text_dim, generator=g), torch.randn(1, 5, cfg.text_dim, generator=g))
    image = t2v_conditioning(48, 32, 9, 16)  # 3 latent frames of 4x6: 18 tokens
    lora = load_lora(_lora(f"{tmp}/lora.safetensors", cfg))
    plain = SamplingOptions(steps=3, cfg=3.0, shift=5.0, seed=9, sampler="euler")
    swapped = _fp32(our_model(cfg, random_weights(cfg, seed=3)))
    enable_block_swap(swapped, 1, "cpu", simulate=True)  # the last block streamed in per forward
    runs = {
        "sampler": (dict(), plain),
        "sampler+blockswap": ({"dit": swapped}, plain),
        "sampler+lora+windows": (dict(loras=((lora, 0.8),), context=ContextOptions.from_pixel_frames(5, 4)), plain),
        "experts": ({"dit_low": low}, SamplingOptions(steps=4, cfg=3.0, cfg_low=2.0, shift=5.0, seed=9,
                                                      sampler="unipc", switch_step=2)),
    }
    cases = []
    for name, (extra, s) in runs.items():
        extra = dict(extra)
        dit_low = extra.pop("dit_low", None)
        model = extra.pop("dit", dit)
        for layout in layouts:
            cases.append((f"{name}-{layout.spec()}", layout, (model, text, image, s, extra, dit_low)))
    return cases


def product_worker(rank: int, world: int, port: int, layouts, tmp: str, out: str) -> None:
    """4 processes: the product layouts on the tiny T2V forward and a whole sampler run."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    results: dict[str, object] = {}
    try:
        with torch.no_grad():
            cfg = tiny_config("t2v_1_3b")
            model = _fp32(our_model(cfg, random_weights(cfg)))
            inp = make_inputs(cfg, frames=3, height=6, width=10, batch=2)
            kw = dict(x=inp.x, t=inp.t, context=inp.context)
            ref = model(**kw)
            for layout in layouts:
                with use_parallel(model, groups_for(layout)):
                    results[f"forward:{layout.spec()}"] = _rel(model(**kw), ref)
            for name, layout, (dit, text, image, s, extra, dit_low) in _sample_cases(layouts, tmp):
                if not name.startswith("sampler-"):
                    continue
                ref = sample_video(dit, text, image, s, RunOptions(**extra), dit_low=dit_low)
                got = sample_video(dit, text, image, s, RunOptions(parallel=layout, **extra), dit_low=dit_low)
                results[f"sample:{layout.spec()}"] = _rel(got, ref)
    except Exception:  # noqa: BLE001 - reported to the test, which fails with it
        results["error"] = traceback.format_exc()
        raise
    finally:
        if rank == 0:
            torch.save(results, out)
        forget_groups()
        dist.destroy_process_group()


def worker(rank: int, world: int, port: int, layouts, tmp: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    results: dict[str, object] = {}
    try:
        with torch.no_grad():
            for name, layout, model, kw in _forward_cases(layouts, tmp):
                ref = model(**kw)
                with use_parallel(model, groups_for(layout)):
                    results[f"forward:{name}"] = _rel(model(**kw), ref)
            for name, layout, (dit, text, image, s, extra, dit_low) in _sample_cases(layouts, tmp):
                ref = sample_video(dit, text, image, s, RunOptions(**extra), dit_low=dit_low)
                got = sample_video(dit, text, image, s, RunOptions(parallel=layout, **extra), dit_low=dit_low)
                results[f"sample:{name}"] = _rel(got, ref)
            # a Ulysses degree that does not divide the heads: refused before any forward
            cfg = tiny_config("t2v_1_3b").tiny(dim=384)
            calls = []
            model = our_model(cfg, random_weights(cfg))
            model.register_forward_pre_hook(lambda *a: calls.append(1))
            try:
                sample_video(model, PromptEmbeds(torch.zeros(1, 3, cfg.text_dim), torch.zeros(1, 3, cfg.text_dim)),
                             t2v_conditioning(32, 32, 5, 16), SamplingOptions(steps=2, cfg=2.0),
                             RunOptions(parallel=ParallelLayout(ulysses=world)))
                results["refusal:heads"] = "no error"
            except WanInputError as exc:
                results["refusal:heads"] = (str(exc), len(calls))
    except Exception:  # noqa: BLE001 - reported to the test, which fails with it
        results["error"] = traceback.format_exc()
        raise
    finally:
        if rank == 0:
            torch.save(results, out)
        forget_groups()
        dist.destroy_process_group()
