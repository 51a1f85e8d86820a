"""Configurations of the Wan diffusion transformer, one frozen dataclass with a named preset per variant.

Every Wan DiT is the same network; variants differ only in sizes and in a few optional parts
(CLIP image embedding, first/last-frame position embedding, VACE blocks, the Fun models' camera
adapter and reference conv), so one config covers all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODEL_TYPES = ("t2v", "i2v", "flf2v", "vace", "ti2v", "animate", "fun_control", "camera", "humo")
MODEL_TYPES += ("s2v",)  # Wan 2.2 S2V: audio injector, control encoder, reference and motion tokens
S2V_INJECT_LAYERS = (0, 4, 8, 12, 16, 20, 24, 27, 30, 33, 36, 39)  # fixed by the reference code, not in the file
FACE_EVERY = 5  # Animate: one face adapter block after every fifth DiT block


@dataclass(frozen=True)
class DiTConfig:
    """Sizes and optional parts of one Wan DiT.

    ``model_type`` says which inputs the network takes: "t2v" (noise only), "i2v" (noise + 20
    conditioning channels, with a CLIP image path when ``has_image_emb``), "flf2v" (i2v with a
    position embedding over first+last frame CLIP tokens), "vace" (t2v + VACE context blocks) and
    "ti2v" (Wan2.2 5B: 48 latent channels, per-frame timesteps), "animate" (Wan2.2 Animate 14B: i2v
    with a pose patch embedding, a face motion encoder and a face adapter after every fifth block),
    "fun_control" (Fun control: ``y`` holds the control video's latent beside the start image's, 2.2
    with a mask between) and "camera" (Fun camera: a camera adapter adds Plücker embeddings to the
    patch tokens), "humo" (HuMo: audio cross-attention in every block, reference frames behind the
    video; the 17B model takes 20 conditioning channels). Fun inpaint models are "i2v" networks. ``ref_in_dim``: the Fun reference conv (a
    reference image's latent as one frame of tokens in front); ``camera_in_dim``: camera adapter input
    channels.
    """

    variant: str
    model_type: str
    in_dim: int
    out_dim: int
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    freq_dim: int = 256
    text_dim: int = 4096
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    text_len: int = 512
    has_image_emb: bool = False
    has_flf_pos_emb: bool = False
    img_dim: int = 1280
    flf_pos_tokens: int = 514
    vace_layers: tuple[int, ...] = ()
    vace_in_dim: int = 0
    ref_in_dim: int = 0
    camera_in_dim: int = 0
    rope_theta: float = 10000.0
    audio_dim: int = 0  # S2V: wav2vec2 width, hidden-state layers mixed, blocks followed by the audio injector;
    # HuMo: the whisper width its audio projection reads
    audio_layers: int = 0
    audio_inject_layers: tuple[int, ...] = ()

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {self.model_type!r} is not one of {MODEL_TYPES}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        if self.has_flf_pos_emb and not self.has_image_emb:
            raise ValueError("a first/last-frame position embedding needs the CLIP image embedding")
        if any(not 0 <= i < self.num_layers for i in self.vace_layers):
            raise ValueError(f"vace_layers {self.vace_layers} outside 0..{self.num_layers - 1}")
        if self.model_type == "animate" and (self.num_layers % FACE_EVERY or not self.has_image_emb):
            raise ValueError(f"an Animate DiT has the CLIP image path and a multiple of {FACE_EVERY} blocks "
                             f"(one face adapter block per {FACE_EVERY}), got {self.num_layers}")
        if self.vace_layers and self.vace_layers[0] != 0:
            raise ValueError("the first VACE block must follow block 0 (it owns before_proj)")

    @property
    def is_s2v(self) -> bool:
        return self.model_type == "s2v"

    @property
    def is_animate(self) -> bool:
        return self.model_type == "animate"

    @property
    def is_humo(self) -> bool:
        return self.model_type == "humo"

    @property
    def face_blocks(self) -> int:
        """Face adapter blocks of an Animate DiT (0 for every other variant)."""
        return self.num_layers // FACE_EVERY if self.is_animate else 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def latent_channels(self) -> int:
        """Channels of the VAE latent this network denoises (48: Wan2.2 VAE, else Wan2.1 VAE)."""
        return self.out_dim

    @property
    def vae(self) -> str:
        """Which VAE family the variant expects: "wan2.2" (48 channels, 16x) or "wan2.1" (16, 8x)."""
        return "wan2.2" if self.out_dim == 48 else "wan2.1"

    @property
    def cond_channels(self) -> int:
        """Channels of ``y`` concatenated to the noise (0 when the network takes noise only)."""
        return self.in_dim - self.out_dim

    @property
    def image_tokens(self) -> int:
        """CLIP tokens the image path expects: 257 per image, 514 for first+last frame."""
        return self.flf_pos_tokens if self.has_flf_pos_emb else 257

    def tiny(self, dim: int = 256, ffn_dim: int = 512, num_layers: int = 2, **overrides) -> "DiTConfig":
        """The same structure at test size; head_dim stays 128 and text/CLIP widths stay real.

        VACE blocks are placed after every second block, as the 1.3B model does, so a tiny VACE
        network keeps more than one VACE block when it has four layers or more.
        """
        fields = dict(dim=dim, ffn_dim=ffn_dim, num_layers=num_layers, num_heads=max(1, dim // 128))
        if self.vace_layers:
            fields["vace_layers"] = tuple(range(0, num_layers, 2))
        if self.is_animate and num_layers % FACE_EVERY:
            fields["num_layers"] = FACE_EVERY  # the fewest blocks with a face adapter block
        if self.is_s2v and num_layers < 5:
            fields["num_layers"] = 5  # the audio injector runs after blocks 0 and 4
        fields["variant"] = f"{self.variant}_tiny"
        fields.update(overrides)
        return dataclasses.replace(self, **fields)


def _vace_layers(num_layers: int, count: int) -> tuple[int, ...]:
    # The official VACE models put one VACE block after every (num_layers // count)-th block.
    return tuple(range(0, num_layers, num_layers // count))


_SMALL = dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30)
_LARGE = dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)
_5B = dict(dim=3072, ffn_dim=14336, num_heads=24, num_layers=30)

DIT_PRESETS: dict[str, DiTConfig] = {
    c.variant: c
    for c in (
        DiTConfig("t2v_1_3b", "t2v", in_dim=16, out_dim=16, **_SMALL),
        DiTConfig("t2v_14b", "t2v", in_dim=16, out_dim=16, **_LARGE),
        DiTConfig("i2v_14b", "i2v", in_dim=36, out_dim=16, has_image_emb=True, **_LARGE),
        DiTConfig(
            "flf2v_14b", "flf2v", in_dim=36, out_dim=16, has_image_emb=True, has_flf_pos_emb=True, **_LARGE
        ),
        DiTConfig(
            "vace_1_3b", "vace", in_dim=16, out_dim=16, vace_layers=_vace_layers(30, 15), vace_in_dim=96, **_SMALL
        ),
        DiTConfig(
            "vace_14b", "vace", in_dim=16, out_dim=16, vace_layers=_vace_layers(40, 8), vace_in_dim=96, **_LARGE
        ),
        # Each Wan2.2 A14B expert (high noise, low noise) is one 14B network of this shape.
        DiTConfig("wan22_t2v_a14b", "t2v", in_dim=16, out_dim=16, **_LARGE),
        DiTConfig("wan22_i2v_a14b", "i2v", in_dim=36, out_dim=16, **_LARGE),
        DiTConfig("wan22_animate_14b", "animate", in_dim=36, out_dim=16, has_image_emb=True, **_LARGE),
        # VideoX-Fun's models (alibaba-pai): Fun inpaint is an I2V network (the 14B one has
        # i2v_14b's tensors); Fun control takes [control, image] latents (2.2: [control, mask,
        # image]); V1.1 and 2.2 add the reference conv; camera models add the camera adapter.
        DiTConfig("fun_inpaint_1_3b", "i2v", in_dim=36, out_dim=16, has_image_emb=True, **_SMALL),
        DiTConfig("fun_control_1_3b", "fun_control", in_dim=48, out_dim=16, has_image_emb=True, **_SMALL),
        DiTConfig("fun_control_14b", "fun_control", in_dim=48, out_dim=16, has_image_emb=True, **_LARGE),
        DiTConfig("fun_control_ref_1_3b", "fun_control", in_dim=48, out_dim=16, has_image_emb=True, ref_in_dim=16,
                  **_SMALL),
        DiTConfig("fun_control_ref_14b", "fun_control", in_dim=48, out_dim=16, has_image_emb=True, ref_in_dim=16,
                  **_LARGE),
        DiTConfig("wan22_fun_control_a14b", "fun_control", in_dim=52, out_dim=16, ref_in_dim=16, **_LARGE),
        DiTConfig("camera_1_3b", "camera", in_dim=32, out_dim=16, has_image_emb=True, camera_in_dim=24, **_SMALL),
        DiTConfig("camera_14b", "camera", in_dim=32, out_dim=16, has_image_emb=True, camera_in_dim=24, **_LARGE),
        DiTConfig("wan22_camera_a14b", "camera", in_dim=36, out_dim=16, camera_in_dim=24, **_LARGE),
        DiTConfig("wan22_s2v_14b", "s2v", in_dim=16, out_dim=16, audio_dim=1024, audio_layers=25,
                  audio_inject_layers=S2V_INJECT_LAYERS, **_LARGE),
        # HuMo (ByteDance): 1.7B on Wan 2.1 T2V 1.3B, 17B on T2V 14B with 20 conditioning channels
        DiTConfig("humo_1_7b", "humo", in_dim=16, out_dim=16, audio_dim=1280, **_SMALL),  # whisper large v3's width
        DiTConfig("humo_17b", "humo", in_dim=36, out_dim=16, audio_dim=1280, **_LARGE),
        DiTConfig("ti2v_5b", "ti2v", in_dim=48, out_dim=48, dim=3072, ffn_dim=14336, num_heads=24, num_layers=30),
        # Wan2.2-Fun-5B-Control: the A14B control layout on the 5B network and 48-channel latents
        DiTConfig("wan22_fun_control_5b", "fun_control", in_dim=148, out_dim=48, ref_in_dim=48, **_5B),
    )
}


def same_network(a: DiTConfig, b: DiTConfig) -> bool:
    """Whether two configs describe identical tensors (everything but the variant name)."""
    return dataclasses.replace(a, variant="") == dataclasses.replace(b, variant="")
