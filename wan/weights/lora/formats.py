"""LoRA key formats in circulation for Wan, and their mapping onto the DiT's official names.

A LoRA file names each patched layer in one of several dialects:

- original / ComfyUI: ``diffusion_model.blocks.0.self_attn.q`` (or without the prefix), with
  ``lora_A``/``lora_B`` or ``lora_down``/``lora_up`` and an optional ``alpha``;
- kohya / musubi-tuner: ``lora_unet_blocks_0_self_attn_q`` (dots flattened to underscores; some
  files flatten only the head, ``lora_unet_blocks_0.self_attn.q``);
- diffusers / PEFT: ``transformer.blocks.0.attn1.to_q`` (also ``base_model.model.``,
  ``diffusion_model.`` + diffusers names, and flattened ``lora_transformer_...``);
- full-rank deltas (step-distillation LoRAs such as lightx2v's): ``<module>.diff`` (weight),
  ``.diff_b`` (bias) and ``blocks.N.diff_m`` (the block's ``modulation`` parameter).

The mapping is built from the target model's own module names, never guessed: every official
module path gets its aliases (diffusers name, underscore-flattened official and diffusers names),
and an alias claimed by two different modules is dropped as ambiguous rather than picked.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..names import LORA_DOTTED_PREFIXES, LORA_FLAT_PREFIXES, official_to_diffusers_name

# Tensor-name suffix -> role. Longest first so ".lora_B.default.weight" wins over ".lora_B".
_ROLE_SUFFIXES: tuple[tuple[str, str], ...] = tuple(sorted({
    ".lora_up.weight": "up",
    ".lora_down.weight": "down",
    ".lora_B.weight": "up",
    ".lora_A.weight": "down",
    ".lora_B.default.weight": "up",
    ".lora_A.default.weight": "down",
    ".lora.up.weight": "up",
    ".lora.down.weight": "down",
    "_lora.up.weight": "up",
    "_lora.down.weight": "down",
    ".lora_linear_layer.up.weight": "up",
    ".lora_linear_layer.down.weight": "down",
    ".lora_B": "up",
    ".lora_A": "down",
    ".alpha": "alpha",
    ".diff": "diff",
    ".diff_b": "diff_b",
    ".lora_B.bias": "diff_b",
    ".diff_m": "diff_m",
    # Recognised adapters we do not apply: reported, never silently dropped.
    ".dora_scale": "unsupported:DoRA",
    ".lora_mid.weight": "unsupported:LoCon (Tucker mid)",
    ".hada_w1_a": "unsupported:LoHa",
    ".hada_w1_b": "unsupported:LoHa",
    ".hada_w2_a": "unsupported:LoHa",
    ".hada_w2_b": "unsupported:LoHa",
    ".lokr_w1": "unsupported:LoKr",
    ".lokr_w2": "unsupported:LoKr",
    ".lokr_w1_a": "unsupported:LoKr",
    ".lokr_w1_b": "unsupported:LoKr",
    ".lokr_w2_a": "unsupported:LoKr",
    ".lokr_w2_b": "unsupported:LoKr",
    ".oft_blocks": "unsupported:OFT",
    ".w_norm": "unsupported:GLoRA/norm",
    ".b_norm": "unsupported:GLoRA/norm",
    ".set_weight": "unsupported:set_weight",
    ".reshape_weight": "ignored",
}.items(), key=lambda kv: -len(kv[0])))

def split_key(key: str) -> tuple[str, str] | None:
    """``'x.y.lora_A.weight'`` -> ``('x.y', 'down')``; None when no LoRA suffix is present."""
    for suffix, role in _ROLE_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], role
    return None


@dataclass(frozen=True)
class NameIndex:
    """Aliases of one model's patchable names.

    ``dotted``/``flat`` map an alias (after prefix stripping) to an official *site*: a module path
    (``blocks.0.self_attn.q``, patched at ``.weight``/``.bias``) or a parameter path that is not a
    module's weight (``blocks.0.modulation``). ``params`` maps official parameter names to shapes.
    """

    dotted: dict[str, str]
    flat: dict[str, str]
    params: dict[str, tuple[int, ...] | None]


def build_index(params: dict[str, tuple[int, ...] | None]) -> NameIndex:
    """Index the aliases of every module and stand-alone parameter of a model."""
    sites: set[str] = set()
    for name in params:
        module, _, leaf = name.rpartition(".")
        if leaf in ("weight", "bias") and module:
            sites.add(module)
        else:
            sites.add(name)
    dotted: dict[str, str | None] = {}
    flat: dict[str, str | None] = {}

    def claim(table: dict[str, str | None], alias: str, site: str) -> None:
        if table.get(alias, site) != site:
            table[alias] = None  # two sites share this alias: refuse to choose
        else:
            table[alias] = site

    for site in sorted(sites):
        diff = official_to_diffusers_name(site)
        for alias in {site, diff}:
            claim(dotted, alias, site)
            claim(flat, alias.replace(".", "_"), site)
    return NameIndex(
        dotted={k: v for k, v in dotted.items() if v is not None},
        flat={k: v for k, v in flat.items() if v is not None},
        params=dict(params),
    )


def resolve_site(raw: str, index: NameIndex) -> tuple[str, str] | None:
    """LoRA module name -> (official site, dialect) or None when the model has no such layer."""
    if raw in index.dotted:
        return index.dotted[raw], _dialect(raw, raw, index)
    for prefix in LORA_DOTTED_PREFIXES:
        if raw.startswith(prefix):
            rest = raw[len(prefix):]
            if rest in index.dotted:
                return index.dotted[rest], _dialect(raw, rest, index)
    for prefix in LORA_FLAT_PREFIXES:
        if raw.startswith(prefix):
            # some kohya-style files flatten only the head (lora_unet_blocks_0.self_attn.q)
            rest = raw[len(prefix):].replace(".", "_")
            if rest in index.flat:
                return index.flat[rest], "kohya"
    return None


def _dialect(raw: str, stripped: str, index: NameIndex) -> str:
    site = index.dotted[stripped]
    if stripped != site:
        return "diffusers"
    return "diffusers" if raw.startswith(("transformer.", "base_model.model.")) else "original"


# Marker substrings of LoRA keys written for other model families, for the zero-match message.
_FOREIGN_MARKERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("double_blocks", "single_blocks", "single_transformer_blocks"), "Flux or HunyuanVideo"),
    (("joint_blocks", "context_block"), "Stable Diffusion 3"),
    (("input_blocks", "output_blocks", "middle_block", "down_blocks", "up_blocks", "mid_block"),
     "Stable Diffusion 1.x/2.x/SDXL (UNet)"),
    (("lora_te_", "lora_te1_", "lora_te2_", "text_encoder", "text_model"), "a text encoder (CLIP/T5)"),
    (("transformer_blocks", "adaln_single"), "another DiT (LTX-Video, PixArt, Qwen-Image, ...)"),
    (("layers.", "noise_refiner", "context_refiner"), "Lumina/HiDream-style DiT"),
)


def guess_foreign(keys) -> str | None:
    """A human description of which model family LoRA keys were written for, if recognisable."""
    keys = list(keys)
    for markers, what in _FOREIGN_MARKERS:
        if any(m in k for k in keys for m in markers):
            return what
    return None
