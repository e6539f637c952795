"""Animatic: a keyframe turned into a clip with a camera move, to preview a story's timing without a GPU.

The camera is a viewport over the keyframe. Each frame's viewport (zoom and centre) follows an
eased path, and the frame is resampled from the keyframe with an affine ``grid_sample`` -- real
sub-pixel motion, never a repeated or integer-shifted frame. Against shimmer:

1. the keyframe is prefiltered once (antialiased downscale) to the resolution at which the widest
   viewport of the move covers the output 1:1, so detail finer than the output can show is removed
   instead of aliasing into crawling moire;
2. every frame is sampled bicubic at ``SUPERSAMPLE`` times the output size and brought down with an
   antialiased downscale, which evens out the blur interpolation adds at fractional offsets.

Moves (``amount`` is a fraction, e.g. 0.15):
- ``push in`` / ``pull out``: zoom from 1 to 1 + amount (or back);
- ``pan left`` / ``pan right`` / ``tilt up`` / ``tilt down``: the view, zoomed 1 + amount so it
  stays inside the picture, travels amount x the frame's width (height);
- ``still``: the keyframe held (every frame the same, by definition).

Coordinates: normalised like ``grid_sample`` with ``align_corners=False`` ([-1, 1] from edge to edge),
so the path is independent of the resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MOVES = ("push in", "pull out", "pan left", "pan right", "tilt up", "tilt down", "still")
EASINGS = ("linear", "ease-in", "ease-out", "ease-in-out")
SUPERSAMPLE = 2
CHUNK_FRAMES = 8  # frames rendered at once: bounds the sampling grid's memory on long clips
MAX_AMOUNT = 1.0

_EASE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda p: p,
    "ease-in": lambda p: p * p,
    "ease-out": lambda p: 1 - (1 - p) * (1 - p),
    "ease-in-out": lambda p: p * p * (3 - 2 * p),  # smoothstep: zero speed at both ends
}


@dataclass(frozen=True)
class CameraPath:
    """Per-frame viewport: ``zoom`` [T] (1 = the whole fitted keyframe), centre ``x``/``y`` [T] in [-1, 1]."""

    zoom: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.zoom.shape[0])


def eased_progress(length: int, easing: str) -> torch.Tensor:
    """Progress of the move at each of ``length`` frames, [length] float64 from 0 to 1 (0 for one frame)."""
    if easing not in _EASE:
        raise ValueError(f"easing {easing!r} is unknown; use one of {', '.join(EASINGS)}")
    if length < 1:
        raise ValueError(f"length {length} must be at least 1 frame")
    if length == 1:
        return torch.zeros(1, dtype=torch.float64)
    return _EASE[easing](torch.linspace(0, 1, length, dtype=torch.float64))


def camera_path(length: int, move: str, easing: str = "ease-in-out", amount: float = 0.15) -> CameraPath:
    """The viewport of every frame for ``move`` (see the module docstring); ``amount`` 0..1."""
    if move not in MOVES:
        raise ValueError(f"camera move {move!r} is unknown; use one of {', '.join(MOVES)}")
    if not 0.0 <= float(amount) <= MAX_AMOUNT:
        raise ValueError(f"amount {amount} is outside 0..{MAX_AMOUNT} (0.15 = a 15% zoom or pan)")
    progress = eased_progress(length, easing)
    zero = torch.zeros_like(progress)
    if move == "still":
        return CameraPath(zero + 1, zero, zero.clone())
    if move in ("push in", "pull out"):
        rise = progress if move == "push in" else 1 - progress
        return CameraPath(1 + amount * rise, zero, zero.clone())
    zoom = 1 + float(amount)
    margin = 1 - 1 / zoom  # how far the centre may move before the view leaves the picture
    # "pan right" turns the camera right: the view moves towards +x; "tilt up" towards -y (image rows go down)
    sweep = margin * (2 * progress - 1)
    if move in ("pan left", "tilt up"):
        sweep = -sweep
    if move.startswith("pan"):
        return CameraPath(zero + zoom, sweep, zero)
    return CameraPath(zero + zoom, zero, sweep)


def _as_source(keyframe: torch.Tensor) -> torch.Tensor:
    """``keyframe`` [H,W,3] or [1,H,W,3] float 0..1 -> [1,3,H,W] float32."""
    image = keyframe if isinstance(keyframe, torch.Tensor) else torch.as_tensor(keyframe)
    if image.ndim == 4 and image.shape[0] >= 1:
        image = image[0]
    if image.ndim != 3 or image.shape[-1] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"keyframe must be one RGB image [H,W,3] or [1,H,W,3], got shape {tuple(keyframe.shape)}")
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    return image.float().permute(2, 0, 1).unsqueeze(0)


def _cover_fraction(source_w: int, source_h: int, width: int, height: int) -> tuple[float, float]:
    """Fraction of the source's width and height that the output's aspect covers (centre crop, never stretch)."""
    source_aspect, out_aspect = source_w / source_h, width / height
    if out_aspect >= source_aspect:
        return 1.0, source_aspect / out_aspect
    return out_aspect / source_aspect, 1.0


def _prefiltered(source: torch.Tensor, width: int, cover: tuple[float, float], widest_zoom: float) -> torch.Tensor:
    """The source downscaled (antialiased) so the widest view maps 1:1 onto the output; unchanged if smaller."""
    _, _, source_h, source_w = source.shape
    view_w = cover[0] * source_w / widest_zoom  # source pixels across the widest viewport
    ratio = width / view_w
    if ratio >= 1.0:
        return source  # magnifying everywhere: bicubic sampling of the original is already smooth
    size = (max(2, round(source_h * ratio)), max(2, round(source_w * ratio)))
    return F.interpolate(source, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def render_frames(source: torch.Tensor, path: CameraPath, width: int, height: int,
                  cover: tuple[float, float] = (1.0, 1.0), supersample: int = SUPERSAMPLE) -> torch.Tensor:
    """Frames of ``path`` sampled from ``source`` [1,3,H,W]: [T,height,width,3] float32 0..1.

    ``cover`` is the fraction of the source's width/height the unzoomed view spans (see _cover_fraction).
    """
    count = len(path)
    theta = torch.zeros(count, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cover[0] / path.zoom
    theta[:, 1, 1] = cover[1] / path.zoom
    theta[:, 0, 2] = path.x * cover[0]
    theta[:, 1, 2] = path.y * cover[1]
    size = (count, 3, height * supersample, width * supersample)
    grid = F.affine_grid(theta.to(torch.float32), list(size), align_corners=False).to(source.device)
    frames = F.grid_sample(source.expand(count, -1, -1, -1), grid, mode="bicubic", padding_mode="border",
                           align_corners=False)
    if supersample > 1:
        frames = F.interpolate(frames, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return frames.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def _prepared(image: torch.Tensor, width: int | None, height: int | None,
              path: CameraPath) -> tuple[torch.Tensor, tuple[float, float], int, int]:
    """A keyframe ready for sampling along ``path``: prefiltered source, cover fractions, output size."""
    source = _as_source(image)
    width = int(width or source.shape[3])
    height = int(height or source.shape[2])
    if width < 1 or height < 1:
        raise ValueError(f"output size {width}x{height} must be at least 1x1 pixels")
    cover = _cover_fraction(source.shape[3], source.shape[2], width, height)
    return _prefiltered(source, width, cover, float(path.zoom.min())), cover, width, height


def iter_animatic(keyframe: torch.Tensor, length: int, move: str = "push in", easing: str = "ease-in-out",
                  amount: float = 0.15, width: int | None = None, height: int | None = None,
                  chunk_frames: int = CHUNK_FRAMES, end_image: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Yield the animatic of ``keyframe`` in chunks of up to ``chunk_frames`` frames [n,height,width,3].

    keyframe: [H,W,3] or [1,H,W,3] float 0..1 (uint8 accepted). length: frames in all. width/height:
    output size in pixels (default: the keyframe's); another aspect is centre-cropped, never stretched.
    end_image: optional, same forms: the clip dissolves from ``keyframe`` into it along the easing
    (first frame: the keyframe alone; last frame: the end image alone), both under the same camera.
    That is an animatic of a first/last-frame (FLF2V) scene. Memory per chunk is bounded.
    """
    path = camera_path(length, move, easing, amount)
    source, cover, width, height = _prepared(keyframe, width, height, path)
    end = _prepared(end_image, width, height, path) if end_image is not None else None
    blend = eased_progress(length, easing).to(torch.float32)
    step = max(1, int(chunk_frames))
    for start in range(0, len(path), step):
        stop = min(start + step, len(path))
        part = CameraPath(path.zoom[start:stop], path.x[start:stop], path.y[start:stop])
        frames = render_frames(source, part, width, height, cover)
        if end is not None:
            weight = blend[start:stop].view(-1, 1, 1, 1)
            frames = frames * (1 - weight) + render_frames(end[0], part, width, height, end[1]) * weight
        yield frames


def animatic(keyframe: torch.Tensor, length: int, move: str = "push in", easing: str = "ease-in-out",
             amount: float = 0.15, width: int | None = None, height: int | None = None,
             on_chunk: Callable[[int, int], None] | None = None, end_image: torch.Tensor | None = None) -> torch.Tensor:
    """All frames of the animatic at once: [length,height,width,3] float32 0..1 (see iter_animatic)."""
    chunks = []
    done = 0
    for chunk in iter_animatic(keyframe, length, move, easing, amount, width, height, end_image=end_image):
        chunks.append(chunk)
        done += chunk.shape[0]
        if on_chunk is not None:
            on_chunk(done, length)
    return torch.cat(chunks)
