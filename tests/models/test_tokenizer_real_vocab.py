"""Our UMT5 tokenizer on full-size vocabularies, against transformers and ComfyUI built from the same model.

No UMT5 vocabulary ships offline, so three full-size ones stand in, all read from ComfyUI 0.3.75:

- ``t5``: T5's 32000-piece unigram vocabulary with its nmt_nfkc normalizer (UMT5's model type and
  normalizer), rebuilt as a sentencepiece ModelProto from ComfyUI's ``t5_tokenizer/tokenizer.json``;
- ``t5_bytes``: the same plus the 256 byte pieces and byte fallback, as mT5-family vocabularies have;
- ``pile``: ComfyUI's ``t5_pile_tokenizer/tokenizer.model`` as shipped (a 32000-piece BPE with byte
  fallback, identity normalizer, whitespace kept: the only sentencepiece file in 0.3.75 and 0.8.0).

References: the official Wan pipeline (its ``clean='whitespace'`` step, then transformers' tokenizer
with ``padding='max_length', truncation=True, max_length=512``: T5TokenizerFast as AutoTokenizer gives
for google/umt5-xxl, LlamaTokenizer for the BPE file) and ComfyUI's own Wan tokenizer
(``comfy.text_encoders.wan.UMT5XXlTokenizer`` over the ``spiece_model`` bytes, as CLIPTextEncode runs it).

The rules these tests pin, beyond "identical ids and masks":
- transformers' fast T5 tokenizer drops byte fallback: a run of characters outside the vocabulary is one
  ``<unk>`` there and UTF-8 byte pieces in sentencepiece (ours, ComfyUI);
- special-token text typed in a prompt ("</s>") is a special id in transformers, plain text in ours and
  ComfyUI (a ``tokenizer.json`` backend follows transformers: see test_tokenizer_json_*);
- ComfyUI tokenizes the raw prompt: no html unescaping and no whitespace cleaning, so ours(p) equals
  ComfyUI(clean(p)); both are the same where the cleaning changes nothing sentencepiece sees;
- ComfyUI parses its weighting syntax ("(word:1.2)", "\\(", the "\\0\\1"/"\\0\\2" escape placeholders) and
  tokenizes each weighted span on its own; our Wan Text Encode takes the prompt literally;
- ComfyUI does not truncate (its UMT5 max_length is 99999999, min_length 512); ours keeps the first 511
  pieces and EOS, as the official code does.
"""

import base64
import html
import json
import random
import re
import warnings
from pathlib import Path

import pytest
import torch

from wan.models.text.tokenizer import WanTokenizer

from refs import comfy, comfyui_dir

pb = pytest.importorskip("sentencepiece.sentencepiece_model_pb2", reason="building the model needs protobuf")

DATA = Path(__file__).parent / "data" / "tokenizer_prompts.json"
TEXT_ENCODERS = comfyui_dir() / "comfy" / "text_encoders"
T5_JSON = TEXT_ENCODERS / "t5_tokenizer" / "tokenizer.json"
PILE_MODEL = TEXT_ENCODERS / "t5_pile_tokenizer" / "tokenizer.model"
MAX_LEN = 512


def official_clean(text):
    # wan/modules/tokenizers.py, clean='whitespace', without ftfy.fix_text
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def _whitespace_variant(text, rng):
    """The prompt with its spaces replaced by runs of whitespace and with padding at both ends."""
    seps = [" ", "  ", "   ", "\t", "\n", " \n ", "\r\n", "\n\n", "\u3000", "\u00a0", " \t "]
    words = text.split(" ")
    out = words[0]
    for w in words[1:]:
        out += rng.choice(seps) + w
    return rng.choice(["", " ", "  ", "\n", "\t "]) + out + rng.choice(["", " ", "\n", "  \n\n"])


def load_prompts():
    groups = json.loads(DATA.read_text(encoding="utf-8"))["prompts"]
    prompts = [p for group in groups.values() for p in group]
    rng = random.Random(18)
    for name in ("english", "accents", "chinese", "japanese", "korean", "mixed"):
        prompts += [_whitespace_variant(p, rng) for p in groups[name]]
    # Past 512 tokens: every English prompt in one, Wan's Chinese negative prompt repeated, a mix.
    prompts.append(" ".join(groups["english"]))
    prompts.append("，".join([groups["chinese"][0]] * 12))
    prompts.append(" | ".join(groups["mixed"] * 6))
    # Around the cut: one short word repeated to 510, 511 and 512 pieces (+ EOS).
    prompts += [" ".join(["cat"] * n) for n in (510, 511, 512)]
    return groups, prompts


GROUPS, PROMPTS = load_prompts()
SYNTAX = re.compile(r"[()\\\x00]")  # what ComfyUI's prompt parser acts on


# ---------------------------------------------------------------------------------------------
# The three full-size models, each built into ours, transformers' and ComfyUI's tokenizers.

def _t5_pieces(with_bytes):
    spec = json.loads(T5_JSON.read_text(encoding="utf-8"))
    # The first 32000 entries are spiece.model's; the 100 <extra_id_*> after them are transformers'.
    vocab = spec["model"]["vocab"][:32000]
    pieces = [piece for piece, _ in vocab]
    scores = [score for _, score in vocab]
    types = [{"<pad>": 3, "</s>": 3, "<unk>": 2}.get(piece, 1) for piece in pieces]
    if with_bytes:
        pieces += [f"<0x{b:02X}>" for b in range(256)]
        scores += [0.0] * 256
        types += [6] * 256
    charsmap = base64.b64decode(spec["normalizer"]["normalizers"][0]["precompiled_charsmap"])
    return pieces, scores, types, charsmap


def _t5_proto(with_bytes):
    pieces, scores, types, charsmap = _t5_pieces(with_bytes)
    m = pb.ModelProto()
    for piece, score, kind in zip(pieces, scores, types):
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, score, kind
    t = m.trainer_spec
    t.model_type, t.vocab_size, t.byte_fallback = pb.TrainerSpec.UNIGRAM, len(pieces), with_bytes
    t.pad_id, t.eos_id, t.unk_id, t.bos_id = 0, 1, 2, -1
    n = m.normalizer_spec
    n.name, n.precompiled_charsmap = "nmt_nfkc", charsmap
    n.add_dummy_prefix = n.remove_extra_whitespaces = n.escape_whitespaces = True
    return m.SerializeToString()


class Vocab:
    def __init__(self, name, proto, tmp):
        from transformers import LlamaTokenizer, T5TokenizerFast

        self.name, self.proto = name, proto
        self.unigram = name.startswith("t5")
        if self.unigram:
            (tmp / "spiece.model").write_bytes(proto)
            self.hf = T5TokenizerFast.from_pretrained(str(tmp), extra_ids=0)
        else:
            (tmp / "tokenizer.model").write_bytes(proto)
            self.hf = LlamaTokenizer.from_pretrained(str(tmp), add_bos_token=False, add_eos_token=True)
            self.hf.pad_token = "<unk>"  # sentencepiece's pad_id is -1 here: id 0 pads, as ours
            self.hf.padding_side = "right"  # Llama pads on the left by default
        wan = comfy("comfy.text_encoders.wan")
        tensor = torch.frombuffer(bytearray(proto), dtype=torch.uint8)
        self.comfy = wan.UMT5XXlTokenizer(tokenizer_data={"spiece_model": tensor})
        self.ours = WanTokenizer.from_spiece_bytes(proto)
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_proto=proto)

    def ours_batch(self, prompts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the truncation warning; test_tokenizer.py checks it
            return self.ours(prompts, MAX_LEN)

    def hf_batch(self, prompts):
        out = self.hf([official_clean(p) for p in prompts], padding="max_length", truncation=True,
                      max_length=MAX_LEN, add_special_tokens=True, return_tensors="pt")
        return out.input_ids, out.attention_mask

    def comfy_row(self, prompt):
        """(ids, mask, weights) as CLIPTextEncode feeds them to the model: the mask runs through the
        first end token (sd1_clip.SDClipModel.process_tokens), padding reaches min_length 512."""
        (batch,) = self.comfy.tokenize_with_weights(prompt)
        ids = [t for t, _ in batch]
        end = ids.index(self.comfy.end_token)
        mask = [1] * (end + 1) + [0] * (len(ids) - end - 1)
        return ids, mask, [w for _, w in batch]


_BUILT = {}


def _vocab(name, tmp_path_factory):
    if name not in _BUILT:
        proto = PILE_MODEL.read_bytes() if name == "pile" else _t5_proto(name == "t5_bytes")
        _BUILT[name] = Vocab(name, proto, tmp_path_factory.mktemp(name))
    return _BUILT[name]


@pytest.fixture(scope="module", params=["t5", "t5_bytes", "pile"])
def vocab(request, tmp_path_factory):
    return _vocab(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=["t5", "t5_bytes"])
def unigram(request, tmp_path_factory):
    """The models with UMT5's model type and normalizer (unigram, nmt_nfkc, whitespace collapsed). The
    pile BPE keeps whitespace runs, so there ComfyUI's raw prompt and the spaces at the edges of its
    weighted spans reach the ids; the rules that hold for UMT5 are checked on these two."""
    return _vocab(request.param, tmp_path_factory)


def _row(ids, mask, i):
    return ids[i].tolist(), mask[i].tolist()


def _collapse_bytes(ids, sp, unk_id):
    """Each run of byte pieces as one unk: what a tokenizer without byte fallback gives there."""
    out = []
    for i in ids:
        if sp.is_byte(i):
            if not (out and out[-1] is None):
                out.append(None)
        else:
            out.append(i)
    return [unk_id if i is None else i for i in out]


# ---------------------------------------------------------------------------------------------

def test_the_corpus_is_what_the_issue_asks():
    assert len(PROMPTS) >= 300
    assert len([p for p in PROMPTS if len(p) > 1500]) >= 3  # past 512 tokens: see test_ours_matches_comfyui
    for needle in ("", "\t", "\n", "\x00", "\u3000"):
        assert any(needle in p for p in PROMPTS)
    assert GROUPS["chinese"][0].startswith("色调艳丽")  # Wan's default negative prompt


def test_ours_matches_official_transformers(vocab):
    """Ids and masks as the official pipeline makes them, within the documented rules."""
    ids, mask = vocab.ours_batch(PROMPTS)
    ref_ids, ref_mask = vocab.hf_batch(PROMPTS)
    specials = [t for t in vocab.hf.all_special_tokens if t]
    counts = {"compared": 0, "identical": 0, "byte_fallback_rule": 0, "special_text_rule": 0}
    for i, prompt in enumerate(PROMPTS):
        ours, ours_mask = _row(ids, mask, i)
        ref, ref_row_mask = _row(ref_ids, ref_mask, i)
        cleaned = official_clean(prompt)
        if "\u2581" in cleaned:
            # sentencepiece reads a typed U+2581 as its own whitespace mark; HF's Metaspace splits
            # around it differently on the BPE file. ComfyUI's comparison below covers these.
            continue
        counts["compared"] += 1
        n = sum(ours_mask)
        if any(s in cleaned for s in specials):
            # transformers turns the text into the special ids; ours keeps it as text.
            assert any(t in vocab.hf.all_special_ids for t in ref[: sum(ref_row_mask) - 1]), prompt
            assert not any(t in (vocab.ours.eos_id, vocab.ours.pad_id) for t in ours[: n - 1]), prompt
            counts["special_text_rule"] += 1
            continue
        if ours == ref and ours_mask == ref_row_mask:
            counts["identical"] += 1
            continue
        # The only other difference allowed: the fast T5 tokenizer's lost byte fallback.
        assert vocab.name == "t5_bytes", (prompt, ours[:n], ref[: sum(ref_row_mask)])
        # Collapsing can only shorten, so compare the untruncated encodings.
        full = vocab.ours.encode(prompt, max_len=10**6)
        expected = vocab.hf(cleaned, add_special_tokens=True).input_ids
        assert _collapse_bytes(full, vocab.sp, vocab.sp.unk_id()) == expected, prompt
        counts["byte_fallback_rule"] += 1
    print(f"\n{vocab.name} vs transformers: {counts}")
    assert counts["compared"] >= len(PROMPTS) - 2
    if vocab.name != "t5_bytes":
        assert counts["byte_fallback_rule"] == 0
    else:
        assert counts["byte_fallback_rule"] > 50  # emoji, CJK, Greek... are outside T5's vocabulary


def test_ours_matches_comfyui(vocab):
    """Ours on a prompt = ComfyUI on the official cleaning of it, for every prompt without ComfyUI's
    weighting syntax; past 511 pieces, ours is ComfyUI's first 511 and EOS."""
    ids, mask = vocab.ours_batch(PROMPTS)
    counts = {"compared": 0, "identical_raw": 0, "identical_after_clean": 0, "truncated": 0, "syntax": 0}
    for i, prompt in enumerate(PROMPTS):
        ours, ours_mask = _row(ids, mask, i)
        if SYNTAX.search(prompt):
            counts["syntax"] += 1
            continue
        counts["compared"] += 1
        raw, _, _ = vocab.comfy_row(prompt)
        ref, ref_mask, weights = vocab.comfy_row(official_clean(prompt))
        assert set(weights) == {1.0}
        if len(ref) > MAX_LEN:
            # ComfyUI keeps every token (no padding needed); ours cuts as the official code.
            assert all(ref_mask)
            assert ours == ref[: MAX_LEN - 1] + [vocab.ours.eos_id], prompt[:60]
            assert ours_mask == [1] * MAX_LEN
            counts["truncated"] += 1
        else:
            assert len(ref) == MAX_LEN
            assert ours == ref and ours_mask == ref_mask, prompt
            counts["identical_after_clean"] += 1
        counts["identical_raw"] += ours == raw[:MAX_LEN]
    print(f"\n{vocab.name} vs ComfyUI: {counts}")
    assert counts["truncated"] >= 3
    # The cut, at the boundary: 511 pieces + EOS fit, 512 do not (one piece per "cat" here).
    assert [len(vocab.sp.encode(p)) for p in PROMPTS[-3:]] == [510, 511, 512]
    assert [int(mask[i].sum()) for i in (-3, -2, -1)] == [511, 512, 512]


def test_whitespace_cleaning_is_invisible_to_umt5_like_models(unigram):
    """With nmt_nfkc and remove_extra_whitespaces (UMT5's normalizer) ComfyUI's raw prompt and our
    cleaned one give the same ids, except for html entities and the whitespace characters that
    Python's \\s knows but the sentencepiece normalizer deletes instead of turning into a space."""
    ws = [chr(c) for c in range(0x3000 + 1) if re.fullmatch(r"\s", chr(c))]
    deleted = {c for c in ws if unigram.sp.encode(f"a{c}b") != unigram.sp.encode("a b")}
    assert deleted  # \x0b, \x0c and the like: the rule below is not empty
    ids, mask = unigram.ours_batch(PROMPTS)
    differ = identical = 0
    for i, prompt in enumerate(PROMPTS):
        if SYNTAX.search(prompt) or int(mask[i].sum()) == MAX_LEN:
            continue
        raw, _, _ = unigram.comfy_row(prompt)
        if ids[i].tolist() == raw:
            identical += 1
        else:
            differ += 1
            assert html.unescape(prompt) != prompt or set(prompt) & deleted, prompt
    print(f"\n{unigram.name}: ours == ComfyUI on the raw prompt for {identical}, differ for {differ}")


# Hand-derived from ComfyUI's prompt syntax (sd1_clip.token_weights): parentheses weight their
# content (x1.1 per level, or the number after the last ':'), a backslash before a paren makes it
# literal, and the placeholder ComfyUI swaps in for an escaped ")" is NUL + \x01, so typing those
# two characters gives a ")". Each weighted span is tokenized on its own (its own EOS dropped), then
# one EOS ends the prompt.
WEIGHTED = [
    ("a (red:1.2) hat", [("a ", 1.0), ("red", 1.2), (" hat", 1.0)]),
    ("((masterpiece)), (blurry:0.5)", [("masterpiece", 1.21), (", ", 1.0), ("blurry", 0.5)]),
    ("(a cat:1.3) on a mat", [("a cat", 1.3), (" on a mat", 1.0)]),
    ("(nested (inner:1.5) outer:1.1)", [("nested ", 1.1), ("inner", 1.5), (" outer", 1.1)]),
    ("(weight:abc) not a number", [("weight:abc", 1.1), (" not a number", 1.0)]),
    ("a man \\(smiling\\)", [("a man (smiling)", 1.0)]),
    ("\x00\x01 placeholder", [(") placeholder", 1.0)]),
    ("()", []),
]


def test_comfyui_weighting_syntax_rule(unigram):
    """What ComfyUI's CLIPTextEncode tokenizes for prompts with its syntax, span by span. Our Wan
    Text Encode takes such prompts literally (as the official code does)."""
    assert sum(bool(SYNTAX.search(p)) for p in PROMPTS) >= 15  # the corpus has such prompts too
    eos = unigram.ours.eos_id
    for prompt, spans in WEIGHTED:
        ids, _, weights = unigram.comfy_row(prompt)
        n = ids.index(unigram.comfy.end_token) + 1
        want_ids, want_weights = [], []
        for text, weight in spans:
            span_ids = unigram.ours.encode(text)[:-1]
            want_ids += span_ids
            want_weights += [weight] * len(span_ids)
        assert ids[:n] == want_ids + [eos], prompt
        assert weights[:n] == pytest.approx(want_weights + [1.0]), prompt
        assert unigram.ours.encode(prompt) != ids[:n], prompt  # ours reads the syntax as text


def test_from_vocab_on_the_full_vocabulary(unigram):
    """GGUF text encoders rebuild the model from pieces/scores/types/charsmap: same ids at full size."""
    rebuilt = WanTokenizer.from_vocab(*_t5_pieces(unigram.name == "t5_bytes"))
    assert rebuilt.vocab_size == unigram.ours.vocab_size
    prompts = PROMPTS[:-6]  # the long ones only add truncation warnings; the cut is checked above
    a, b = rebuilt(prompts), unigram.ours_batch(prompts)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_tokenizer_json_follows_transformers():
    """ComfyUI's full-size T5 tokenizer.json: ours reads it as transformers does, special-token text
    included; it equals our sentencepiece-backed tokenizer everywhere else."""
    from transformers import T5TokenizerFast

    ours = WanTokenizer.from_file(T5_JSON)
    ref = T5TokenizerFast(tokenizer_file=str(T5_JSON))
    spiece = WanTokenizer.from_spiece_bytes(_t5_proto(False))
    prompts = [p for p in PROMPTS if "\u2581" not in p]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, mask = ours(prompts)
        sp_ids, _ = spiece(prompts)
    expected = ref([official_clean(p) for p in prompts], padding="max_length", truncation=True,
                   max_length=MAX_LEN, return_tensors="pt")
    assert torch.equal(ids, expected.input_ids) and torch.equal(mask, expected.attention_mask)
    special = [i for i, p in enumerate(prompts) if re.search(r"</s>|<pad>|<unk>|<extra_id_\d+>", p)]
    assert len(special) >= 3
    for i in range(len(prompts)):
        assert torch.equal(ids[i], sp_ids[i]) == (i not in special), prompts[i]
