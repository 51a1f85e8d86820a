"""Camera poses -> the Plücker embedding the Fun camera models take, in ComfyUI's format.

ComfyUI's WanCameraEmbedding (comfy_extras/nodes_camera_trajectory.py, after VideoX-Fun and
CameraCtrl) turns a motion preset into one [R | t] camera-to-world matrix per pixel frame, makes the
poses relative to the first, casts a ray per pixel and stores (o x d, d) per pixel: 6 channels. The
first frame is counted 4 times and each 4 frames fold into one latent frame: [1, 24, T, H, W].
Poses given as the preset grid are those of ComfyUI's node; any other [N, 3, 4] poses work too.
"""

from __future__ import annotations

import math

import torch

from ..errors import WanInputError
from ..finite import check_tensor

# name -> (rotation about x, y, z in units of BASE_ANGLE; translation in units of BASE_SHIFT)
MOTIONS = {
    "Static": ((0, 0, 0), (0, 0, 0)),
    "Pan Up": ((0, 0, 0), (0, -1, 0)),
    "Pan Down": ((0, 0, 0), (0, 1, 0)),
    "Pan Left": ((0, 0, 0), (-1, 0, 0)),
    "Pan Right": ((0, 0, 0), (1, 0, 0)),
    "Zoom In": ((0, 0, 0), (0, 0, 2)),
    "Zoom Out": ((0, 0, 0), (0, 0, -2)),
    "Anti Clockwise (ACW)": ((0, 0, -1), (0, 0, 0)),
    "ClockWise (CW)": ((0, 0, 1), (0, 0, 0)),
}
BASE_ANGLE = math.pi / 3
BASE_SHIFT = 1.5
# The presets' intrinsics were set on 1280x720 footage; other aspects rescale one focal length.
POSE_ASPECT = 1280 / 720
GROUP = 4  # pixel frames per latent frame


def _rotation(ax: float, ay: float, az: float) -> torch.Tensor:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ (ry @ rx)


def camera_motion(name: str, num_frames: int, speed: float = 1.0) -> torch.Tensor:
    """[num_frames, 3, 4] float64 poses of a preset (``MOTIONS``): frame i moved by i/num_frames of
    the whole motion times ``speed``."""
    if name not in MOTIONS:
        raise WanInputError(f"camera motion {name!r} is not one of {', '.join(MOTIONS)}")
    if not (isinstance(num_frames, int) and num_frames >= 1):
        raise WanInputError(f"camera motion length must be a positive number of frames, got {num_frames!r}")
    if not (math.isfinite(speed) and 0 <= speed <= 10):
        raise WanInputError(f"camera motion speed must be 0..10, got {speed!r}")
    angle, shift = (torch.tensor(v, dtype=torch.float64) for v in MOTIONS[name])
    poses = []
    for i in range(num_frames):
        part = i / num_frames * speed
        r = _rotation(*(part * BASE_ANGLE * angle).tolist())
        t = part * BASE_SHIFT * shift
        poses.append(torch.cat([r, t[:, None]], dim=1))
    return torch.stack(poses)


def camera_embedding(poses: torch.Tensor, width: int, height: int,
                     intrinsics: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.5)) -> torch.Tensor:
    """Poses [N, 3, 4] (camera to world, N = 1 + 4k pixel frames) -> [1, 24, (N - 1) / 4 + 1, height,
    width] float32. ``intrinsics``: fx, fy, cx, cy as fractions of the frame (ComfyUI's node inputs)."""
    poses = torch.as_tensor(poses, dtype=torch.float64)
    if poses.ndim != 3 or poses.shape[1:] != (3, 4) or poses.shape[0] < 1:
        raise WanInputError(f"camera poses must be [frames, 3, 4] matrices, got shape {tuple(poses.shape)}")
    check_tensor("camera poses", poses)
    n = poses.shape[0]
    if (n - 1) % GROUP:
        raise WanInputError(f"{n} camera poses: the Fun camera models take 1 + 4k frames (one pose per frame)")
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    if width / height < POSE_ASPECT:
        fx = height * POSE_ASPECT * fx / width
    else:
        fy = width / POSE_ASPECT * fy / height
    fx, fy, cx, cy = (torch.tensor(v, dtype=torch.float32) for v in (fx * width, fy * height, cx * width, cy * height))

    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, :3] = poses
    rel = torch.linalg.inv(c2w[0]) @ c2w  # relative to the first camera, which becomes the identity
    rel[0] = torch.eye(4, dtype=torch.float64)
    rel = rel.float()

    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                                torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    d = torch.stack([(cols - cx) / fx, (rows - cy) / fy, torch.ones_like(rows)], dim=-1).reshape(-1, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    rays = d[None] @ rel[:, :3, :3].transpose(-1, -2)  # [N, HW, 3]
    origin = rel[:, None, :3, 3].expand_as(rays)
    plucker = torch.cat([torch.linalg.cross(origin, rays, dim=-1), rays], dim=-1)  # [N, HW, 6]
    plucker = plucker.view(n, height, width, 6).permute(3, 0, 1, 2)  # [6, N, H, W]
    frames = torch.cat([plucker[:, :1].expand(-1, GROUP, -1, -1), plucker[:, 1:]], dim=1)
    t = frames.shape[1] // GROUP
    # channel = plücker component * 4 + frame within the latent frame
    return frames.reshape(6, t, GROUP, height, width).permute(0, 2, 1, 3, 4).reshape(1, 6 * GROUP, t, height, width)
