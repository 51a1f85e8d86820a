"""UMT5 tokenization against transformers' T5 tokenizer built from the same sentencepiece model."""

import html
import io
import random
import re
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from wan.errors import WanFileError
from wan.models.tokenizer import WanTokenizer, find_tokenizer


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


def test_matches_transformers(spiece_bytes, reference):
    ours = WanTokenizer.from_spiece_bytes(spiece_bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, mask = ours(PROMPTS)
    ref = reference([official_clean(p) for p in PROMPTS], padding="max_length", truncation=True,
                    max_length=512, add_special_tokens=True, return_tensors="pt")
    assert ids.shape == mask.shape == (len(PROMPTS), 512)
    assert torch.equal(ids, ref.input_ids)
    assert torch.equal(mask, ref.attention_mask)
    # The long prompt is cut to 511 pieces + EOS, and said so once.
    assert int(mask[-1].sum()) == 512 and int(ids[-1, -1]) == 1
    assert len([w for w in caught if "tokens long" in str(w.message)]) == 1
    assert int(mask[1].sum()) == 1 and int(ids[1, 0]) == 1  # empty prompt: EOS only


def test_tokenizer_json_matches(reference, model_dir, spiece_bytes, tmp_path):
    reference.save_pretrained(str(tmp_path))
    from_json = WanTokenizer.from_file(tmp_path / "tokenizer.json")
    from_model = WanTokenizer.from_file(model_dir / "spiece.model")
    prompts = PROMPTS[:-1]
    for a, b in zip(from_json(prompts), from_model(prompts)):
        assert torch.equal(a, b)


def test_embedded_tensor_in_safetensors(spiece_bytes, model_dir, tmp_path):
    """ComfyUI stores the model as a uint8 tensor named spiece_model beside the weights."""
    f = tmp_path / "umt5_tiny.safetensors"
    save_file({"spiece_model": torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8),
               "shared.weight": torch.zeros(4, 2)}, str(f))
    sd = load_file(str(f))
    tok = find_tokenizer(sd, path=f)
    assert tok.source == "spiece_model tensor"
    ref = WanTokenizer.from_file(model_dir / "spiece.model")
    for a, b in zip(tok(PROMPTS[:-1]), ref(PROMPTS[:-1])):
        assert torch.equal(a, b)


def test_side_file_and_clear_error(model_dir, tmp_path):
    tok = find_tokenizer({}, path=model_dir / "umt5-xxl-enc-bf16.safetensors")
    assert tok.source.endswith("spiece.model")
    with pytest.raises(WanFileError) as err:
        find_tokenizer({}, path=tmp_path / "umt5.safetensors", allow_download=False)
    msg = str(err.value)
    assert "spiece_model" in msg and "spiece.model" in msg and "tokenizer.json" in msg and "not allowed" in msg
    bad = tmp_path / "spiece.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(WanFileError, match="sentencepiece"):
        WanTokenizer.from_file(bad)


def test_from_vocab_rebuilds_the_model(spiece_bytes):
    """GGUF text encoders store pieces/scores/types/charsmap; rebuilt, they tokenize as the original."""
    pytest.importorskip("google.protobuf", reason="reading the reference ModelProto needs protobuf")
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(spiece_bytes)
    pieces = [p.piece for p in proto.pieces]
    scores = [p.score for p in proto.pieces]
    types = [p.type for p in proto.pieces]
    ours = WanTokenizer.from_vocab(pieces, scores, types, proto.normalizer_spec.precompiled_charsmap)
    assert (ours.eos_id, ours.pad_id, ours.vocab_size) == (1, 0, 400)
    ref = spm.SentencePieceProcessor(model_proto=spiece_bytes)
    for prompt in PROMPTS:
        text = official_clean(prompt)
        assert ours.encode(prompt, max_len=10**6) == ref.encode(text) + [1], prompt
