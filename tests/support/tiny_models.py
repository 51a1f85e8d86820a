"""Tiny model files in the real on-disk formats, from seeded random weights (no tests here).

Every writer produces what a user's file looks like, only small: official/ComfyUI tensor names,
safetensors (bf16/fp16/fp32 or fp8 e4m3fn) or GGUF written by our ComfyUI-GGUF-layout writer.
DiTs keep head_dim 128 and text_dim 4096 so that detection and the text path are real; the UMT5
encoder therefore has d_model 4096 (one layer) and carries its sentencepiece model as the
``spiece_model`` tensor, as ComfyUI's repackaged file does; the CLIP vision tower keeps width 1280.
The Wan 2.1 VAE keeps ComfyUI's fixed structure (dim_mult 1,2,4,4, two res blocks) with dim 8,
so ComfyUI's own VAELoader reads it too. The DiT, UMT5 and VAE weights come from wan.install.tiny (the
library's tiny-install writers); what only tests need (GGUF text encoder, CLIP vision, LoRA, a
GGUF of another architecture, a trained tokenizer) is built here on its functions.

``write_set(models_dir)`` writes one file per role into ComfyUI folders and returns their names.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import torch

from wan.install.tiny import (DIT_SIZE, dit_config, dit_state, save_safetensors, seeded, umt5_state, vae_state,
                      write_vae)
from wan.install.tiny import write_dit as _write_dit
from wan.install.tiny import write_umt5 as _write_umt5
from tiny_audio import LAYERS as AUDIO_LAYERS
from tiny_audio import WIDTH as AUDIO_WIDTH
from tiny_audio import write_wav2vec2, write_whisper


# ---- DiT -----------------------------------------------------------------------------------------

def write_dit(path, variant: str = "t2v_1_3b", fmt: str = "safetensors", seed: int = 0,
              qtype: str = "Q8_0", prefix: str = "") -> Path:
    """wan.install.tiny.write_dit, with fmt "safetensors" meaning bf16 (also "fp16", "fp8", "gguf")."""
    return _write_dit(path, variant, "bf16" if fmt == "safetensors" else fmt, seed, qtype, prefix)


def write_wrong_arch_gguf(path, arch: str = "flux") -> Path:
    """A valid GGUF of another architecture (what a Flux or SD GGUF looks like to the loader)."""
    import gguf
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_tensor("double_blocks.0.img_attn.qkv.weight", np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32))
    w.add_tensor("img_in.weight", np.ones((32, 16), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# ---- UMT5 ----------------------------------------------------------------------------------------

_SPIECE: bytes | None = None


def spiece_model() -> bytes:
    """A sentencepiece model trained by sentencepiece's own trainer (nmt_nfkc normalizer, as the real
    UMT5 one) with UMT5's special ids (pad 0, eos 1, unk 2, no bos). wan.install.tiny's hand-built model has
    no normalizer; the tests want the trainer's."""
    global _SPIECE
    if _SPIECE is None:
        import sentencepiece as spm

        rng = random.Random(0)
        words = ("a sword in burning wood fire moving glowing embers smoke rising dark background volumetric "
                 "lighting detailed textures bad quality blurry messy chaotic portrait man smile hat hand "
                 "waving greeting red house green hill blue sky clouds").split()
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(1500)]
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=buf, vocab_size=60, model_type="unigram",
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, minloglevel=2,
        )
        _SPIECE = buf.getvalue()
    return _SPIECE


def write_umt5(path, seed: int = 5) -> Path:
    return _write_umt5(path, seed, spiece=spiece_model())


def add_t5_tokenizer(writer, proto_bytes: bytes) -> None:
    """Writes a sentencepiece model into GGUF tokenizer metadata as llama.cpp's t5 converter does."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(proto_bytes)
    writer.add_tokenizer_model("t5")
    writer.add_token_list([p.piece for p in proto.pieces])
    writer.add_token_scores([p.score for p in proto.pieces])
    writer.add_token_types([int(p.type) for p in proto.pieces])
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    writer.add_remove_extra_whitespaces(proto.normalizer_spec.remove_extra_whitespaces)
    writer.add_precompiled_charsmap(proto.normalizer_spec.precompiled_charsmap)
    writer.add_eos_token_id(proto.trainer_spec.eos_id)
    writer.add_pad_token_id(proto.trainer_spec.pad_id)
    writer.add_unk_token_id(proto.trainer_spec.unk_id)


_T5_GGUF_NAMES = (  # HF -> llama.cpp names (the inverse of what ComfyUI-GGUF and wan.weights.gguf_text map)
    ("encoder.final_layer_norm", "enc.output_norm"), ("shared", "token_embd"), ("encoder.block.", "enc.blk."),
    ("layer.0.SelfAttention.relative_attention_bias", "attn_rel_b"), ("layer.0.SelfAttention.q", "attn_q"),
    ("layer.0.SelfAttention.k", "attn_k"), ("layer.0.SelfAttention.v", "attn_v"), ("layer.0.SelfAttention.o", "attn_o"),
    ("layer.0.layer_norm", "attn_norm"), ("layer.1.DenseReluDense.wi_0", "ffn_gate"),
    ("layer.1.DenseReluDense.wi_1", "ffn_up"), ("layer.1.DenseReluDense.wo", "ffn_down"), ("layer.1.layer_norm", "ffn_norm"),
)


def write_umt5_gguf(path, seed: int = 5) -> Path:
    """The UMT5 encoder as a llama.cpp "t5encoder" GGUF (city96's umt5-xxl-encoder-*.gguf layout):
    Q8_0 matrices, F32 vectors, the sentencepiece vocabulary as tokenizer metadata."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "t5encoder")
    add_t5_tokenizer(w, spiece_model())
    for key, value in umt5_state(seed).items():
        name = key
        for hf, cpp in _T5_GGUF_NAMES:
            name = name.replace(hf, cpp)
        data = value.float().numpy()
        if value.ndim == 2 and value.shape[1] % 32 == 0 and "attn_rel_b" not in name:
            q8 = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(name, gguf.quants.quantize(data, q8), raw_dtype=q8)
        else:
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# ---- CLIP vision ---------------------------------------------------------------------------------

def clip_vision_state(seed: int = 7, hidden: int = 1280, layers: int = 2, heads: int = 16, inter: int = 64,
                      image: int = 28, patch: int = 14, proj: int = 32) -> dict[str, torch.Tensor]:
    """HF CLIPVisionModelWithProjection names (clip_vision_h layout) at width 1280, 28 px images."""
    tokens = (image // patch) ** 2 + 1
    shapes = {
        "vision_model.embeddings.class_embedding": (hidden,),
        "vision_model.embeddings.patch_embedding.weight": (hidden, 3, patch, patch),
        "vision_model.embeddings.position_embedding.weight": (tokens, hidden),
        "vision_model.pre_layrnorm.weight": (hidden,), "vision_model.pre_layrnorm.bias": (hidden,),
        "vision_model.post_layernorm.weight": (hidden,), "vision_model.post_layernorm.bias": (hidden,),
        "visual_projection.weight": (proj, hidden),
    }
    for i in range(layers):
        p = f"vision_model.encoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{n}.weight"] = (hidden, hidden)
            shapes[p + f"self_attn.{n}.bias"] = (hidden,)
        shapes.update({
            p + "layer_norm1.weight": (hidden,), p + "layer_norm1.bias": (hidden,),
            p + "layer_norm2.weight": (hidden,), p + "layer_norm2.bias": (hidden,),
            p + "mlp.fc1.weight": (inter, hidden), p + "mlp.fc1.bias": (inter,),
            p + "mlp.fc2.weight": (hidden, inter), p + "mlp.fc2.bias": (hidden,),
        })
    return seeded(shapes, seed)


def write_clip_vision(path, seed: int = 7) -> Path:
    return save_safetensors({k: v.to(torch.float16) for k, v in clip_vision_state(seed).items()}, path)


# ---- LoRA ----------------------------------------------------------------------------------------

def write_lora(path, variant: str = "vace_14b", rank: int = 4, seed: int = 11, blocks=None,
               modules=("self_attn.q", "self_attn.k", "cross_attn.v", "ffn.0")) -> Path:
    """A LoRA in ComfyUI/original names (``diffusion_model.blocks.N.<module>.lora_A/B``) with alpha."""
    cfg = dit_config(variant)
    shapes = {k: tuple(v.shape) for k, v in dit_state(variant).items()}
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in (range(cfg.num_layers) if blocks is None else blocks):
        for m in modules:
            # a block the model lacks gets block 0's shape (a LoRA for a deeper model)
            out_f, in_f = shapes.get(f"blocks.{i}.{m}.weight", shapes[f"blocks.0.{m}.weight"])
            key = f"diffusion_model.blocks.{i}.{m}"
            sd[key + ".lora_A.weight"] = (torch.randn(rank, in_f, generator=g) / in_f**0.5).to(torch.bfloat16)
            sd[key + ".lora_B.weight"] = (torch.randn(out_f, rank, generator=g) * 0.1).to(torch.bfloat16)
            sd[key + ".alpha"] = torch.tensor(float(rank))
    return save_safetensors(sd, path)


# ---- Stable Diffusion 1.5 ------------------------------------------------------------------------

def sd15_checkpoint_state(seed: int = 13) -> dict[str, torch.Tensor]:
    """An SD1.5 single-file checkpoint (``model.diffusion_model.``, ``cond_stage_model.transformer.``,
    ``first_stage_model.``), names and shapes from ComfyUI's own modules on the meta device.

    ComfyUI reads the UNet's layout from the keys but matches SD1.5 on model_channels 320 and
    context_dim 768 (conv proj_in), so the UNet keeps those with one level (channel_mult 1, no
    downsampling), one res block, one depth-1 transformer on the way down, none on the way up and no
    middle block. The text encoder and VAE are built from fixed configs whatever the file holds
    (missing weights would stay uninitialised memory), so CLIP-L is whole; of the VAE only the decoder
    half (``post_quant_conv`` + ``decoder``) is written, as VAEDecode never runs the encoder.
    """
    from refs import comfy

    ops = comfy("comfy.ops").disable_weight_init
    openaimodel = comfy("comfy.ldm.modules.diffusionmodules.openaimodel")
    clip_model = comfy("comfy.clip_model")
    autoencoder = comfy("comfy.ldm.models.autoencoder")
    clip_cfg = json.loads((Path(clip_model.__file__).with_name("sd1_clip_config.json")).read_text())
    vae_cfg = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
               "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    parts = {
        "model.diffusion_model.": lambda: openaimodel.UNetModel(
            image_size=32, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=[1],
            channel_mult=[1], transformer_depth=[1], transformer_depth_output=[0, 0], transformer_depth_middle=-2,
            context_dim=768, num_heads=8, use_spatial_transformer=True, legacy=False, operations=ops),
        "cond_stage_model.transformer.":
            lambda: clip_model.CLIPTextModel(clip_cfg, torch.float32, None, ops).text_model,
        "first_stage_model.": lambda: autoencoder.AutoencoderKL(ddconfig=vae_cfg, embed_dim=4),
    }
    out = {}
    for i, (prefix, factory) in enumerate(parts.items()):
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in factory().state_dict().items()}
        if prefix == "cond_stage_model.transformer.":
            shapes = {"text_model." + k: v for k, v in shapes.items()}
        elif prefix == "first_stage_model.":
            shapes = {k: v for k, v in shapes.items() if k.startswith(("decoder.", "post_quant_conv."))}
        for k, v in seeded(shapes, seed + i).items():
            out[prefix + k] = v.to(torch.float16)
    return out


def write_sd15_checkpoint(path, seed: int = 13) -> Path:
    """The reduced SD1.5 checkpoint, fp16 safetensors, for ComfyUI's CheckpointLoaderSimple."""
    return save_safetensors(sd15_checkpoint_state(seed), path)


# ---- a whole set ---------------------------------------------------------------------------------

# Catalogue file names (wan/install/catalog.json) so that the bundled workflows find them unchanged.
NAMES = {
    "t2v_gguf": ("unet", "Wan2.1-T2V-1.3B-Q8_0.gguf"),
    "i2v_fp8": ("diffusion_models", "wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors"),
    "vace_gguf": ("unet", "Wan2.1_14B_VACE-Q3_K_S.gguf"),
    "wan22_high": ("diffusion_models", "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"),
    "wan22_low": ("diffusion_models", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"),
    "ti2v_5b": ("diffusion_models", "wan2.2_ti2v_5B_fp16.safetensors"),
    "umt5": ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
    "umt5_gguf": ("text_encoders", "umt5-xxl-encoder-Q8_0.gguf"),
    "clip_vision": ("clip_vision", "clip_vision_h.safetensors"),
    "vae21": ("vae", "wan_2.1_vae.safetensors"),
    "vae22": ("vae", "wan2.2_vae.safetensors"),
    "lora": ("loras", "Wan21_CausVid_14B_T2V_lora_rank32.safetensors"),
    "i2v22_high": ("diffusion_models", "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"),
    "i2v22_low": ("diffusion_models", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"),
    "flf2v": ("diffusion_models", "wan2.1_flf2v_720p_14B_fp8_e4m3fn.safetensors"),
    "animate": ("diffusion_models", "wan2.2_animate_14B_bf16.safetensors"),
    "lightning_i2v_high": ("loras", "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors"),
    "lightning_i2v_low": ("loras", "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors"),
    "lightning_t2v_high": ("loras", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors"),
    "lightning_t2v_low": ("loras", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors"),
    "fun_control": ("diffusion_models", "wan2.1_fun_control_1.3B_bf16.safetensors"),
    "fun_inpaint": ("diffusion_models", "wan2.1_fun_inp_1.3B_bf16.safetensors"),
    "fun_camera": ("diffusion_models", "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors"),
    "phantom": ("diffusion_models", "Phantom-Wan-14B_fp8_e4m3fn.safetensors"),
    "ati": ("diffusion_models", "Wan2_1-I2V-ATI-14B_fp8_e4m3fn.safetensors"),
    "wav2vec2": ("audio_encoders", "wav2vec2_large_english_fp16.safetensors"),
    "whisper": ("audio_encoders", "whisper_large_v3_fp16.safetensors"),
    "s2v": ("diffusion_models", "wan2.2_s2v_14B_bf16.safetensors"),
    "humo": ("diffusion_models", "humo_1.7B_fp16.safetensors"),
}


def _write_audio_dit(path, variant: str, seed: int, dtype=torch.bfloat16, **fields) -> Path:
    """A tiny audio-driven DiT whose audio path reads this set's tiny audio encoder."""
    from dataclasses import replace

    from wan.models.dit.model import WanDiT

    cfg = replace(dit_config(variant), **fields)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanDiT(cfg).state_dict().items()}
    return save_safetensors({k: v.to(dtype) for k, v in seeded(shapes, seed).items()}, path)


def write_s2v(path, seed: int = 21) -> Path:
    """Wan S2V reading the tiny wav2vec2 (width 128, 2 layers: 3 hidden states), not the published 1024 x 25."""
    return _write_audio_dit(path, "wan22_s2v_14b", seed, audio_dim=AUDIO_WIDTH, audio_layers=AUDIO_LAYERS + 1)


# HuMo takes whisper large v3's 33 hidden states (its layer groups are fixed): the tiny whisper keeps
# the 32 layers and shrinks the width
HUMO_WHISPER = dict(width=64, layers=32)


def write_humo(path, seed: int = 22) -> Path:
    """HuMo 1.7B (fp16 as published) reading the tiny whisper of ``HUMO_WHISPER``."""
    return _write_audio_dit(path, "humo_1_7b", seed, torch.float16, audio_dim=HUMO_WHISPER["width"])


def write_set(models_dir, only=None) -> dict[str, Path]:
    """Write the tiny files under ``models_dir/<folder>/<catalogue name>``; returns role -> path."""
    models_dir = Path(models_dir)
    writers = {
        "t2v_gguf": lambda p: write_dit(p, "t2v_1_3b", "gguf", seed=0),
        "i2v_fp8": lambda p: write_dit(p, "i2v_14b", "fp8", seed=1),
        "vace_gguf": lambda p: write_dit(p, "vace_14b", "gguf", seed=2),
        "wan22_high": lambda p: write_dit(p, "wan22_t2v_a14b", "fp8", seed=3),
        "wan22_low": lambda p: write_dit(p, "wan22_t2v_a14b", "fp8", seed=4),
        "ti2v_5b": lambda p: write_dit(p, "ti2v_5b", "fp16", seed=5),
        "umt5": write_umt5,
        "umt5_gguf": write_umt5_gguf,
        "clip_vision": write_clip_vision,
        "vae21": lambda p: write_vae(p, "2.1"),
        "vae22": lambda p: write_vae(p, "2.2"),
        "lora": lambda p: write_lora(p, "vace_14b"),
        "i2v22_high": lambda p: write_dit(p, "wan22_i2v_a14b", "fp8", seed=6),
        "i2v22_low": lambda p: write_dit(p, "wan22_i2v_a14b", "fp8", seed=7),
        "flf2v": lambda p: write_dit(p, "flf2v_14b", "fp8", seed=8),
        # bf16 as published; its motion and face encoders keep their real widths (~36M values)
        "animate": lambda p: write_dit(p, "wan22_animate_14b", "safetensors", seed=9),
        "lightning_i2v_high": lambda p: write_lora(p, "wan22_i2v_a14b", seed=12),
        "lightning_i2v_low": lambda p: write_lora(p, "wan22_i2v_a14b", seed=13),
        "lightning_t2v_high": lambda p: write_lora(p, "wan22_t2v_a14b", seed=14),
        "lightning_t2v_low": lambda p: write_lora(p, "wan22_t2v_a14b", seed=15),
        "fun_control": lambda p: write_dit(p, "fun_control_1_3b", seed=16),
        "fun_inpaint": lambda p: write_dit(p, "fun_inpaint_1_3b", seed=17),
        "fun_camera": lambda p: write_dit(p, "camera_1_3b", seed=18),
        # Phantom-Wan and ATI are a T2V and an I2V 14B in their weights
        "phantom": lambda p: write_dit(p, "t2v_14b", "fp8", seed=19),
        "ati": lambda p: write_dit(p, "i2v_14b", "fp8", seed=20),
        "wav2vec2": write_wav2vec2,
        "whisper": lambda p: write_whisper(p, **HUMO_WHISPER),
        # bf16 as published, reading the tiny wav2vec2 of this set (its width, its hidden states)
        "s2v": write_s2v,
        "humo": write_humo,
    }
    out = {}
    for role, (folder, name) in NAMES.items():
        if only is not None and role not in only:
            continue
        path = models_dir / folder / name
        if not path.exists():
            writers[role](path)
        out[role] = path
    return out


__all__ = ["DIT_SIZE", "NAMES", "add_t5_tokenizer", "write_set", "write_dit", "write_vae", "write_umt5", "write_clip_vision", "write_lora", "write_sd15_checkpoint",
           "write_umt5_gguf", "write_wrong_arch_gguf", "dit_state", "vae_state", "umt5_state", "clip_vision_state", "spiece_model"]
