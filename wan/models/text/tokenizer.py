"""UMT5 tokenizer: prompt cleaning as the official Wan code, sentencepiece ids, EOS, padding to 512.

The official code runs HF's AutoTokenizer on ``google/umt5-xxl`` after ``clean='whitespace'``
(ftfy.fix_text, html unescape twice, whitespace collapsed). We keep the same steps minus ftfy, so
no extra dependency decides the ids: ftfy only matters for mojibake, curly quotes and the like.
Special-token strings typed in a prompt (``</s>``) stay plain text with a sentencepiece model (the
embedded tensor, a ``spiece.model``), as in ComfyUI; from a ``tokenizer.json`` they become the special
ids, as in the official code's AutoTokenizer over that file.

Where the tokenizer comes from, in order (see :func:`find_tokenizer`): the ``spiece_model`` uint8
tensor that ComfyUI's repackaged text-encoder files embed, a ``spiece.model`` or ``tokenizer.json``
beside the weights, or a download of ``google/umt5-xxl`` when the caller allows it.
"""

from __future__ import annotations

import html
import logging
import os
import re
import struct
from pathlib import Path

import torch

from ...errors import WanFileError, WanInputError
from ...notices import notify

log = logging.getLogger(__name__)

MAX_LEN = 512
HUB_REPO = "google/umt5-xxl"
# Names a tokenizer has beside a text-encoder file, in the order tried; the Wan release keeps its
# copy in a google/umt5-xxl folder next to the weights.
SIDE_FILES = ("spiece.model", "tokenizer.json", "google/umt5-xxl/spiece.model", "google/umt5-xxl/tokenizer.json")


def clean(text: str) -> str:
    """Official Wan 'whitespace' cleaning without ftfy: html unescape twice, collapse whitespace."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def _without_lone_surrogates(text: str) -> str:
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class _SentencePiece:
    def __init__(self, proto: bytes):
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
        self.eos_id = self.sp.eos_id()
        self.pad_id = max(self.sp.pad_id(), 0)
        self.vocab_size = self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))


class _HFTokenizerJson:
    """A ``tokenizer.json`` (HF tokenizers' serialisation), as shipped in the Wan release folder."""

    def __init__(self, path: str):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(path)
        # A saved tokenizer.json may carry its own padding/truncation; ours is applied afterwards.
        self.tok.no_padding()
        self.tok.no_truncation()
        self.eos_id = self.tok.token_to_id("</s>")
        self.pad_id = self.tok.token_to_id("<pad>") or 0
        self.vocab_size = self.tok.get_vocab_size()
        if self.eos_id is None:
            raise WanFileError(path, "tokenizer.json has no '</s>' token: not a T5/UMT5 tokenizer")

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids


class WanTokenizer:
    """Prompts -> padded UMT5 token ids and attention mask."""

    def __init__(self, backend, source: str = ""):
        self._backend = backend
        self.source = source
        self.eos_id: int = backend.eos_id
        self.pad_id: int = backend.pad_id
        self.vocab_size: int = backend.vocab_size
        if self.eos_id is None or self.eos_id < 0:
            raise WanFileError(source or None, "the sentencepiece model defines no EOS token")

    @classmethod
    def from_spiece_bytes(cls, proto, source: str = "spiece_model tensor") -> "WanTokenizer":
        """From serialized sentencepiece ModelProto bytes (or the uint8 tensor ComfyUI stores)."""
        if isinstance(proto, torch.Tensor):
            proto = proto.detach().cpu().to(torch.uint8).numpy().tobytes()
        try:
            backend = _SentencePiece(bytes(proto))
        except (RuntimeError, OSError, TypeError) as e:
            raise WanFileError(None, f"{source} is not a valid sentencepiece model ({e})") from e
        return cls(backend, source)

    @classmethod
    def from_vocab(cls, pieces, scores, types, precompiled_charsmap: bytes = b"", **normalizer) -> "WanTokenizer":
        """From a bare unigram vocabulary, e.g. a GGUF file's tokenizer metadata (see :func:`spiece_proto`)."""
        return cls.from_spiece_bytes(
            spiece_proto(pieces, scores, types, precompiled_charsmap, **normalizer), source="vocabulary"
        )

    @classmethod
    def from_file(cls, path) -> "WanTokenizer":
        """From a ``spiece.model`` (sentencepiece) or ``tokenizer.json`` (HF tokenizers) file."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise WanFileError(path, "tokenizer file not found")
        if path.endswith(".json"):
            try:
                return cls(_HFTokenizerJson(path), path)
            except WanFileError:
                raise
            except Exception as e:  # tokenizers raises its own Exception subclass on bad json
                raise WanFileError(path, f"not a readable tokenizer.json ({e})") from e
        try:
            return cls(_SentencePiece(Path(path).read_bytes()), path)
        except (RuntimeError, OSError) as e:
            raise WanFileError(path, f"not a valid sentencepiece model ({e})") from e

    clean = staticmethod(clean)

    def encode(self, text: str, max_len: int = MAX_LEN) -> list[int]:
        """Token ids of one prompt: cleaned, EOS appended, at most ``max_len`` long (EOS kept).

        A lone surrogate (JSON allows "\\ud800"; no UTF-8 text holds one) becomes U+FFFD, the
        replacement character, as any UTF-8 decoder would make it; a split pair is joined first."""
        if not isinstance(text, str):
            raise WanInputError(f"prompt must be text, got {type(text).__name__}")
        ids = self._backend.encode(clean(_without_lone_surrogates(text)))
        if len(ids) + 1 > max_len:
            notify(f"prompt is {len(ids) + 1} tokens long; only the first {max_len} are used "
                   f"(it starts {text[:40]!r})", stacklevel=3)
            ids = ids[: max_len - 1]
        return ids + [self.eos_id]

    def __call__(self, prompts, max_len: int = MAX_LEN) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts: str or list of str -> (ids [B, max_len] int64, mask [B, max_len] int64)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = torch.full((len(prompts), max_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), max_len), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            row = self.encode(prompt, max_len)
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids, mask


# ---------------------------------------------------------------------------------------------
# A sentencepiece model from a bare vocabulary (GGUF text encoders carry pieces, scores, types and
# the normalizer's charsmap as metadata, not the ModelProto). The proto is written by hand in the
# protobuf wire format so no protobuf package is needed; field numbers from sentencepiece_model.proto.

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32 fields are sign-extended to 10 bytes
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value) -> bytes:
    if isinstance(value, (bytes, str)):
        data = value.encode("utf-8") if isinstance(value, str) else value
        return _varint(number << 3 | 2) + _varint(len(data)) + data
    if isinstance(value, float):
        return _varint(number << 3 | 5) + struct.pack("<f", value)
    return _varint(number << 3) + _varint(int(value))


def spiece_proto(
    pieces, scores, types, precompiled_charsmap: bytes = b"", add_dummy_prefix: bool = True,
    remove_extra_whitespaces: bool = True,
) -> bytes:
    """Serialized unigram ModelProto. types: sentencepiece piece types (1 normal, 2 unknown,
    3 control, 4 user-defined, 5 unused, 6 byte), as GGUF's ``tokenizer.ggml.token_type`` stores them."""
    if not (len(pieces) == len(scores) == len(types)):
        raise ValueError(f"pieces/scores/types lengths differ: {len(pieces)}, {len(scores)}, {len(types)}")
    body = bytearray()
    for piece, score, kind in zip(pieces, scores, types):
        entry = _field(1, piece) + _field(2, float(score)) + _field(3, int(kind))
        body += _field(1, entry)
    byte_fallback = any(int(t) == 6 for t in types)
    body += _field(2, _field(3, 1) + _field(35, int(byte_fallback)))  # trainer_spec: UNIGRAM
    normalizer = _field(1, "nmt_nfkc" if precompiled_charsmap else "identity")
    if precompiled_charsmap:
        normalizer += _field(2, bytes(precompiled_charsmap))
    normalizer += _field(3, int(add_dummy_prefix)) + _field(4, int(remove_extra_whitespaces)) + _field(5, 1)
    body += _field(3, normalizer)
    return bytes(body)


def find_spiece_model(state_dict, path) -> bytes:
    """The serialized sentencepiece model of a text-encoder file, for a stack that takes only that
    (ComfyUI's SPieceTokenizer): the embedded ``spiece_model`` tensor or a ``spiece.model`` beside
    the file, checked to load. A ``tokenizer.json`` cannot serve: it is not a sentencepiece model."""
    embedded = state_dict.get("spiece_model")
    if embedded is not None:
        proto, source = embedded.detach().cpu().to(torch.uint8).numpy().tobytes(), "its 'spiece_model' tensor"
    else:
        folder = Path(os.fspath(path)).parent
        side = [folder / n for n in SIDE_FILES if n.endswith(".model")]
        found = next((c for c in side if c.is_file()), None)
        if found is None:
            raise WanFileError(path, "no UMT5 tokenizer: the file embeds no 'spiece_model' and there is no "
                               f"{' or '.join(str(c) for c in side)}; use a ComfyUI text-encoder file or a GGUF "
                               "converted with its tokenizer")
        proto, source = found.read_bytes(), str(found)
    try:
        _SentencePiece(proto)
    except (RuntimeError, OSError, TypeError) as e:
        raise WanFileError(path, f"{source} is not a valid sentencepiece model ({e})") from e
    return proto


def find_tokenizer(state_dict=None, path=None, allow_download: bool = False) -> WanTokenizer:
    """The UMT5 tokenizer for a text-encoder file: embedded tensor, side file, then (if allowed) hub."""
    looked = []
    embedded = None if state_dict is None else state_dict.get("spiece_model")
    if embedded is not None:
        return WanTokenizer.from_spiece_bytes(embedded)
    looked.append("a 'spiece_model' tensor in the weights")
    if path is not None:
        folder = Path(os.fspath(path)).parent
        for name in SIDE_FILES:
            candidate = folder / name
            if candidate.is_file():
                return WanTokenizer.from_file(candidate)
            looked.append(str(candidate))
    if allow_download:
        try:
            from huggingface_hub import hf_hub_download

            local = hf_hub_download(HUB_REPO, "spiece.model")
        except Exception as e:  # offline, no network, hub errors: all end the same way
            raise WanFileError(path, f"no UMT5 tokenizer found and downloading {HUB_REPO} failed ({e})") from e
        log.info("UMT5 tokenizer downloaded from %s", HUB_REPO)
        return WanTokenizer.from_file(local)
    looked.append(f"download of {HUB_REPO} (not allowed)")
    raise WanFileError(
        path,
        "no UMT5 tokenizer found; looked for: " + "; ".join(looked)
        + ". Use a ComfyUI text-encoder file (it embeds one), put spiece.model beside the weights, "
        "or allow the download.",
    )
