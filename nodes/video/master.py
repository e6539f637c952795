"""Lossless scene masters: the frames the render reads, kept beside the H.264 preview people watch.

A master is FFV1 in Matroska with the pixels stored as ``bgr0`` (8-bit RGB, no YUV conversion), so
decoding gives back exactly the uint8 RGB that was saved. Where this PyAV has no FFV1 encoder, the
master is a folder of PNG frames instead (``000000.png`` ... plus ``master.json`` with the rate).
Both are written under a temporary name and renamed when complete.

:func:`probe_source` and :func:`iter_source_frames` read a master of either kind, or any video file
(an MP4 preview), with the same shapes as :func:`probe_video` / :func:`iter_frames`, chunk by chunk.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from ..comfy import check_interrupt
from ..run.atomic import TEMP_MARKER, atomic_path
from ..timebase import parse_fps
from .convert import check_dtype, deliver
from .decode import iter_frames
from .encode import _iter_chunks, _report
from .errors import VideoError
from .images import load_png, save_png
from .probe import VideoInfo, probe_video

MASTER_FFV1, MASTER_PNG = "ffv1", "png"
MASTER_FORMATS = (MASTER_FFV1, MASTER_PNG)
FFV1_PIXEL_FORMAT = "bgr0"  # RGB with a padding byte: lossless for 8-bit RGB (yuv444p is not: +-2)
FRAMES_INDEX = "master.json"
FRAME_NAME = "{:06d}.png"


def ffv1_available() -> bool:
    """True when this PyAV can encode FFV1 with 8-bit RGB pixels."""
    try:
        codec = av.codec.Codec("ffv1", "w")
    except Exception:  # the codec is not compiled into this FFmpeg
        return False
    return any(fmt.name == FFV1_PIXEL_FORMAT for fmt in codec.video_formats or ())


def master_format() -> str:
    """The master kind this installation writes: ``ffv1`` where PyAV has it, else ``png``."""
    return MASTER_FFV1 if ffv1_available() else MASTER_PNG


def _write_ffv1(temp: str, chunks: Iterator[np.ndarray], rate: Fraction, target: str, progress: Any) -> int:
    frames = 0
    container = av.open(temp, "w", format="matroska")
    try:
        stream = size = None
        for index, chunk in enumerate(chunks):
            if stream is None:
                stream = container.add_stream("ffv1", rate=rate)
                stream.height, stream.width = chunk.shape[1:3]
                stream.pix_fmt = FFV1_PIXEL_FORMAT
                size = chunk.shape[1:3]
            elif chunk.shape[1:3] != size:
                raise VideoError(f"{target}: frame chunk {index} is {chunk.shape[2]}x{chunk.shape[1]} but the "
                                 f"master is {size[1]}x{size[0]}; resize every frame to one size")
            for pixels in chunk:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                frame = frame.reformat(format=FFV1_PIXEL_FORMAT)
                frame.pts = frames
                container.mux(stream.encode(frame))
                frames += 1
            _report(progress, len(chunk), frames)
            check_interrupt()
        if stream is None:
            raise VideoError(f"{target}: no frames to keep; the frame source was empty")
        container.mux(stream.encode(None))
    except BaseException:
        with contextlib.suppress(Exception):  # the temp file is deleted next
            container.close()
        raise
    container.close()
    return frames


@contextlib.contextmanager
def _atomic_folder(target: str) -> Iterator[str]:
    """A temporary folder beside ``target`` that replaces it when the block ends without error."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    temp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", suffix=TEMP_MARKER, dir=parent)
    try:
        yield temp
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old.", suffix=TEMP_MARKER, dir=parent)
        os.rmdir(old)
        os.rename(target, old)
    os.rename(temp, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _write_pngs(folder: str, chunks: Iterator[np.ndarray], rate: Fraction, target: str, progress: Any) -> int:
    frames, size = 0, None
    for index, chunk in enumerate(chunks):
        if size is None:
            size = chunk.shape[1:3]
        elif chunk.shape[1:3] != size:
            raise VideoError(f"{target}: frame chunk {index} is {chunk.shape[2]}x{chunk.shape[1]} but the "
                             f"master is {size[1]}x{size[0]}; resize every frame to one size")
        for pixels in chunk:
            save_png(os.path.join(folder, FRAME_NAME.format(frames)), pixels)
            frames += 1
        _report(progress, len(chunk), frames)
        check_interrupt()
    if size is None:
        raise VideoError(f"{target}: no frames to keep; the frame source was empty")
    index = {"frames": frames, "fps": f"{rate.numerator}/{rate.denominator}", "width": int(size[1]),
             "height": int(size[0]), "format": "rgb24 png"}
    with open(os.path.join(folder, FRAMES_INDEX), "w", encoding="utf-8") as handle:
        json.dump(index, handle)
    return frames


def encode_master(path: str | os.PathLike[str], frames: Iterable[Any] | Any, fps: Fraction | int | float | str, *,
                  fmt: str | None = None, progress: Any = None) -> VideoInfo:
    """Keep ``frames`` losslessly at ``path`` and return what was written (probed back).

    frames: as :func:`encode_video` takes them (chunks or one [T,H,W,3] array, float 0..1 or uint8).
    fmt: ``ffv1`` (``path`` a ``.mkv`` file) or ``png`` (``path`` a folder); None: :func:`master_format`.
    The file or folder replaces any previous one only when complete.
    """
    target = os.path.abspath(os.fspath(path))
    fmt = fmt or master_format()
    if fmt not in MASTER_FORMATS:
        raise ValueError(f"master format {fmt!r} is not one of {', '.join(MASTER_FORMATS)}")
    if fmt == MASTER_FFV1 and not ffv1_available():
        raise VideoError(f"{target}: this PyAV has no FFV1 encoder; keep the master as PNG frames (fmt='png')")
    try:
        rate = parse_fps(fps)
    except ValueError as exc:
        raise ValueError(f"fps: {exc}") from None
    chunks = _iter_chunks(frames, target)
    if fmt == MASTER_PNG:
        with _atomic_folder(target) as folder:
            _write_pngs(folder, chunks, rate, target, progress)
        return probe_source(target)
    if os.path.splitext(target)[1].lower() != ".mkv":
        raise ValueError(f"{target}: an FFV1 master is a Matroska file; name it .mkv")
    with atomic_path(target) as temp:
        try:
            _write_ffv1(temp, chunks, rate, target, progress)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{target}: writing the master failed ({exc.strerror or exc}); check disk space") from exc
    return probe_source(target)


def _frames_index(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, FRAMES_INDEX)
    try:
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
        return {"frames": int(index["frames"]), "fps": parse_fps(index["fps"]), "width": int(index["width"]),
                "height": int(index["height"])}
    except FileNotFoundError:
        raise VideoError(f"{folder}: not a frames master ({FRAMES_INDEX} is missing); render the scene again") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VideoError(f"{path}: cannot be read ({exc}); render the scene again") from exc


def probe_source(path: str | os.PathLike[str]) -> VideoInfo:
    """What a master (FFV1 file or PNG folder) or any video file holds; VideoError names a broken one."""
    name = os.fspath(path)
    if not os.path.isdir(name):
        return probe_video(name)
    index = _frames_index(name)
    missing = [i for i in range(index["frames"]) if not os.path.isfile(os.path.join(name, FRAME_NAME.format(i)))]
    if missing:
        raise VideoError(f"{name}: truncated: frame {missing[0]} of {index['frames']} is missing; render the "
                         "scene again")
    return VideoInfo(path=name, frames=index["frames"], fps=index["fps"], width=index["width"],
                     height=index["height"], duration=float(index["frames"] / index["fps"]), codec="png",
                     pix_fmt="rgb24", has_audio=False, audio_sample_rate=None, audio_channels=None,
                     audio_duration=None)


def iter_source_frames(path: str | os.PathLike[str], chunk_size: int = 16, *, dtype: str = "float32",
                       as_torch: bool = True) -> Iterator[Any]:
    """Frames of a master or video file in chunks [T,H,W,3] (as :func:`iter_frames`), one chunk in memory."""
    name = os.fspath(path)
    if not os.path.isdir(name):
        return iter_frames(name, chunk_size, dtype=dtype, as_torch=as_torch)
    check_dtype(dtype)
    info = probe_source(name)

    def chunks() -> Iterator[Any]:
        for start in range(0, info.frames, chunk_size):
            count = min(chunk_size, info.frames - start)
            chunk = np.empty((count, info.height, info.width, 3), np.uint8)
            for k in range(count):
                pixels = load_png(os.path.join(name, FRAME_NAME.format(start + k)), dtype="uint8", as_torch=False)
                if pixels.shape != chunk.shape[1:]:
                    raise VideoError(f"{name}: frame {start + k} is {pixels.shape[1]}x{pixels.shape[0]}, not "
                                     f"{info.width}x{info.height}; render the scene again")
                chunk[k] = pixels
            yield deliver(chunk, dtype, as_torch)

    return chunks()


def remove_master(path: str | os.PathLike[str]) -> bool:
    """Delete a master file or frames folder if it is there; True when something was removed."""
    name = os.fspath(path)
    if os.path.isdir(name):
        shutil.rmtree(name)
        return True
    if os.path.isfile(name):
        os.remove(name)
        return True
    return False
