"""The pack imported as ComfyUI imports it, over one tiny model file in ComfyUI's folders, with a fresh
model cache: the set-up of the in-process node tests that run Wan Model Loader -> Wan Sampler."""

from __future__ import annotations

import functools

import torch

from refs import comfy, import_pack, pack_module
from tiny_models import NAMES, write_set

W, H, FRAMES, STEPS = 32, 32, 5, 3


def write_models(tmp_path_factory, role: str):
    d = tmp_path_factory.mktemp("comfy_models")
    write_set(d, only=(role,))
    return d


def open_pack(name: str, models_dir, role: str, monkeypatch):
    """Import the pack as ``name`` with ``role``'s file as ComfyUI's only diffusion model; returns
    ``pack(module_path)`` for its modules."""
    torch.set_num_threads(2)
    folder_paths = comfy("folder_paths")
    import_pack(name)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "diffusion_models",
                        ([str(models_dir / NAMES[role][0])], {".safetensors", ".gguf"}))
    mod = functools.partial(pack_module, name=name)
    monkeypatch.setattr(mod("nodes.loaders"), "MODEL_CACHE", mod("nodes._common").ModelCache())
    return mod


def t2v_latent(pack, model, **sampler_kwargs) -> torch.Tensor:
    """One seeded T2V run of Wan Sampler on ``model`` (random prompt embeddings, cfg 5, unipc)."""
    conditioning = pack("wan.job.conditioning")
    g = torch.Generator().manual_seed(9)
    text = conditioning.PromptEmbeds(torch.randn(1, 512, 4096, generator=g), torch.randn(1, 512, 4096, generator=g))
    embeds = conditioning.t2v_conditioning(W, H, FRAMES, 16)
    out = pack("nodes.sampler").WanSampler().sample(model, text, embeds, STEPS, 5.0, 5.0, 3, "unipc", 1.0,
                                                    **sampler_kwargs)
    return out[0]["samples"]
