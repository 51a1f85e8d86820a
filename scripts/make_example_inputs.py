"""Draws the example input images the bundled workflows load (``workflows/inputs/``): a bonfire on
a beach at night (832x480), the same beach at dawn, a waving portrait (480x832), and the Animate
workflow's driving pose and face videos (animated PNGs of 24 frames), and a 3 s speech-like clip for
the audio-driven workflows (speech_tone.wav). Deterministic, so re-running it gives the same files; the pack copies them into ComfyUI's input folder where they are missing.

    python3 scripts/make_example_inputs.py
"""

from __future__ import annotations

import math
import random
import struct
import wave
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent.parent / "workflows" / "inputs"


def _vertical_gradient(size, top, bottom) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        f = y / max(h - 1, 1)
        draw.line([(0, y), (w, y)], fill=tuple(round(a + (b - a) * f) for a, b in zip(top, bottom)))
    return img


def bonfire(size=(832, 480), dawn: bool = False) -> Image.Image:
    """The fire at night; ``dawn``: the same beach at daybreak with the fire burnt low (the end frame
    of the first-last-frame workflows)."""
    rng = random.Random(7)
    w, h = size
    img = _vertical_gradient(size, *(((90, 120, 170), (240, 180, 140)) if dawn else ((8, 12, 40), (40, 40, 90))))
    draw = ImageDraw.Draw(img)
    for _ in range(160):  # stars
        x, y, r = rng.randrange(w), rng.randrange(int(h * 0.55)), rng.choice((1, 1, 1, 2))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(235, 235, 255))
    horizon = int(h * 0.62)
    draw.rectangle([0, horizon, w, h], fill=(20, 40, 70))  # sea
    draw.polygon([(0, h), (0, int(h * 0.8)), (w * 0.4, int(h * 0.72)), (w, int(h * 0.78)), (w, h)],
                 fill=(120, 100, 70))  # sand
    cx, base = w // 2, int(h * 0.86)
    glow = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(glow).ellipse([cx - 170, base - 190, cx + 170, base + 60], fill=(150, 70, 10))
    img = Image.blend(img, Image.composite(glow, img, glow.convert("L")), 0.6)
    draw = ImageDraw.Draw(img)
    for dx in (-60, 60):  # logs
        draw.line([(cx - dx, base + 10), (cx + dx // 3, base - 30)], fill=(70, 40, 20), width=14)
    for color, scale in (((230, 80, 20), 1.0), ((250, 160, 30), 0.7), ((255, 230, 120), 0.4)):
        scale *= 0.35 if dawn else 1.0
        pts = [(cx - 55 * scale, base)]
        for i in range(1, 8):
            x = cx - 55 * scale + 110 * scale * i / 8
            pts.append((x, base - (60 + rng.randrange(90)) * scale * (1.4 if i in (3, 4, 5) else 1)))
        pts.append((cx + 55 * scale, base))
        draw.polygon(pts, fill=color)
    for _ in range(40):  # sparks
        x, y = cx + rng.randrange(-80, 80), base - 150 - rng.randrange(200)
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 200, 90))
    return img.filter(ImageFilter.GaussianBlur(0.8))


def portrait(size=(480, 832)) -> Image.Image:
    w, h = size
    img = _vertical_gradient(size, (150, 190, 220), (230, 220, 200))
    draw = ImageDraw.Draw(img)
    cx = w // 2
    draw.rectangle([cx - 150, int(h * 0.62), cx + 150, h], fill=(60, 90, 140))  # shirt
    draw.rectangle([cx - 35, int(h * 0.52), cx + 35, int(h * 0.64)], fill=(225, 180, 150))  # neck
    draw.ellipse([cx - 105, int(h * 0.26), cx + 105, int(h * 0.56)], fill=(230, 190, 160))  # face
    draw.rectangle([cx - 120, int(h * 0.22), cx + 120, int(h * 0.26)], fill=(60, 40, 30))  # hat brim
    draw.rectangle([cx - 80, int(h * 0.13), cx + 80, int(h * 0.23)], fill=(70, 50, 35))  # hat
    for ex in (-40, 40):  # eyes
        draw.ellipse([cx + ex - 12, int(h * 0.36), cx + ex + 12, int(h * 0.38)], fill=(40, 40, 50))
    draw.arc([cx - 45, int(h * 0.42), cx + 45, int(h * 0.5)], 20, 160, fill=(150, 60, 60), width=6)  # smile
    hand = (cx + 170, int(h * 0.45))  # raised hand
    draw.line([(cx + 140, int(h * 0.66)), hand], fill=(60, 90, 140), width=46)
    draw.ellipse([hand[0] - 35, hand[1] - 45, hand[0] + 35, hand[1] + 35], fill=(230, 190, 160))
    return img.filter(ImageFilter.GaussianBlur(0.6))


def _skeleton(draw: ImageDraw.ImageDraw, points: dict, scale: float) -> None:
    # OpenPose-style colours, one per limb, on black: what pose extractors hand Wan Animate
    limbs = [("neck", "head", (255, 0, 85)), ("neck", "hip", (0, 255, 170)), ("neck", "l_hand", (255, 170, 0)),
             ("neck", "r_hand", (170, 255, 0)), ("hip", "l_foot", (0, 170, 255)), ("hip", "r_foot", (85, 0, 255))]
    for a, b, colour in limbs:
        draw.line([points[a], points[b]], fill=colour, width=max(2, round(8 * scale)))
    for x, y in points.values():
        r = max(2, round(6 * scale))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255))


def pose_frames(count=24, size=(240, 416)) -> list[Image.Image]:
    """A waving figure as pose skeletons (the driving pose video of the Animate workflow)."""
    w, h = size
    frames = []
    for i in range(count):
        phase = math.sin(2 * math.pi * i / count)
        cx = w / 2 + 6 * phase
        pts = {"head": (cx, h * 0.16), "neck": (cx, h * 0.27), "hip": (cx, h * 0.55),
               "l_hand": (cx - w * 0.28, h * 0.45), "r_hand": (cx + w * 0.3, h * (0.12 + 0.08 * phase)),
               "l_foot": (cx - w * 0.15, h * 0.9), "r_foot": (cx + w * 0.15, h * 0.9)}
        img = Image.new("RGB", size)
        _skeleton(ImageDraw.Draw(img), pts, w / 480)
        frames.append(img)
    return frames


def face_frames(count=24, size=(128, 128)) -> list[Image.Image]:
    """A face crop talking and blinking (the driving face video of the Animate workflow)."""
    w, h = size
    frames = []
    for i in range(count):
        img = Image.new("RGB", size, (60, 60, 70))
        draw = ImageDraw.Draw(img)
        draw.ellipse([w * 0.15, h * 0.08, w * 0.85, h * 0.95], fill=(230, 190, 160))
        eye = 1 if i % 12 == 6 else 6  # a blink
        for ex in (0.37, 0.63):
            draw.ellipse([w * ex - 7, h * 0.42 - eye, w * ex + 7, h * 0.42 + eye], fill=(40, 40, 50))
        mouth = 3 + 10 * abs(math.sin(math.pi * i / 6))
        draw.ellipse([w * 0.4, h * 0.7 - mouth / 2, w * 0.6, h * 0.7 + mouth / 2], fill=(150, 60, 60))
        frames.append(img)
    return frames


def _animated(frames: list[Image.Image], path: Path) -> None:
    # an animated PNG: ComfyUI's Load Image gives its frames as one IMAGE batch
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=62, loop=0, optimize=True)


def speech_tone(path: Path, seconds: float = 3.0, rate: int = 16000) -> None:
    """A voiced tone gliding around 140 Hz with vowel-like harmonics, gated at a syllable rate of
    4 Hz: what a speech encoder sees as voicing, in a 16-bit mono WAV (~96 KB)."""
    samples = []
    phase = 0.0
    for n in range(int(seconds * rate)):
        t = n / rate
        phase += 2 * math.pi * (140 + 30 * math.sin(2 * math.pi * 0.7 * t)) / rate
        voice = sum(a * math.sin(k * phase) for k, a in ((1, 1.0), (2, 0.5), (3, 0.3), (5, 0.15)))
        gate = max(math.sin(2 * math.pi * 4.0 * t), 0.0) ** 0.5
        samples.append(round(32767 * 0.3 * voice * gate / 1.95))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    bonfire().save(OUT / "bonfire.png", optimize=True)
    bonfire(dawn=True).save(OUT / "bonfire_dawn.png", optimize=True)
    portrait().save(OUT / "portrait.png", optimize=True)
    _animated(pose_frames(), OUT / "animate_pose.png")
    _animated(face_frames(), OUT / "animate_face.png")
    speech_tone(OUT / "speech_tone.wav")
    print(f"wrote bonfire.png, bonfire_dawn.png, portrait.png, animate_pose.png, animate_face.png and speech_tone.wav in {OUT}")


if __name__ == "__main__":
    main()
