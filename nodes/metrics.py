"""Image similarity measures shared by the rooms (bookend QA, start match, scene-cut and duplicate detection)."""

from __future__ import annotations

import numpy as np

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(image: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
    """Separable Gaussian blur of [H,W] with reflected borders (edge-padded when smaller than the window)."""
    kernel = _gaussian_kernel() if kernel is None else kernel
    radius = len(kernel) // 2
    padded = np.pad(image, radius, mode="reflect") if min(image.shape) > radius else np.pad(image, radius, "edge")
    rows = sum(weight * padded[:, i : i + image.shape[1]] for i, weight in enumerate(kernel))
    return sum(weight * rows[i : i + image.shape[0], :] for i, weight in enumerate(kernel))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two grey images [H,W] in 0..1, -1..1 (1 = identical).

    Wang et al. 2004: Gaussian window 11 px / sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two grey images of one size, got {list(x.shape)} and {list(y.shape)}")
    kernel = _gaussian_kernel()
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_x, mu_y = gaussian_blur(x, kernel), gaussian_blur(y, kernel)
    var_x = gaussian_blur(x * x, kernel) - mu_x**2
    var_y = gaussian_blur(y * y, kernel) - mu_y**2
    cov = gaussian_blur(x * y, kernel) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(np.mean(index))


PSNR_IDENTICAL = 100.0  # what psnr() reports for identical images (no error: infinite in theory)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of two images of one shape (any channels), ``data_range`` their scale.

    ``10 * log10(data_range^2 / MSE)`` over every value; identical images give PSNR_IDENTICAL (100 dB).
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"psnr needs two images of one size, got {list(x.shape)} and {list(y.shape)}")
    mse = float(np.mean((x - y) ** 2))
    if mse <= 0.0:
        return PSNR_IDENTICAL
    return float(min(PSNR_IDENTICAL, 10.0 * np.log10(data_range**2 / mse)))
