"""Read frames and audio back out of a video file, chunk by chunk.

Readers return ComfyUI's layout by default: torch float32 [T,H,W,3] in 0..1 on the CPU, the IMAGE
type, so a node can hand them on as they are. ``as_torch=False`` gives numpy arrays of the same
shape (the tensor shares their memory, so neither form costs a copy) and ``dtype="uint8"`` gives
0..255 bytes. torch is imported only when tensors are asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from .colour import yuv_to_rgb
from .convert import check_dtype, deliver
from .errors import VideoError
from .probe import VideoInfo, open_video, probe_video


def _frame_index(frame: av.VideoFrame, origin: int, time_base: Fraction, fps: Fraction) -> int:
    return round((frame.pts - origin) * time_base * fps)


def _decoded(container: av.container.InputContainer, start: int, fps: Fraction) -> Iterator[tuple[int, av.VideoFrame]]:
    """(frame index, frame) from ``start`` on, seeking to the keyframe before it when it can.

    After a seek, indices come from timestamps (exact for constant-frame-rate video); if the seek
    overshoots or frames carry no timestamps, decoding restarts at the top and counts frames.
    """
    stream = container.streams.video[0]
    origin = stream.start_time or 0
    time_base = stream.time_base
    if start > 0 and time_base:
        try:
            container.seek(origin + int(start / fps / time_base), stream=stream, backward=True, any_frame=False)
            frames = container.decode(stream)
            first = next(frames, None)
        except av.error.FFmpegError:
            first = None
        if first is not None and first.pts is not None:
            index = _frame_index(first, origin, time_base, fps)
            if index <= start:
                yield index, first
                for frame in frames:
                    index = index + 1 if frame.pts is None else _frame_index(frame, origin, time_base, fps)
                    yield index, frame
                return
        container.seek(origin, stream=stream, backward=True, any_frame=False)
    for index, frame in enumerate(container.decode(stream)):
        yield index, frame


def rgb_frames(info: VideoInfo, start: int = 0, end: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, [H,W,3] uint8 RGB) for frames start..end-1 of a probed file, one decoded at a time.

    Raises VideoError naming the file when decoding fails or the file ends before ``end``.
    """
    end = info.frames if end is None else end
    expected = start
    with open_video(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: faster, and only a few frames in flight
        try:
            for index, frame in _decoded(container, start, info.fps):
                if index < start:
                    continue
                if index >= end:
                    break
                pixels = yuv_to_rgb(frame)
                if pixels.shape[:2] != (info.height, info.width):
                    raise VideoError(
                        f"{info.path}: frame {index} is {pixels.shape[1]}x{pixels.shape[0]}, not "
                        f"{info.width}x{info.height}; the size changes mid-stream, re-encode it at one size"
                    )
                yield index, pixels
                expected = index + 1
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"{info.path}: truncated or corrupt video data after frame {expected} "
                f"({exc.strerror or exc}); render it again"
            ) from exc
    if expected < end:
        raise VideoError(
            f"{info.path}: truncated: decoding stopped at frame {expected} of {end}; render or copy it again"
        )


def _frame_range(info: VideoInfo, start: int, count: int | None) -> int:
    if start < 0 or (count is not None and count < 0):
        raise ValueError(f"{info.path}: start={start}, count={count} must not be negative")
    if start > info.frames:
        raise ValueError(f"{info.path}: start={start} is past the end ({info.frames} frames)")
    return info.frames if count is None else min(info.frames, start + count)


def _uint8_chunks(info: VideoInfo, chunk_size: int, start: int, end: int) -> Iterator[np.ndarray]:
    """[T,H,W,3] uint8 chunks of at most chunk_size frames; a fresh array each (callers keep them)."""
    chunk = None
    filled = 0
    for index, pixels in rgb_frames(info, start, end):
        if chunk is None:
            chunk = np.empty((min(chunk_size, end - index), info.height, info.width, 3), np.uint8)
        chunk[filled] = pixels
        filled += 1
        if filled == len(chunk):
            yield chunk
            chunk, filled = None, 0
    if chunk is not None and filled:
        yield chunk[:filled]


def iter_frames(
    path: str | os.PathLike[str],
    chunk_size: int = 16,
    *,
    start: int = 0,
    count: int | None = None,
    dtype: str = "float32",
    as_torch: bool = True,
) -> Iterator[Any]:
    """Frames of the video at ``path`` in chunks of [T,H,W,3], T <= chunk_size.

    Yields torch float32 0..1 (ComfyUI IMAGE) by default; dtype="uint8" for 0..255, as_torch=False
    for numpy. Frames start..start+count-1 (count=None: to the end; a count past the end stops at
    the end). Memory holds one chunk at a time, independent of the clip's length.

    The file is probed (and checked for truncation) before this returns, so a missing or broken
    file raises VideoError here, not at the first ``next()``. A file that breaks while being decoded
    raises VideoError naming it.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer (16 is a good default)")
    check_dtype(dtype)
    info = probe_video(path)
    end = _frame_range(info, start, count)
    return (deliver(chunk, dtype, as_torch) for chunk in _uint8_chunks(info, chunk_size, start, end))


def read_frames(
    path: str | os.PathLike[str],
    *,
    start: int = 0,
    count: int | None = None,
    dtype: str = "float32",
    as_torch: bool = True,
) -> Any:
    """All requested frames as one [T,H,W,3] array: the IMAGE batch of a short clip.

    Memory is the whole result (T*H*W*3*4 bytes for float32: 49 frames of 832x480 is 235 MB);
    use :func:`iter_frames` for long clips. Same options and errors as iter_frames.
    """
    check_dtype(dtype)
    info = probe_video(path)
    end = _frame_range(info, start, count)
    out = np.empty((end - start, info.height, info.width, 3), np.float32 if dtype == "float32" else np.uint8)
    filled = 0
    for chunk in _uint8_chunks(info, 16, start, end):
        # Convert straight into the result: no second full-size copy.
        if dtype == "float32":
            np.divide(chunk, 255.0, out=out[filled : filled + len(chunk)])
        else:
            out[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if not as_torch:
        return out
    import torch

    return torch.from_numpy(out)


def read_audio(path: str | os.PathLike[str], *, as_torch: bool = True) -> dict | None:
    """The first audio track as a ComfyUI AUDIO dict, or None when the file has no audio.

    Returns {"waveform": [1,C,T] float32 -1..1, "sample_rate": Hz}, waveform a torch tensor (numpy
    with as_torch=False). The encoder's priming and padding samples are cut, so T is the length
    the track was written with. Works for audio-only files (.m4a, .mp3, .wav) too.
    """
    name = os.fspath(path)
    with open_video(name, require_video=False) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        sample_rate = int(stream.codec_context.sample_rate)
        channels = int(stream.codec_context.channels)
        # Planar float at the track's own rate and layout, whatever the codec decodes to.
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=sample_rate)
        blocks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    block = converted.to_ndarray()
                    if converted.pts is not None and converted.pts < 0:
                        block = block[:, min(-converted.pts, block.shape[1]) :]  # priming before t=0
                    blocks.append(block)
            for converted in resampler.resample(None):
                blocks.append(converted.to_ndarray())
        except av.error.FFmpegError as exc:
            reason = exc.strerror or exc
            raise VideoError(f"{name}: truncated or corrupt audio data ({reason}); render it again") from exc
    samples = np.concatenate(blocks, axis=1) if blocks else np.zeros((channels, 0), np.float32)
    if stream.duration and stream.time_base:
        # The last AAC frame is padded to 1024 samples; the stream's duration says where sound ends.
        expected = round(stream.duration * stream.time_base * sample_rate)
        if samples.shape[1] + max(stream.codec_context.frame_size, 1024) < expected:
            raise VideoError(
                f"{name}: truncated: the audio track stops at {samples.shape[1] / sample_rate:.2f} s of "
                f"{expected / sample_rate:.2f} s; render or copy it again"
            )
        samples = samples[:, :expected]
    waveform = np.ascontiguousarray(samples[None], dtype=np.float32)
    if as_torch:
        import torch

        waveform = torch.from_numpy(waveform)
    return {"waveform": waveform, "sample_rate": sample_rate}
