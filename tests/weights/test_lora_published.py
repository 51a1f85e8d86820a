"""The step-distillation LoRAs as published (Wan2.2-Lightning, lightx2v's distill LoRAs, CausVid)
against the full-size networks they are made for, built on the meta device: every key matches on
both Wan 2.2 I2V A14B experts and on Wan 2.1 I2V 14B; the report names the expert; a LoRA made
for another model gets a plain reason (which model it is for), as a warning when part of it
applies and as an error naming the file, before anything is sampled, when none does.

The LoRA files are written from hand-made tables of the official shapes (published_loras), never
from our model, so the 100% matches also check our networks' names and shapes."""

from __future__ import annotations

import logging

import pytest
import torch

import published_loras as pub
from dit_fixtures import random_weights, tiny_config
from wan.errors import WanFileError
from wan.job.conditioning import PromptEmbeds, t2v_conditioning
from wan.job.options import RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.weights.lora import HIGH_NOISE, LOW_NOISE, apply_loras, check_loras, load_lora


def meta_model(variant: str) -> WanDiT:
    with torch.device("meta"):
        return WanDiT(DIT_PRESETS[variant])


@pytest.fixture(scope="module")
def models():
    # the two experts are two networks of one shape, as loaded from their two files
    return {"high": meta_model("wan22_i2v_a14b"), "low": meta_model("wan22_i2v_a14b"),
            "wan21_i2v": meta_model("i2v_14b")}


def lora_file(tmp_path, name, sd):
    return load_lora(pub.write(tmp_path / f"{name}.safetensors", sd))


def expected_patches(sd) -> int:
    """Patches a file holds, counted from its key names as the layouts define them."""
    pairs = {k[: -len(".lora_down.weight")] for k in sd if k.endswith(".lora_down.weight")}
    diffs = [k for k in sd if k.endswith((".diff", ".diff_b", ".diff_m"))]
    return len(pairs) + len(diffs)


# (name, layout, shapes it was made from) for each published file
PUBLISHED = [
    ("Wan2.2-Lightning_I2V-A14B-4steps-lora_HIGH", pub.lightning, pub.WAN22_I2V_A14B),
    ("Wan2.2-Lightning_I2V-A14B-4steps-lora_LOW", pub.lightning, pub.WAN22_I2V_A14B),
    ("Wan2.2-Lightning_T2V-A14B-4steps-lora_HIGH", pub.lightning, pub.WAN22_T2V_A14B),
    ("wan2.2_i2v_A14b_high_noise_lora_rank64_lightx2v_4step", pub.lightx2v_extracted, pub.WAN22_I2V_A14B),
    ("wan2.2_i2v_A14b_low_noise_lora_rank64_lightx2v_4step", pub.lightx2v_extracted, pub.WAN22_I2V_A14B),
    ("Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32", pub.comfy_extracted, pub.WAN21_T2V_14B),
    ("Wan21_CausVid_14B_T2V_lora_rank32", pub.comfy_extracted, pub.WAN21_T2V_14B),
    ("musubi_wan22_i2v_a14b", pub.musubi, pub.WAN22_I2V_A14B),
    ("musubi_head_only_wan21_t2v_14b", lambda s: pub.musubi(s, head_only=True), pub.WAN21_T2V_14B),
]


@pytest.mark.parametrize("name,layout,shapes", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_lora_matches_every_key_on_each_expert_and_wan21_i2v(tmp_path, models, name, layout, shapes):
    sd = layout(shapes)
    lora = lora_file(tmp_path, name, sd)
    assert len(lora.entries) == expected_patches(sd)
    for key, expert in (("high", HIGH_NOISE), ("low", LOW_NOISE), ("wan21_i2v", None)):
        report = lora.match(models[key], expert)
        assert report.matched == report.total == expected_patches(sd), report.describe()
        assert report.complete and not report.notes, report.describe()
        where = expert or "this Wan DiT"
        assert f"{report.total} of {report.total} LoRA patches match {where} (100%)" in report.describe()


def test_wan21_i2v_distill_lora_matches_wan21_i2v_and_says_why_part_skips_on_wan22(tmp_path, models):
    sd = pub.comfy_extracted(pub.WAN21_I2V_14B)
    lora = lora_file(tmp_path, "Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank64", sd)
    full = lora.match(models["wan21_i2v"])
    assert full.matched == full.total == expected_patches(sd) and full.complete, full.describe()
    image_keys = [k for k in sd if any(m in k for m in ("k_img", "v_img", "norm_k_img", "img_emb"))
                  and not k.endswith(".lora_up.weight")]
    report = lora.match(models["low"], LOW_NOISE)
    assert report.total - report.matched == len(image_keys), report.describe()
    assert not report.shape_mismatches
    assert any("CLIP image path" in n and "Wan 2.2 A14B" in n for n in report.notes), report.describe()


def test_t2v_lora_with_patch_embedding_on_i2v_expert_warns_naming_the_mismatch(tmp_path, models, caplog):
    # lightx2v's extractor writes the Conv3d patch embedding as a full delta: 16 input channels
    sd = pub.lightx2v_extracted(pub.WAN22_T2V_A14B)
    lora = lora_file(tmp_path, "wan2.2_t2v_A14b_high_noise_lora_rank64_lightx2v_4step", sd)
    with caplog.at_level(logging.INFO, logger="wan.weights.lora.check"):
        (report,) = check_loras(models["high"], [(lora, 1.0)], HIGH_NOISE)
    assert report.total - report.matched == 1
    assert report.shape_mismatches[0].startswith("diffusion_model.patch_embedding")
    note = "takes 16 latent channels (text-to-video); the model takes 36 latent channels (image-to-video)"
    assert any(note in n for n in report.notes), report.notes
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert lora.name in record.getMessage() and "the high-noise expert" in record.getMessage()
    assert note in record.getMessage()


@pytest.mark.parametrize("shapes,layout,said", [
    (pub.WAN22_TI2V_5B, pub.lightx2v_extracted, "this LoRA is for a dim-3072 (5B) Wan model; the model is dim-5120 (14B)"),
    (pub.WAN21_T2V_1_3B, pub.musubi, "this LoRA is for a dim-1536 (1.3B) Wan model; the model is dim-5120 (14B)"),
], ids=["5B", "1.3B"])
def test_lora_for_another_size_on_one_expert_is_an_error_naming_file_and_sizes(tmp_path, models, shapes, layout, said):
    lora = lora_file(tmp_path, "other_size", layout(shapes))
    with pytest.raises(WanFileError) as err:
        check_loras(models["low"], [(lora, 1.0)], LOW_NOISE)
    message = str(err.value)
    assert err.value.path == lora.path and message.startswith(lora.name + ": ")
    assert said in message and "the low-noise expert" in message
    # the library's own path says the same before touching a weight
    with pytest.raises(WanFileError, match="dim-3072|dim-1536") as err2:
        apply_loras(models["low"], [(lora, 1.0)])
    assert err2.value.path == lora.path


def test_report_lines_name_the_expert_each_chain_goes_on(tmp_path, models, caplog):
    high = lora_file(tmp_path, "Wan2.2-Lightning_I2V-A14B-4steps-lora_HIGH", pub.lightning(pub.WAN22_I2V_A14B))
    low = lora_file(tmp_path, "Wan2.2-Lightning_I2V-A14B-4steps-lora_LOW", pub.lightning(pub.WAN22_I2V_A14B))
    said = []
    with caplog.at_level(logging.INFO, logger="wan.weights.lora.check"):
        check_loras(models["high"], [(high, 3.0)], HIGH_NOISE, say=said.append)
        check_loras(models["low"], [(low, 1.0)], LOW_NOISE, say=said.append)
    assert [r.getMessage() for r in caplog.records] == said
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert said[0].startswith(f"Wan LoRA {high.name} (strength 3): 400 of 400 LoRA patches match the high-noise expert")
    assert said[1].startswith(f"Wan LoRA {low.name} (strength 1): 400 of 400 LoRA patches match the low-noise expert")


def test_lora_for_another_model_on_the_low_expert_fails_before_any_step(tmp_path):
    cfg = tiny_config("wan22_t2v_a14b")
    high, low = WanDiT(cfg).eval(), WanDiT(cfg).eval()
    high.load_state_dict(random_weights(cfg, 1))
    low.load_state_dict(random_weights(cfg, 2))
    other = pub.official_shapes(2 * cfg.dim, 2 * cfg.ffn_dim, cfg.num_layers, cfg.in_dim)
    lora = lora_file(tmp_path, "lora_for_a_wider_model", pub.musubi(other))
    steps = []
    text = PromptEmbeds(torch.zeros(1, cfg.text_len, cfg.text_dim), None)
    with pytest.raises(WanFileError) as err:
        sample_video(high, text, t2v_conditioning(64, 64, 1), SamplingOptions(steps=2, cfg=1.0, seed=0),
                     RunOptions(loras_low=((lora, 1.0),)), dit_low=low, callback=lambda *a: steps.append(a))
    assert err.value.path == lora.path and f"dim-{2 * cfg.dim}" in str(err.value)
    assert steps == []
