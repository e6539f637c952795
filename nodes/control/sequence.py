"""Control sequences: a zip of pose/depth/canny frames, read safely and resampled to the scene.

The zip is read in memory, never extracted, so nothing is written anywhere. It is refused, with
a message naming the entry and the fix, when any entry:

- has an absolute name (``/x.png``, ``C:/x.png``, ``\\\\server\\x.png``) or a ``..`` part (traversal);
- is a symlink (Unix mode bits in the entry), encrypted, or uses a compression zipfile cannot read;
- is not an image by name (:data:`IMAGE_EXTENSIONS`) or does not decode as one;
- declares more than :data:`MAX_ENTRY_BYTES`, or inflates past what it declared (a lying header);

or when the zip holds more than :data:`MAX_ENTRIES` entries, declares more than
:data:`MAX_TOTAL_BYTES` in all, names a file twice, holds no image, or its images differ in size.
Directory entries and macOS metadata (``__MACOSX/``, ``._*``, ``.DS_Store``) are skipped.

Frames are taken in natural name order (``f2`` before ``f10``), resampled in time to the scene's
length by nearest frame (``source = round(i * (n - 1) / (length - 1))``: first and last kept) and in
space to the scene's size by cover and centre crop (never stretched), as keyframes are.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..story.keyframe import fit_image
from ..story.model import IMAGE_EXTENSIONS

MAX_ENTRIES = 4096  # a 4001-frame scene at most, plus room for folders
MAX_ENTRY_BYTES = 64 << 20  # one uncompressed control frame
MAX_TOTAL_BYTES = 2 << 30  # all frames, uncompressed, as declared
MAX_FRAME_PIXELS = 4096 * 4096  # the largest frame a story allows
_SKIPPED = re.compile(r"(^|/)(__MACOSX/|\._[^/]*$|\.DS_Store$)")


class ControlZipError(ValueError):
    """A control zip that is refused; the message names the zip, the entry and what to do."""


@dataclass(frozen=True)
class ControlFrames:
    """Decoded control frames in play order: uint8 [N,H,W,3] and the entry names they came from."""

    frames: np.ndarray
    names: tuple[str, ...]


def natural_key(name: str) -> list[Any]:
    """Sort key: digit runs compare as numbers (``f2`` < ``f10``), the rest case-insensitively."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _unsafe_name(name: str) -> str | None:
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text) or name.startswith("\\\\"):
        return "is an absolute path"
    if any(part == ".." for part in text.split("/")):
        return "leaves the zip's folder (a '..' part)"
    if "\x00" in name:
        return "has a NUL byte in its name"
    return None


def _refuse(zip_name: str, entry: str | None, problem: str, fix: str) -> ControlZipError:
    where = f"{zip_name}: entry '{entry}'" if entry is not None else zip_name
    return ControlZipError(f"control zip {where} {problem}; {fix}")


def _image_entries(archive: zipfile.ZipFile, zip_name: str) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _refuse(zip_name, None, f"has {len(infos)} entries, more than {MAX_ENTRIES}",
                      "a control sequence is one image per frame; split it or lower the frame count")
    declared = 0
    seen: set[str] = set()
    images = []
    for info in infos:
        name = info.filename
        problem = _unsafe_name(name)
        if problem:
            raise _refuse(zip_name, name, problem, "zip the frames with relative names such as 'pose/0001.png'")
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_ISLNK(mode):
            raise _refuse(zip_name, name, "is a symbolic link", "zip the image files themselves (zip without -y)")
        if info.is_dir() or _SKIPPED.search(name):
            continue
        if info.flag_bits & 0x1:
            raise _refuse(zip_name, name, "is encrypted", "zip the frames without a password")
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            raise _refuse(zip_name, name, "is not an image", f"keep only {', '.join(IMAGE_EXTENSIONS)} files in it")
        key = name.lower()
        if key in seen:
            raise _refuse(zip_name, name, "appears twice", "keep one file per name")
        seen.add(key)
        if info.file_size > MAX_ENTRY_BYTES:
            raise _refuse(zip_name, name, f"declares {info.file_size} bytes uncompressed, more than "
                          f"{MAX_ENTRY_BYTES >> 20} MB", "export smaller frames (PNG at the scene's size)")
        declared += info.file_size
        if declared > MAX_TOTAL_BYTES:
            raise _refuse(zip_name, None, f"declares more than {MAX_TOTAL_BYTES >> 30} GB uncompressed",
                          "export fewer or smaller frames")
        images.append(info)
    if not images:
        raise _refuse(zip_name, None, "holds no image", f"put the frames in it as {', '.join(IMAGE_EXTENSIONS)} files")
    return sorted(images, key=lambda info: natural_key(info.filename))


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, zip_name: str) -> bytes:
    """The entry's bytes, refusing as soon as it inflates past its declared size (a lying header)."""
    try:
        with archive.open(info) as handle:
            data = handle.read(info.file_size + 1)
    except NotImplementedError as exc:
        raise _refuse(zip_name, info.filename, f"uses a compression this reader lacks ({exc})",
                      "zip it with deflate or store") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:  # CRC mismatch, truncated data, bad header
        raise _refuse(zip_name, info.filename, f"is damaged ({exc})", "zip the frames again") from None
    if len(data) > info.file_size:
        raise _refuse(zip_name, info.filename, f"inflates past the {info.file_size} bytes it declares",
                      "this is not a plain zip of frames; zip the frames again")
    return data


def _decode(data: bytes, zip_name: str, entry: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_FRAME_PIXELS:
                raise _refuse(zip_name, entry, f"is {opened.width}x{opened.height}, larger than 4096x4096",
                              "export the frames at the scene's size")
            image = opened.convert("RGB")
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ControlZipError):
            raise
        why = "not an image format Pillow knows" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise _refuse(zip_name, entry, f"does not decode as an image ({why})", "re-export it as PNG") from None
    return np.asarray(image, dtype=np.uint8)


def read_control_zip(path: str | os.PathLike[str]) -> ControlFrames:
    """The images of a control zip, checked (see the module docstring), in natural name order.

    ControlZipError names the zip and entry for every refusal; nothing is written anywhere.
    """
    zip_name = os.path.basename(os.fspath(path))
    if not os.path.isfile(path):
        raise _refuse(zip_name, None, f"not found at {os.fspath(path)}", "put the zip in the story's folder")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _refuse(zip_name, None, f"is not a readable zip ({exc})", "zip the frames again") from None
    with archive:
        entries = _image_entries(archive, zip_name)
        frames = []
        size = None
        for info in entries:
            frame = _decode(_read_capped(archive, info, zip_name), zip_name, info.filename)
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                raise _refuse(zip_name, info.filename, (
                    f"is {frame.shape[1]}x{frame.shape[0]} but '{entries[0].filename}' is {size[1]}x{size[0]}"),
                    "export every frame at one size")
            frames.append(frame)
    return ControlFrames(np.stack(frames), tuple(info.filename for info in entries))


def time_indices(count: int, length: int) -> list[int]:
    """Which of ``count`` source frames each of ``length`` output frames shows (nearest; ends kept)."""
    if count < 1 or length < 1:
        raise ValueError(f"need at least one source and one output frame (got {count} -> {length})")
    if length == 1:
        return [0]
    return [min(count - 1, int(i * (count - 1) / (length - 1) + 0.5)) for i in range(length)]


def resample(frames: np.ndarray | Sequence[np.ndarray], length: int, width: int, height: int) -> np.ndarray:
    """Control frames (uint8 or float [N,H,W,3]) -> float32 [length,height,width,3] in 0..1: nearest frame in
    time, cover + centre crop (Lanczos) in space; each distinct source frame is resized once."""
    from PIL import Image

    count = len(frames)
    picks = time_indices(count, length)
    fitted: dict[int, np.ndarray] = {}
    for index in sorted(set(picks)):
        frame = np.asarray(frames[index])
        if frame.dtype != np.uint8:
            frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        image = Image.fromarray(frame[..., :3])
        fitted[index] = np.asarray(fit_image(image, width, height, "crop"), dtype=np.float32) / 255.0
    return np.stack([fitted[i] for i in picks])
