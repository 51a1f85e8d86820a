"""ATI trajectories: tracks as ComfyUI's WanTrackToVideo takes them (a JSON text of points per
frame) -> the motion patch of the start latent (ATI's patch_motion).

A track is a list of {"x": .., "y": ..} pixel positions, one per frame at 24 fps, read as 121
points (ATI's fixed length: shorter tracks padded with invisible points, longer ones cut), then
resampled to the video's frames. Each latent frame after the first takes, at every latent pixel,
the start frame's features under the (at most ``topk``) nearest visible tracks, weighted by
exp(-distance² * temperature), mixed over the start latent; the weights are the mask.

Malformed JSON is refused naming the input: ComfyUI quietly runs plain image-to-video instead,
which hides a typo behind a video that merely ignores the tracks. An empty list ("[]") is plain
image-to-video in both.
"""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

from ..errors import WanInputError

TRACK_POINTS = 121  # ATI's tracks: 121 points at 24 fps
MASK_CHANNELS = 4


def _is_track(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(p, dict) for p in value)


def parse_tracks(text: str, name: str = "tracks") -> list[list[dict]]:
    """The tracks of ``text``: one track (a list of points), a list of tracks, or a list of such
    lists (ComfyUI's batches: the first is used, as ComfyUI does for one video); [] -> no tracks."""
    if not isinstance(text, str):
        raise WanInputError(f"{name} must be JSON text, got {type(text).__name__}")
    try:  # single quotes accepted, as ComfyUI's parser accepts them
        data = json.loads(text.replace("'", '"')) if text.strip() else []
    except json.JSONDecodeError as e:
        raise WanInputError(f"{name} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); expected "
                            '[[{"x": 10, "y": 20}, ...], ...] (one list of points per track)') from None
    if data == []:
        return []
    if _is_track(data):
        data = [data]
    elif isinstance(data, list) and data and isinstance(data[0], list) and data[0] and _is_track(data[0][0]):
        data = data[0]
    if not (isinstance(data, list) and all(_is_track(t) for t in data)):
        raise WanInputError(f'{name}: expected a list of tracks, each a list of {{"x": .., "y": ..}} points')
    for i, track in enumerate(data):
        for j, p in enumerate(track):
            ok = all(isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool)
                     and math.isfinite(p.get(k)) for k in ("x", "y"))
            if not ok:
                raise WanInputError(f"{name}: point {j} of track {i} needs finite numbers x and y, got {p!r}")
    return data


def track_features(tracks: list[list[dict]], width: int, height: int, num_frames: int) -> torch.Tensor:
    """[num_frames, N, 4]: (time, x, y, visible) per frame and track; positions centred and scaled
    by the short edge (-1..1 on it), visibility -1/1, time -1..1 over the 121 points."""
    pts = torch.zeros(len(tracks), TRACK_POINTS, 3)
    for i, track in enumerate(tracks):
        n = min(len(track), TRACK_POINTS)
        pts[i, :n] = torch.tensor([[float(p["x"]), float(p["y"]), 1.0] for p in track[:n]])
    pts = pts.transpose(0, 1)  # [121, N, 3]
    size = torch.tensor([float(width), float(height)])
    xy = (pts[..., :2] - size / 2) / min(width, height) * 2
    vis = pts[..., 2:] * 2 - 1
    time = torch.linspace(-1, 1, TRACK_POINTS).view(-1, 1, 1).expand_as(vis)
    feats = torch.cat([time, xy, vis], dim=-1)
    # 120 steps after the first point resampled to the video's num_frames - 1: each repeated
    # rest/gcd times, then every 120/gcd-th taken, from the second. Where 120 divides num_frames - 1
    # (121, 241 frames) that start leaves one frame short and ComfyUI's patch fails: from the first.
    rest = num_frames - 1
    g = math.gcd(TRACK_POINTS - 1, rest)
    every, repeat = (TRACK_POINTS - 1) // g, rest // g
    later = feats[1:].repeat_interleave(repeat, dim=0)[(1 if every > 1 else 0)::every]
    return torch.cat([feats[:1], later], dim=0)


def patch_motion(tracks: torch.Tensor, latent: torch.Tensor, temperature: float = 220.0,
                 topk: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """tracks [F, N, 4] (``track_features``), latent [C, T, h, w] normalised with F = 4 (T - 1) + 1
    -> (mask [4, T, h, w], patched latent [C, T, h, w])."""
    c, t, h, w = latent.shape
    n = tracks.shape[1]
    xy, vis = tracks[..., 1:3], tracks[..., 3:4].clamp(0, 1)
    aspect = torch.tensor([w / min(h, w), h / min(h, w)])
    xs = torch.linspace(-w / min(h, w), w / min(h, w), w)
    ys = torch.linspace(-h / min(h, w), h / min(h, w), h)
    grid = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)], dim=-1)  # [h, w, (x, y)]

    vis_later = vis[1:].view(t - 1, 4, n, 1)
    seen = vis_later.sum(1)  # [T-1, N, 1]
    centre = (xy[1:].view(t - 1, 4, n, 2) * vis_later).sum(1) / (seen + 1e-5)
    dist = (centre[:, None, None] - grid[None, :, :, None]).pow(2).sum(-1)  # [T-1, h, w, N]
    weight = torch.exp(-dist * temperature) * seen.clamp(0, 1).view(t - 1, 1, 1, n)
    near_w, near_i = torch.topk(weight, k=min(topk, n), dim=-1)

    start = (xy[:1] / aspect).clamp(-1, 1)[None].to(latent.dtype)  # [1, 1, N, 2]: first-frame positions
    points = F.grid_sample(latent[None, :, 0], start, mode="bilinear", padding_mode="zeros",
                           align_corners=False)[0, :, 0].T  # [N, C]
    moved = (points[near_i] * near_w.unsqueeze(-1)).sum(-2).permute(3, 0, 1, 2)  # [C, T-1, h, w]
    cover = near_w.sum(-1)  # [T-1, h, w]
    patched = torch.cat([latent[:, :1], moved + latent[:, 1:] * (1 - cover.clamp(0, 1))], dim=1)
    mask = torch.cat([torch.ones(1, h, w), cover], dim=0)[None].expand(MASK_CHANNELS, -1, -1, -1)
    return mask, patched
