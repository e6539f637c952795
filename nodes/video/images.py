"""PNG bookends: the first and last frame of a scene, saved beside its MP4 for chaining and QA."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..run.atomic import atomic_path
from .colour import yuv_to_rgb
from .convert import check_dtype, deliver, to_uint8
from .decode import rgb_frames
from .errors import VideoError
from .probe import VideoInfo, open_video, probe_video


def save_png(path: str | os.PathLike[str], frame: Any) -> str:
    """Write one frame to ``path`` as an 8-bit RGB PNG, atomically; return the absolute path.

    frame: [H,W,3] (or a one-frame batch [1,H,W,3]) float 0..1 or uint8, torch tensor or numpy.
    """
    target = os.path.abspath(os.fspath(path))
    try:
        pixels = to_uint8(frame)
    except TypeError as exc:
        raise VideoError(f"{target}: {exc}") from exc
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise VideoError(f"{target}: frame has shape {list(pixels.shape)}; expected one RGB frame [H,W,3]")
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    with atomic_path(target) as temp:
        image.save(temp, format="PNG")
    return target


def load_png(path: str | os.PathLike[str], *, dtype: str = "float32", as_torch: bool = True) -> Any:
    """One image file as [H,W,3] RGB: torch float32 0..1 by default (see decode's readers).

    Reads any 8-bit image Pillow knows (PNG, JPEG, WebP); alpha is dropped, greyscale and palette
    images become RGB. Raises VideoError naming the file when it is missing or not an image.
    """
    check_dtype(dtype)
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise VideoError(f"{name}: image not found; check the path (relative paths start at {os.getcwd()})")
    try:
        with Image.open(name) as image:
            pixels = np.asarray(image.convert("RGB"))
    except UnidentifiedImageError as exc:
        raise VideoError(f"{name}: not an image Pillow can read; save it again as PNG") from exc
    except OSError as exc:  # truncated or damaged data
        raise VideoError(f"{name}: damaged image ({exc}); save it again as PNG") from exc
    return deliver(pixels, dtype, as_torch)


def pixel_sha256(pixels: Any) -> str:
    """sha256 (hex) of one image as the uint8 [H,W,3] C-contiguous bytes of its 8-bit values.

    ``pixels``: [H,W,3] (or a one-frame batch [1,H,W,3]) float 0..1 or uint8, numpy or torch. The one
    image hash of the pack: Chain Start's start/end hashes, the chain proof of a join and the scene
    fingerprints all compare these.
    """
    values = to_uint8(pixels)
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 3 or values.shape[-1] != 3:
        raise ValueError(f"pixel_sha256 needs one RGB image [H,W,3], got shape {list(values.shape)}")
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.uint8).tobytes()).hexdigest()


def png_digest(path: str | os.PathLike[str]) -> str:
    """:func:`pixel_sha256` of an image file's decoded 8-bit RGB pixels (not its file bytes), so the same
    picture saved again with other PNG settings has the same digest. VideoError as :func:`load_png`."""
    return pixel_sha256(load_png(path, dtype="uint8", as_torch=False))


def _last_by_seeking(info: VideoInfo) -> np.ndarray | None:
    """The last frame, decoding only its final GOP; None when the file cannot be searched that way."""
    with open_video(info.path) as container:
        stream = container.streams.video[0]
        if not stream.time_base or not stream.duration:
            return None
        origin = stream.start_time or 0
        try:
            container.seek(origin + stream.duration, stream=stream, backward=True, any_frame=False)
            last = None
            for frame in container.decode(stream):
                if frame.pts is not None and (last is None or frame.pts >= last.pts):
                    last = frame
        except av.error.FFmpegError as exc:
            reason = exc.strerror or exc
            message = f"{info.path}: truncated or corrupt video data near the end ({reason}); render it again"
            raise VideoError(message) from exc
        if last is None:
            return None
        index = round((last.pts - origin) * stream.time_base * info.fps)
        if index != info.frames - 1:
            return None  # timestamps do not map to frame numbers (variable rate): stream instead
        return yuv_to_rgb(last)


def first_and_last(path: str | os.PathLike[str], *, dtype: str = "float32", as_torch: bool = True) -> tuple[Any, Any]:
    """The first and last frame of the video at ``path``, each [H,W,3] (torch float32 0..1 default).

    Only one frame is decoded into memory at a time: the last frame comes from the final keyframe
    interval (a seek), or, for files that cannot be searched, by streaming through every frame
    and keeping the newest. Raises VideoError naming a missing, truncated or corrupt file.
    """
    check_dtype(dtype)
    info = probe_video(path)
    first = next(rgb_frames(info, 0, 1))[1]
    last = first if info.frames == 1 else _last_by_seeking(info)
    if last is None:
        for _index, pixels in rgb_frames(info):
            last = pixels
    return deliver(first, dtype, as_torch), deliver(last, dtype, as_torch)
