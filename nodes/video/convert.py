"""Pixel conversions shared by the whole room: IMAGE floats <-> uint8, numpy <-> torch.

ComfyUI's IMAGE is a torch float32 tensor ``[B,H,W,C]`` in 0..1; video codecs and PNG want uint8.
Every conversion in the room goes through here so rounding is the same everywhere: round to
nearest, clamp to 0..255, NaN becomes 0. torch is never imported at module import time; a tensor
argument means the caller has imported it already.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DTYPES = ("float32", "uint8")


def is_tensor(value: Any) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return not isinstance(value, np.ndarray) and hasattr(value, "detach") and hasattr(value, "dtype")


def to_uint8(pixels: Any) -> np.ndarray:
    """Pixels as a uint8 numpy array of the same shape.

    pixels: numpy array or torch tensor (any device), float in 0..1 (values outside are clamped)
    or uint8 (returned without a copy where possible). Other integer types are refused.
    """
    if is_tensor(pixels):
        import torch

        tensor = pixels.detach()
        if tensor.dtype != torch.uint8:
            if not tensor.is_floating_point():
                raise TypeError(f"pixels have dtype {tensor.dtype}; expected float 0..1 or uint8")
            # Convert on the tensor's own device so only a quarter of the bytes cross to the CPU.
            tensor = tensor.float().nan_to_num(0.0).mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)
        return tensor.cpu().numpy()
    array = np.asarray(pixels)
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"pixels have dtype {array.dtype}; expected float 0..1 or uint8")
    scaled = np.multiply(array, 255.0, dtype=np.float32)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return scaled.astype(np.uint8)


def to_float32(pixels: np.ndarray) -> np.ndarray:
    """uint8 numpy pixels as float32 in 0..1 (same shape; one allocation)."""
    return np.divide(pixels, 255.0, dtype=np.float32)


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    return dtype


def deliver(pixels: np.ndarray, dtype: str = "float32", as_torch: bool = True) -> Any:
    """uint8 numpy pixels in the form a reader promised: float32 0..1 or uint8, torch or numpy.

    torch tensors share memory with the numpy array (no copy) and live on the CPU, as ComfyUI's
    IMAGE does between nodes.
    """
    out = to_float32(pixels) if check_dtype(dtype) == "float32" else pixels
    if not as_torch:
        return out
    import torch

    return torch.from_numpy(out)
