"""Colour engine: sRGB <-> CIE Lab, Lab statistics, and colour matching of a clip to a reference.

All functions are torch, batched over frames, and import nothing from ComfyUI. Images are float32
sRGB in 0..1 with the channel last (``[...,3]``); Lab is CIE L*a*b* under D65 (L 0..100, a/b roughly
-128..127).

Matching methods (each computes ONE transform from the statistics of the whole clip and applies it to
every frame, so a clip's own changes of light over time are kept and nothing flickers):

- ``reinhard``: Reinhard et al. 2001 in Lab: per channel, (x - mean_clip) / std_clip * std_ref + mean_ref.
- ``histogram``: per-channel histogram matching in Lab (the clip's CDF mapped onto the reference's).
- ``mkl``: Pitié & Kokaram 2007, the Monge-Kantorovich linear map between the colour covariances, in
  linear RGB: T = S^-1/2 (S^1/2 R S^1/2)^1/2 S^-1/2 with S, R the clip/reference covariances. Linear RGB
  because a drift of gain and offset (even mixing channels) is affine there, so MKL undoes it exactly.

``strength`` blends the matched frames with the input in sRGB: 0 returns the input unchanged, 1 the
full match.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

METHODS = ("reinhard", "histogram", "mkl")
CHUNK_FRAMES = 16  # frames converted at once: bounds the float64/Lab temporaries on long clips
HISTOGRAM_BINS = 512
_EPS = 1e-6

# sRGB (linear, D65) -> CIE XYZ, IEC 61966-2-1
_RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
_XYZ_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_DELTA = 6.0 / 29.0

ProgressCallback = Callable[[int, int], None]  # (frames done, frames total)


def _as_images(images: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """``images`` as a float tensor [...,3] (uint8 scaled to 0..1); a clear error for anything else."""
    tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if tensor.ndim < 1 or tensor.shape[-1] != 3:
        raise ValueError(f"{name} must have 3 colour channels last ([...,3] RGB), got shape {tuple(tensor.shape)}")
    return tensor


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values 0..1 -> linear light (same shape)."""
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light -> sRGB-encoded values (same shape, not clamped)."""
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp(min=0) ** (1 / 2.4) - 0.055)


def rgb_to_lab(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """sRGB ``images`` [...,3] float 0..1 (D65) -> CIE Lab [...,3] float32 (L 0..100, a/b about +-128)."""
    rgb = _as_images(images, "images").to(torch.float64)
    xyz = srgb_to_linear(rgb) @ _RGB_TO_XYZ.to(rgb.device).T / _WHITE_D65.to(rgb.device)
    f = torch.where(xyz > _DELTA**3, xyz.clamp(min=0) ** (1 / 3), xyz / (3 * _DELTA**2) + 4 / 29)
    fx, fy, fz = f.unbind(-1)
    lab = torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -1)
    return lab.to(torch.float32)


def lab_to_rgb(lab: torch.Tensor | np.ndarray) -> torch.Tensor:
    """CIE Lab [...,3] (D65) -> sRGB [...,3] float32, NOT clamped (out-of-gamut colours leave 0..1)."""
    values = _as_images(lab, "lab").to(torch.float64)
    fy = (values[..., 0] + 16) / 116
    f = torch.stack([fy + values[..., 1] / 500, fy, fy - values[..., 2] / 200], -1)
    xyz = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29)) * _WHITE_D65.to(values.device)
    return linear_to_srgb(xyz @ _XYZ_TO_RGB.to(values.device).T).to(torch.float32)


def _chunks(frames: torch.Tensor):
    """``frames`` [T,...] in slices of CHUNK_FRAMES along T."""
    for start in range(0, frames.shape[0], CHUNK_FRAMES):
        yield start, frames[start:start + CHUNK_FRAMES]


def _as_frames(images: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """``images`` as [N,H,W,3] ([H,W,3] gets a batch axis)."""
    tensor = _as_images(images, name)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[0] == 0 or tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f"{name} must be an image [H,W,3] or frames [N,H,W,3], got shape {tuple(tensor.shape)}")
    return tensor


def _moments(frames: torch.Tensor, space: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sum [3] and sum of outer products [3,3] (float64) of every pixel in ``space`` (lab|linear), and the count."""
    total = torch.zeros(3, dtype=torch.float64, device=frames.device)
    outer = torch.zeros(3, 3, dtype=torch.float64, device=frames.device)
    count = 0
    for _, chunk in _chunks(frames):
        pixels = _to_space(chunk, space).reshape(-1, 3).to(torch.float64)
        total += pixels.sum(0)
        outer += pixels.T @ pixels
        count += pixels.shape[0]
    return total, outer, count


def _mean_cov(frames: torch.Tensor, space: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [3] and covariance [3,3] (float64, population) of all pixels of ``frames`` in ``space``."""
    total, outer, count = _moments(frames, space)
    mean = total / count
    return mean, outer / count - torch.outer(mean, mean)


def _to_space(rgb: torch.Tensor, space: str) -> torch.Tensor:
    return rgb_to_lab(rgb) if space == "lab" else srgb_to_linear(rgb.to(torch.float32))


def lab_stats(frames: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of L, a, b over every pixel of ``frames``.

    frames: [T,H,W,3] or [H,W,3] float 0..1 sRGB (uint8 accepted). Returns (mean [3], std [3]) float32
    torch tensors in Lab units (population std). Long clips are converted CHUNK_FRAMES at a time.
    """
    mean, cov = _mean_cov(_as_frames(frames, "frames"), "lab")
    return mean.float(), cov.diagonal().clamp(min=0).sqrt().float()


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite [3,3] matrix (eigenvalues floored at _EPS)."""
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp(min=_EPS).sqrt()) @ vectors.T


def _mkl_transform(clip_cov: torch.Tensor, ref_cov: torch.Tensor) -> torch.Tensor:
    """The Monge-Kantorovich linear map [3,3] taking covariance ``clip_cov`` to ``ref_cov``."""
    clip_half = _sqrtm(clip_cov)
    clip_half_inv = torch.linalg.inv(clip_half)
    middle = _sqrtm(clip_half @ ref_cov @ clip_half)
    return clip_half_inv @ middle @ clip_half_inv


def _histograms(frames: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Per-channel Lab histograms [3,HISTOGRAM_BINS] (float64 counts) between ``low`` and ``high`` [3]."""
    counts = torch.zeros(3, HISTOGRAM_BINS, dtype=torch.float64, device=frames.device)
    for _, chunk in _chunks(frames):
        lab = rgb_to_lab(chunk).reshape(-1, 3)
        for channel in range(3):
            counts[channel] += torch.histc(lab[:, channel], HISTOGRAM_BINS, float(low[channel]),
                                           float(high[channel])).to(torch.float64)
    return counts


def _lab_range(*clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel Lab minimum and maximum [3] over all pixels of ``clips``, widened a little."""
    low = torch.full((3,), float("inf"), dtype=torch.float64)
    high = torch.full((3,), float("-inf"), dtype=torch.float64)
    for clip in clips:
        for _, chunk in _chunks(clip):
            lab = rgb_to_lab(chunk).reshape(-1, 3).to(torch.float64).cpu()
            low = torch.minimum(low, lab.min(0).values)
            high = torch.maximum(high, lab.max(0).values)
    return low - 1e-3, high + 1e-3


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation like numpy.interp: ``xp`` increasing [N], ``fp`` [N], ``x`` any shape."""
    index = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1 = xp[index - 1], xp[index]
    y0, y1 = fp[index - 1], fp[index]
    weight = ((x - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0, 1)
    return y0 + weight * (y1 - y0)


def _histogram_maps(clip: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, list[tuple]]:
    """Bin edges and, per channel, (clip CDF, reference CDF, edges) for matching clip values onto the reference."""
    low, high = _lab_range(clip, reference)
    low, high = low.to(clip.device), high.to(clip.device)
    clip_counts = _histograms(clip, low, high)
    ref_counts = _histograms(reference.to(clip.device), low, high)
    maps = []
    for channel in range(3):
        edges = torch.linspace(float(low[channel]), float(high[channel]), HISTOGRAM_BINS + 1,
                               dtype=torch.float64, device=clip.device)
        zero = torch.zeros(1, dtype=torch.float64, device=clip.device)
        clip_cdf = torch.cat([zero, clip_counts[channel].cumsum(0)]) / clip_counts[channel].sum()
        ref_cdf = torch.cat([zero, ref_counts[channel].cumsum(0)]) / ref_counts[channel].sum()
        # a strictly increasing reference CDF so its inverse is a function (empty bins are flat)
        ref_cdf = ref_cdf + torch.arange(HISTOGRAM_BINS + 1, device=clip.device, dtype=torch.float64) * 1e-12
        maps.append((clip_cdf, ref_cdf, edges))
    return low, maps


def match_colour(frames: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray,
                 method: str = "reinhard", strength: float = 1.0,
                 on_chunk: ProgressCallback | None = None) -> torch.Tensor:
    """Colour-match ``frames`` to ``reference``.

    frames: [T,H,W,3] (or [H,W,3]) float 0..1 sRGB. reference: [H,W,3] or [N,H,W,3] float 0..1 (any size;
    only its colour statistics are used, pooled over all N). method: ``reinhard`` | ``histogram`` | ``mkl``
    (see the module docstring). strength: 0..1, the blend towards the match (0 returns the input unchanged).
    on_chunk: called with (frames done, frames total) after each chunk (progress, interruption).
    Returns [T,H,W,3] float32 clamped to 0..1 on the frames' device.
    """
    if method not in METHODS:
        raise ValueError(f"colour match method {method!r} is unknown; use one of {', '.join(METHODS)}")
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"colour match strength {strength} is outside 0..1")
    clip = _as_frames(frames, "frames").to(torch.float32)
    ref = _as_frames(reference, "reference").to(torch.float32).to(clip.device)
    if float(strength) == 0.0:
        if on_chunk is not None:
            on_chunk(clip.shape[0], clip.shape[0])
        return clip.clone()

    if method == "reinhard":
        clip_mean, clip_cov = _mean_cov(clip, "lab")
        ref_mean, ref_cov = _mean_cov(ref, "lab")
        clip_std = clip_cov.diagonal().clamp(min=0).sqrt()
        ref_std = ref_cov.diagonal().clamp(min=0).sqrt()
        # a flat clip channel has no spread to scale: keep it flat and move it to the reference mean
        gain = torch.where(clip_std > 1e-3, ref_std / clip_std.clamp(min=1e-3), torch.ones_like(clip_std))

        def transform(chunk: torch.Tensor) -> torch.Tensor:
            lab = rgb_to_lab(chunk).to(torch.float64)
            return lab_to_rgb((lab - clip_mean) * gain + ref_mean)
    elif method == "mkl":
        clip_mean, clip_cov = _mean_cov(clip, "linear")
        ref_mean, ref_cov = _mean_cov(ref, "linear")
        matrix = _mkl_transform(clip_cov, ref_cov)

        def transform(chunk: torch.Tensor) -> torch.Tensor:
            linear = srgb_to_linear(chunk).to(torch.float64)
            return linear_to_srgb((linear - clip_mean) @ matrix.T + ref_mean).to(torch.float32)
    else:
        _, maps = _histogram_maps(clip, ref)

        def transform(chunk: torch.Tensor) -> torch.Tensor:
            lab = rgb_to_lab(chunk).to(torch.float64)
            channels = [_interp(_interp(lab[..., c], edges, clip_cdf), ref_cdf, edges)
                        for c, (clip_cdf, ref_cdf, edges) in enumerate(maps)]
            return lab_to_rgb(torch.stack(channels, -1))

    out = torch.empty_like(clip)
    for start, chunk in _chunks(clip):
        # clamp before blending: a half-strength result is then exactly halfway to the full (clamped) match
        matched = transform(chunk).to(clip.dtype).clamp(0, 1)
        out[start:start + chunk.shape[0]] = (chunk + float(strength) * (matched - chunk)).clamp(0, 1)
        if on_chunk is not None:
            on_chunk(start + chunk.shape[0], clip.shape[0])
    return out
