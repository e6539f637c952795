"""Keyframe images: read from disk and fitted to the scene's frame size without stretching."""

from __future__ import annotations

from typing import Any

import numpy as np


def fit_cover(image: Any, width: int, height: int) -> Any:
    """Scale a PIL image to cover ``width`` x ``height`` (Lanczos), then centre-crop: no stretching."""
    from PIL import Image

    scale = max(width / image.width, height / image.height)
    resized = image.resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))),
        Image.Resampling.LANCZOS,
    )
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def load_keyframe(path: str, width: int, height: int) -> np.ndarray:
    """The image at ``path`` as [H,W,3] float32 0..1 at ``width`` x ``height`` (cover + centre crop).

    EXIF orientation is applied, alpha is composited on black, greyscale/palette become RGB.
    ValueError names the file when it is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (0, 0, 0, 255))
                image = Image.alpha_composite(background, image)
            image = image.convert("RGB")
            fitted = fit_cover(image, width, height)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"keyframe {path} is not a readable image ({exc}); re-export it as PNG or JPEG") from None
    return np.asarray(fitted, dtype=np.float32) / 255.0


def grey_frame(width: int, height: int) -> np.ndarray:
    """A neutral mid-grey [H,W,3] frame, the stand-in keyframe for scenes that have none."""
    return np.full((height, width, 3), 0.5, dtype=np.float32)
