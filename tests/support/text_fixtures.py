"""Text-encoder fixtures shared by the tokenizer, UMT5, pipeline and CLI tests: a tiny sentencepiece
model with UMT5's special ids, transformers' tokenizer over it, and a tiny transformers UMT5 encoder."""

import html
import io
import random
import re

import pytest
import torch
from transformers import UMT5Config as HFConfig
from transformers import UMT5EncoderModel


def official_clean(text):
    # wan/modules/tokenizers.py, clean='whitespace', without ftfy.fix_text
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


@pytest.fixture(scope="module")
def spiece_bytes():
    """A 400-piece unigram model with UMT5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece as spm

    rng = random.Random(0)
    syllables = "ka ki ku ke ko sa shi su ta te to na ni ne ma mi mo ra ri ro an en in on th er st ch qu".split()
    extra = list("äöüéèçñßøå猫犬日本語中文字한국어абвгдежзийкл🎉🚀")

    def word():
        w = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.2:
            w += rng.choice(extra)
        if rng.random() < 0.1:
            w = w.capitalize() + rng.choice(",.!?;:")
        return w

    sentences = [" ".join(word() for _ in range(rng.randint(3, 15))) for _ in range(2000)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, vocab_size=400, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=0.995, minloglevel=2,
    )
    return buf.getvalue()


@pytest.fixture(scope="module")
def model_dir(spiece_bytes, tmp_path_factory):
    d = tmp_path_factory.mktemp("umt5_tok")
    (d / "spiece.model").write_bytes(spiece_bytes)
    return d


@pytest.fixture(scope="module")
def reference(model_dir):
    # transformers converts spiece.model to its fast tokenizer through protobuf.
    pytest.importorskip("google.protobuf", reason="transformers needs protobuf to read spiece.model")
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(model_dir), extra_ids=0)


LONG = " ".join(["kakite sushi 猫 rominen🎉"] * 200)
PROMPTS = [
    "A cat walks over the hill, cinematic slow motion.",
    "",
    "   ",
    "  extra   whitespace\t\tand\nnew\r\nlines  ",
    "über naïve café, Straße; ñandú — 日本語の文 中文字 한국어 абвгд",
    "emoji 🎉🚀❤️👩‍👩‍👧 and flags 🇯🇵",
    "ｆｕｌｌ ｗｉｄｔｈ ①②③ ﬁ ligature Ⅸ",
    "html &amp;lt;b&amp;gt; &quot;quoted&quot; &#39;x&#39;",
    "ZZZZZZZZZZ qqq unknown-letters ÞÐ",
    LONG,
]

# max|ours - ref| <= RTOL * max|ref| + ATOL, fp32 on CPU.
RTOL, ATOL = 1e-5, 1e-6

# Official Wan names (wan/modules/t5.py, T5Encoder with shared_pos=False) for the HF names, written
# here independently of the loader's own table.
WAN_NAMES = [
    (r"^shared\.weight$", "token_embedding.weight"),
    (r"^encoder\.final_layer_norm\.weight$", "norm.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight$", r"blocks.\1.attn.\2.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.weight$",
     r"blocks.\1.pos_embedding.embedding.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.weight$", r"blocks.\1.norm1.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight$", r"blocks.\1.norm2.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.weight$", r"blocks.\1.ffn.gate.0.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.weight$", r"blocks.\1.ffn.fc1.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.weight$", r"blocks.\1.ffn.fc2.weight"),
]


def to_wan_names(hf_sd):
    out = {}
    for k, v in hf_sd.items():
        if k == "encoder.embed_tokens.weight":  # tied copy of shared.weight
            continue
        for pat, rep in WAN_NAMES:
            if re.match(pat, k):
                out[re.sub(pat, rep, k)] = v
                break
        else:
            raise AssertionError(f"unmapped HF key {k}")
    return out


def tiny_hf(**kw):
    cfg = dict(vocab_size=320, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=2,
               relative_attention_num_buckets=32, relative_attention_max_distance=128,
               feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6)
    cfg.update(kw)
    model = UMT5EncoderModel(HFConfig(**cfg, attn_implementation="eager")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Norm weights away from 1 and larger bias tables so every tensor shapes the output.
            p.copy_(torch.randn_like(p) * (0.5 if "weight" in name else 1.0) + ("layer_norm" in name))
    return model


def check(ours, ref):
    err = (ours - ref).abs().max().item()
    tol = RTOL * ref.abs().max().item() + ATOL
    assert err <= tol, f"max|diff| {err:.3g} > {tol:.3g}"
    return err
