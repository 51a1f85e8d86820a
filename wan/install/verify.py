"""Check a ComfyUI install against the catalogue: which files each bundled workflow needs are present,
missing or wrong, without loading any weights.

A present file is opened only for its header (safetensors JSON header, GGUF key/value and tensor
tables): the header must be whole and fit the file (a truncated download is caught here), and the
tensor names and shapes must say the file is what its catalogue entry claims, e.g. a VAE saved
under a DiT's name is reported as "wrong: a Wan 2.1 VAE". The sha256 is compared only on request
(``checksum=True``), since hashing reads every byte of files up to 30 GB.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .catalog import Catalog, ModelFile
from ..errors import WanFileError

_DIT_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
# released Wan DiT widths -> the size names the catalogue variants use
DIT_SIZES = {1536: "1_3b", 3072: "5b", 5120: "14b"}
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class Identity:
    """What a file's header says it is. ``variant`` is None when the role is known but not the size."""

    role: str | None  # dit, text_encoder, clip_vision, vae, lora; None: not a model this pack knows
    variant: str | None  # dit: "<task>_<size>" (task t2v, i2v, i2v_a14b, vace, ti2v); vae: wan21/wan22 ...
    detail: str  # human description, e.g. "a Wan DiT (t2v, dim 1536, 30 layers)"


@dataclass(frozen=True)
class FileCheck:
    file: ModelFile
    status: str  # "ok", "missing" or "wrong"
    path: str | None
    message: str


@dataclass(frozen=True)
class WorkflowReport:
    workflow: str
    ok: bool
    slots: dict[str, list[FileCheck]]  # slot -> checks of its alternatives, the default first


# -- reading headers -------------------------------------------------------------------------------
def read_header(path: str) -> tuple[dict[str, tuple[int, ...]], dict]:
    """({tensor name: shape}, metadata) of a safetensors or GGUF file, from its header only.

    Raises WanFileError for a file that is unreadable, not in either format, or truncated.
    """
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"GGUF":
        from ..weights.gguf import read_gguf_header

        entries, metadata = read_gguf_header(path)
    else:
        from ..weights.safetensors import read_safetensors_header

        entries, metadata = read_safetensors_header(path)
    return {k: tuple(v[1]) for k, v in entries.items()}, metadata


def _strip_prefix(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The DiT's own names: ComfyUI prefixes them, and a whole-checkpoint file holds other models too."""
    for prefix in _DIT_PREFIXES:
        inner = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
        if inner:
            return inner
    return shapes


# -- identifying a file from names and shapes ------------------------------------------------------
def _identify_dit(shapes: dict[str, tuple[int, ...]]) -> Identity:
    pe = shapes["patch_embedding.weight"]
    dim, in_dim = pe[0], pe[1] if len(pe) > 1 else 0
    layers = len({m.group(1) for k in shapes if (m := _BLOCK.match(k))})
    if any(k.startswith("vace_blocks.") for k in shapes):
        task = "vace"
    elif any(k.startswith("img_emb.") or ".k_img." in k for k in shapes):
        task = "i2v"
    elif in_dim == 48:
        task = "ti2v"
    elif in_dim == 36:
        task = "i2v_a14b"  # Wan 2.2 I2V: image latent concatenated, no CLIP branch
    else:
        task = "t2v"
    size = DIT_SIZES.get(dim)
    detail = f"a Wan DiT ({task}, dim {dim}, {layers} layers, in_dim {in_dim})"
    return Identity("dit", f"{task}_{size}" if size else None, detail)


def _identify_vae(shapes: dict[str, tuple[int, ...]]) -> Identity:
    z = shapes["conv2.weight"][0]
    patchified = shapes.get("encoder.conv1.weight", (0, 3))[1] == 12
    if z == 48 or patchified:
        return Identity("vae", "wan22", f"a Wan 2.2 VAE ({z} latent channels)")
    if z == 16:
        return Identity("vae", "wan21", "a Wan 2.1 VAE (16 latent channels)")
    return Identity("vae", None, f"a Wan-style VAE with {z} latent channels")


def _identify_own(shapes: dict[str, tuple[int, ...]], metadata: dict | None = None) -> Identity:
    """This module's own reading of names and shapes (used alone when wan.models.identify is absent)."""
    metadata = metadata or {}
    arch = metadata.get("general.architecture")
    s = _strip_prefix(shapes)
    names = s.keys()
    if "patch_embedding.weight" in s and any(k.startswith("blocks.") for k in names):
        return _identify_dit(s)
    if "conv2.weight" in s and any(k.startswith("decoder.") for k in names) and any(
            k.startswith("encoder.") for k in names):
        return _identify_vae(s)
    if any(".lora_" in k or k.endswith((".lora_down.weight", ".diff", ".diff_b")) for k in names):
        width = next((v[0] for k, v in s.items() if k.endswith(("lora_B.weight", "lora_up.weight"))
                      and v and v[0] in DIT_SIZES), None)
        size = DIT_SIZES.get(width) if width else None
        return Identity("lora", size, f"a LoRA{f' for a Wan DiT of dim {width}' if width else ''}")
    if any(k.startswith("encoder.block.") or k.startswith("block.") for k in names) and (
            "shared.weight" in s or "encoder.embed_tokens.weight" in s or "token_embd.weight" in s):
        per_block_bias = {k.split(".")[2] for k in names if k.startswith("encoder.block.")
                          and k.endswith("relative_attention_bias.weight")}
        blocks = {k.split(".")[2] for k in names if k.startswith("encoder.block.")}
        umt5 = len(blocks) > 1 and per_block_bias == blocks
        width = s.get("shared.weight", (0, 0))[-1]
        return Identity("text_encoder", "umt5_xxl" if umt5 else None,
                        f"a {'UMT5' if umt5 else 'T5'} text encoder (d_model {width}, {len(blocks)} blocks)")
    if "vision_model.embeddings.patch_embedding.weight" in s:
        width = s["vision_model.embeddings.patch_embedding.weight"][0]
        return Identity("clip_vision", "clip_vision_h" if width == 1280 else None,
                        f"a CLIP vision encoder (width {width})")
    if arch and arch != "wan":
        return Identity(None, None, f"a GGUF of architecture {arch!r}")
    sample = ", ".join(list(names)[:3])
    return Identity(None, None, f"weights this pack does not recognise (first tensors: {sample})")


# wan.models.identify's family names -> catalogue roles
_KIND_ROLE = {"wan_dit": "dit", "wan_vae": "vae", "umt5": "text_encoder", "clip_vision": "clip_vision",
              "lora": "lora"}
# its DiT presets -> the "<task>_<size>" names used here (the A14B experts share the 14B shapes)
_PRESET_VARIANT = {"wan22_t2v_a14b": "t2v_14b", "wan22_i2v_a14b": "i2v_a14b_14b"}


def _detector():
    try:
        from ..models import identify as detect
    except ImportError:
        return None
    needed = ("guess_kind", "describe", "detect_dit", "KIND_DESCRIPTIONS")
    return detect if all(hasattr(detect, n) for n in needed) else None


def identify(shapes: dict[str, tuple[int, ...]], metadata: dict | None = None) -> Identity:
    """Role and variant of a weights file from its tensor names and shapes alone.

    The model family and the DiT configuration come from ``wan.models.identify`` (the loaders' own
    detection, fed meta tensors so nothing is allocated); VAE, text encoder, CLIP and LoRA variants
    from this module's reading of the shapes.
    """
    own = _identify_own(shapes, metadata)
    detect = _detector()
    if detect is None:
        return own
    kind = detect.guess_kind(shapes.keys())
    role = _KIND_ROLE.get(kind)
    if role is None:
        if own.role is not None:
            return own  # e.g. a GGUF UMT5 in llama.cpp names
        return Identity(None, None, detect.describe(shapes.keys()))
    if role != "dit":
        return own if own.role == role else Identity(role, None, detect.KIND_DESCRIPTIONS[kind])
    import torch

    meta = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    try:
        cfg = detect.detect_dit(meta)
    except WanFileError as exc:
        return Identity("dit", None, f"a Wan DiT that cannot be used ({exc.problem})")
    variant = _PRESET_VARIANT.get(cfg.variant, cfg.variant)
    layers = f", {cfg.num_layers} layers" if hasattr(cfg, "num_layers") else ""
    if variant.startswith("custom_"):
        return Identity("dit", None, f"a Wan DiT ({cfg.model_type}, dim {cfg.dim}{layers}) of no released size")
    return Identity("dit", variant, f"a Wan DiT ({variant}: {cfg.model_type}, dim {cfg.dim}{layers})")


def expected_identity(f: ModelFile) -> str | None:
    """The variant ``identify`` reports for a correct copy of ``f``."""
    if f.role == "lora":  # a LoRA is known by the width of the DiT it patches: causvid_t2v_14b -> 14b
        return next((size for size in DIT_SIZES.values() if f.variant.endswith("_" + size)), None)
    if f.role != "dit":
        return f.variant
    v = f.variant
    if v.startswith("wan22_"):
        v = v[len("wan22_"):].rsplit("_", 1)[0]  # wan22_t2v_a14b_high -> t2v_a14b
        v = "i2v_a14b_14b" if v.startswith("i2v") else v.replace("a14b", "14b")
    return v


def inspect_file(path: str) -> Identity:
    """What the file at ``path`` is; WanFileError when its header is unreadable or truncated."""
    shapes, metadata = read_header(path)
    return identify(shapes, metadata)


# -- checking an install ---------------------------------------------------------------------------
def check_file(f: ModelFile, comfyui: str | os.PathLike, *, checksum: bool = False) -> FileCheck:
    """Whether ``f`` is present in the install and is what its name says."""
    path = next((p for p in f.candidate_paths(comfyui) if os.path.isfile(p)), None)
    if path is None:
        return FileCheck(f, "missing", None, f"missing: expected at {f.local_path(comfyui)}")
    size = os.path.getsize(path)
    if f.size is not None and size != f.size:
        what = "truncated" if size < f.size else "larger than published"
        return FileCheck(f, "wrong", path, f"wrong: {size} bytes, published size is {f.size} ({what})")
    try:
        who = inspect_file(path)
    except WanFileError as exc:
        return FileCheck(f, "wrong", path, f"wrong: {exc.problem}")
    except OSError as exc:
        return FileCheck(f, "wrong", path, f"wrong: cannot read it ({exc.strerror or exc})")
    want = expected_identity(f)
    if who.role != f.role:
        return FileCheck(f, "wrong", path, f"wrong: this is {who.detail}, not a {f.role} ({f.variant})")
    if who.variant != want:
        return FileCheck(f, "wrong", path, f"wrong: this is {who.detail}, not {f.variant}")
    if checksum and f.sha256:
        from .download import sha256_of

        actual = sha256_of(path)
        if actual != f.sha256:
            return FileCheck(f, "wrong", path, f"wrong: sha256 {actual} differs from the published {f.sha256}")
    return FileCheck(f, "ok", path, f"ok: {who.detail}")


def verify(catalog: Catalog, comfyui: str | os.PathLike, *, workflows: list[str] | None = None,
           checksum: bool = False) -> list[WorkflowReport]:
    """Per workflow, per slot, the check of each alternative file; a slot is filled by any ok one."""
    cache: dict[str, FileCheck] = {}
    reports = []
    for name in workflows or list(catalog.workflows):
        slots: dict[str, list[FileCheck]] = {}
        for slot in catalog.workflows[name].slots:
            checks = []
            for f in catalog.alternatives(name, slot):
                if f.name not in cache:
                    cache[f.name] = check_file(f, comfyui, checksum=checksum)
                checks.append(cache[f.name])
            slots[slot] = checks
        ok = all(any(c.status == "ok" for c in checks) for checks in slots.values())
        reports.append(WorkflowReport(name, ok, slots))
    return reports
