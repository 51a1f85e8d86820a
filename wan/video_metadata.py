"""Metadata (ComfyUI's prompt and workflow) in the files ``wan.video`` writes, where ComfyUI's own
savers and its frontend look for it (the formats are described in ``wan.video``'s docstring)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Mapping

# Core ComfyUI's EXIF slots for animated webp: prompt in Model, the rest from Make downwards.
_EXIF_PROMPT_TAG = 0x0110
_EXIF_FIRST_EXTRA_TAG = 0x010F


def write_ffmetadata(path: Path, metadata: Mapping[str, Any]) -> None:
    """ffmpeg's FFMETADATA file: on ffmpeg's command line a big graph's workflow exceeds the OS's limit."""
    def escape(text: str) -> str:
        for ch in "\\=;#\n":
            text = text.replace(ch, "\\" + ch)
        return text

    lines = [";FFMETADATA1"] + [f"{escape(str(key))}={escape(_json(value))}" for key, value in metadata.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _json(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def add_gif_comment(path: Path, metadata: Mapping[str, Any]) -> None:
    """Insert a comment extension after the GIF's header and global colour table."""
    data = path.read_bytes()
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise RuntimeError(f"ffmpeg wrote no GIF header to {path.name}")
    flags = data[10]
    at = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    text = json.dumps({key: _loads(value) for key, value in metadata.items()}).encode("utf-8")
    blocks = b"".join(bytes([len(chunk)]) + chunk for chunk in (text[i : i + 255] for i in range(0, len(text), 255)))
    comment = b"\x21\xfe" + blocks + b"\x00"
    # A comment needs GIF89a; ffmpeg writes 89a whenever it loops or animates, but be sure.
    path.write_bytes(b"GIF89a" + data[6:at] + comment + data[at:])


def _loads(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def add_webp_exif(path: Path, metadata: Mapping[str, Any], width: int, height: int) -> None:
    """Append an EXIF chunk (flagged in VP8X) to the RIFF/WEBP file ffmpeg wrote."""
    from PIL import Image

    exif = Image.Exif()
    tag = _EXIF_FIRST_EXTRA_TAG
    for key, value in metadata.items():
        if key == "prompt":
            exif[_EXIF_PROMPT_TAG] = f"prompt:{_json(value)}"
        else:
            exif[tag] = f"{key}:{_json(value)}"
            tag -= 1
    payload = exif.tobytes()
    if payload.startswith(b"Exif\x00\x00"):
        payload = payload[6:]  # the WebP chunk holds the bare TIFF structure, as Pillow writes it
    data = bytearray(path.read_bytes())
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise RuntimeError(f"ffmpeg wrote no RIFF/WEBP header to {path.name}")
    if data[12:16] != b"VP8X":
        # A simple (single-image) WebP: the extended header that announces EXIF must be added.
        vp8x = bytes([0, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        data[12:12] = b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    data[20] |= 0x08  # VP8X flags: EXIF present
    data += b"EXIF" + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))
