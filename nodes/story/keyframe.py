"""Keyframe images: read from disk and fitted to the scene's frame size without stretching.

Two fits: ``crop`` (cover the frame, centre-crop the overflow) and ``pad`` (fit inside the frame,
centred on black bars). Neither ever stretches.
"""

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


FIT_MODES = ("crop", "pad")


def fit_contain(image: Any, width: int, height: int) -> Any:
    """Scale a PIL image to fit inside ``width`` x ``height`` (Lanczos), centred on black: no stretching."""
    from PIL import Image

    scale = min(width / image.width, height / image.height)
    size = (min(width, max(1, round(image.width * scale))), min(height, max(1, round(image.height * scale))))
    resized = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(resized.convert("RGB"), ((width - size[0]) // 2, (height - size[1]) // 2))
    return canvas


def fit_image(image: Any, width: int, height: int, fit: str = "crop") -> Any:
    """A PIL image at ``width`` x ``height`` by ``fit``: ``crop`` (cover) or ``pad`` (contain, black bars)."""
    if fit not in FIT_MODES:
        raise ValueError(f"fit {fit!r} is not one of {', '.join(FIT_MODES)}")
    if image.size == (width, height):
        return image
    return fit_cover(image, width, height) if fit == "crop" else fit_contain(image, width, height)


def load_keyframe(path: str, width: int, height: int, fit: str = "crop") -> np.ndarray:
    """The image at ``path`` as [H,W,3] float32 0..1 at ``width`` x ``height``, fitted by ``fit``
    (``crop``: cover + centre crop, the default; ``pad``: contain on black bars).

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
            fitted = fit_image(image, width, height, fit)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"keyframe {path} is not a readable image ({exc}); re-export it as PNG or JPEG") from None
    return np.asarray(fitted, dtype=np.float32) / 255.0


def grey_frame(width: int, height: int) -> np.ndarray:
    """A neutral mid-grey [H,W,3] frame, the stand-in keyframe for scenes that have none."""
    return np.full((height, width, 3), 0.5, dtype=np.float32)
