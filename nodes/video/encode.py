"""Write frames (and optionally audio) to an H.264 MP4, streaming chunk by chunk.

Memory holds one chunk of frames plus the encoder's look-ahead, never the whole clip: a 4000-frame
clip encodes in the same RAM as a 40-frame one. The file appears only when complete (atomic_path).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from ..comfy import check_interrupt
from ..run.atomic import atomic_path
from ..timebase import parse_fps
from .colour import rgb_to_yuv, tag_bt709
from .convert import is_tensor, to_uint8
from .errors import VideoError
from .probe import VideoInfo, probe_video

# Container per file extension; MP4/MOV get their index at the front (+faststart) so the panel's
# <video> can start playing before the whole file has loaded.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
FASTSTART = {"mp4", "mov"}

# Chroma subsampling (x, y) of the pixel formats offered: yuv420p halves both, so W and H must be even.
PIXEL_FORMATS = {"yuv420p": (2, 2), "yuv422p": (2, 1), "yuv444p": (1, 1)}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

# Sample rates AAC can signal; anything else must be resampled first.
AAC_SAMPLE_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}

ProgressLike = Any  # nodes.comfy.Progress (has .update(n)) or a callable(frames_done: int)


def _container_format(target: str) -> str:
    ext = os.path.splitext(target)[1].lower()
    if ext not in CONTAINERS:
        raise ValueError(f"{target}: cannot write '{ext or 'no extension'}' files; name it .mp4 (or .mov, .mkv)")
    return CONTAINERS[ext]


# A lone [T,H,W,3] array is converted this many frames at a time, so its uint8 copy stays small.
LONE_ARRAY_CHUNK = 16


def _iter_chunks(frames: Any, target: str) -> Iterator[np.ndarray]:
    """Each input chunk as uint8 [T,H,W,3]; a lone array/tensor is sliced into chunks, [H,W,3] is one frame."""
    chunks = frames
    if isinstance(frames, np.ndarray) or is_tensor(frames):
        if frames.ndim == 4:
            chunks = (frames[i : i + LONE_ARRAY_CHUNK] for i in range(0, frames.shape[0], LONE_ARRAY_CHUNK))
        else:
            chunks = [frames]
    for index, chunk in enumerate(chunks):
        try:
            pixels = to_uint8(chunk)
        except TypeError as exc:
            raise VideoError(f"{target}: frame chunk {index}: {exc}") from exc
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.ndim != 4 or pixels.shape[-1] != 3:
            hint = " (drop the alpha channel: frames[..., :3])" if pixels.shape[-1:] == (4,) else ""
            raise VideoError(
                f"{target}: frame chunk {index} has shape {list(pixels.shape)}; expected [T,H,W,3] RGB{hint}"
            )
        if pixels.shape[0]:
            yield pixels


def _prepare_audio(audio: dict, target: str) -> tuple[np.ndarray, int]:
    """A ComfyUI AUDIO dict as (samples [C,N] float32 contiguous, sample rate in Hz)."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise VideoError(f"{target}: audio must be a ComfyUI AUDIO dict {{'waveform': [B,C,T], 'sample_rate': Hz}}")
    waveform = audio["waveform"]
    if is_tensor(waveform):
        waveform = waveform.detach().float().cpu().numpy()
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim == 3:
        if samples.shape[0] != 1:
            raise VideoError(f"{target}: audio holds {samples.shape[0]} tracks (batch); pass one: waveform[i:i+1]")
        samples = samples[0]
    if samples.ndim != 2:
        raise VideoError(f"{target}: audio waveform has shape {list(samples.shape)}; expected [1,C,T]")
    channels, length = samples.shape
    if channels not in AUDIO_LAYOUTS:
        raise VideoError(f"{target}: audio has {channels} channels; AAC here takes mono or stereo, downmix it first")
    if length == 0:
        raise VideoError(f"{target}: audio has no samples; leave audio out instead")
    sample_rate = int(audio["sample_rate"])
    if sample_rate not in AAC_SAMPLE_RATES:
        raise VideoError(f"{target}: audio sample rate {sample_rate} Hz is not an AAC rate; resample to 48000 or 44100")
    return np.ascontiguousarray(samples), sample_rate


class _Mp4Writer:
    """One output file: opened on the first chunk (its size fixes the stream), closed by finish()."""

    def __init__(self, temp: str, target: str, rate: Fraction, crf: int, preset: str, pix_fmt: str,
                 audio: tuple[np.ndarray, int] | None, trim_audio: bool):
        self.temp, self.target, self.rate = temp, target, rate
        self.crf, self.preset, self.pix_fmt = crf, preset, pix_fmt
        self.audio, self.trim_audio = audio, trim_audio
        self.container: av.container.OutputContainer | None = None
        self.size: tuple[int, int] | None = None  # (H, W) of the input frames
        self.pad = (0, 0)  # rows, columns added to reach the chroma grid
        self.frames = 0
        self.audio_written = 0

    def _open(self, height: int, width: int) -> None:
        fmt = CONTAINERS[os.path.splitext(self.target)[1].lower()]
        step_x, step_y = PIXEL_FORMATS[self.pix_fmt]
        self.pad = (-height % step_y, -width % step_x)
        self.size = (height, width)
        options = {"movflags": "+faststart"} if fmt in FASTSTART else {}
        self.container = av.open(self.temp, "w", format=fmt, options=options)
        video = self.container.add_stream("libx264", rate=self.rate)
        video.width, video.height = width + self.pad[1], height + self.pad[0]
        video.pix_fmt = self.pix_fmt
        video.options = {"crf": str(self.crf), "preset": self.preset}
        tag_bt709(video.codec_context)
        self.video = video
        if self.audio is not None:
            samples, sample_rate = self.audio
            stream = self.container.add_stream("aac", rate=sample_rate)
            stream.codec_context.layout = AUDIO_LAYOUTS[samples.shape[0]]
            stream.codec_context.format = "fltp"
            stream.time_base = Fraction(1, sample_rate)
            self.audio_stream = stream

    def write(self, chunk: np.ndarray, index: int) -> None:
        """chunk: [T,H,W,3] uint8 RGB, all chunks the same H and W."""
        height, width = chunk.shape[1:3]
        if self.container is None:
            self._open(height, width)
        elif (height, width) != self.size:
            raise VideoError(
                f"{self.target}: frame chunk {index} is {width}x{height} but the video is "
                f"{self.size[1]}x{self.size[0]}; resize every frame to one size"
            )
        if any(self.pad):
            # Repeat the last row/column: invisible at the edge, unlike a black bar.
            chunk = np.pad(chunk, ((0, 0), (0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        for pixels in chunk:
            frame = rgb_to_yuv(pixels, self.pix_fmt)
            frame.pts = self.frames
            self.container.mux(self.video.encode(frame))
            self.frames += 1
        # Interleave: audio catches up to the video written so far, so a player streams both.
        self._write_audio(self._audio_samples_at(self.frames))

    def _audio_samples_at(self, frames: int) -> int:
        sample_rate = self.audio[1] if self.audio else 0
        return math.floor(frames / self.rate * sample_rate)

    def _write_audio(self, until: int) -> None:
        if self.audio is None:
            return
        samples, sample_rate = self.audio
        until = min(until, samples.shape[1])
        if until <= self.audio_written:
            return
        block = np.ascontiguousarray(samples[:, self.audio_written:until])
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=AUDIO_LAYOUTS[samples.shape[0]])
        frame.sample_rate = sample_rate
        frame.pts = self.audio_written
        self.container.mux(self.audio_stream.encode(frame))
        self.audio_written = until

    def finish(self) -> None:
        if self.container is None:
            raise VideoError(f"{self.target}: no frames to encode; the frame source was empty")
        self.container.mux(self.video.encode(None))
        if self.audio is not None:
            end = self._audio_samples_at(self.frames) if self.trim_audio else self.audio[0].shape[1]
            self._write_audio(end)
            self.container.mux(self.audio_stream.encode(None))
        self.container.close()  # writes the index (and moves it to the front)
        self.container = None

    def abort(self) -> None:
        if self.container is not None:
            # The temp file is deleted next, so a failing trailer write does not matter.
            with contextlib.suppress(Exception):
                self.container.close()
            self.container = None


def _report(progress: ProgressLike | None, chunk_frames: int, frames_done: int) -> None:
    if progress is None:
        return
    if hasattr(progress, "update"):
        progress.update(chunk_frames)
    else:
        progress(frames_done)


def encode_video(
    path: str | os.PathLike[str],
    frames: Iterable[Any] | Any,
    fps: Fraction | int | float | str,
    *,
    audio: dict | None = None,
    crf: int = 19,
    preset: str = "medium",
    pix_fmt: str = "yuv420p",
    progress: ProgressLike | Callable[[int], None] | None = None,
    trim_audio: bool = False,
) -> VideoInfo:
    """Encode frames to an H.264 file at ``path`` and return what was written (probed back).

    frames: an iterable of chunks, each [T,H,W,3] (or one frame [H,W,3]), float32 0..1 (ComfyUI
        IMAGE) or uint8, torch tensor or numpy array; or one [T,H,W,3] array/tensor. Chunks are
        encoded as they arrive and never joined, so a generator keeps memory flat.
    fps: exact rate, see :func:`parse_fps` (Fraction(24000, 1001), "24000/1001", 24, 23.976).
    audio: optional ComfyUI AUDIO {"waveform": [1,C,T] float -1..1, "sample_rate": Hz}, C = 1 or 2,
        muxed as AAC. The track is kept whole as given (not cut or padded to the video's length)
        unless trim_audio=True, which cuts it at the last video frame.
    crf: x264 quality, 0 (lossless) .. 51; 19 is visually clean. preset: x264 speed preset.
    pix_fmt: yuv420p (plays everywhere), yuv422p or yuv444p. Odd sizes: yuv420p needs even width
        and height, so an odd width or height is padded by repeating the last column/row; the
        returned VideoInfo gives the size actually written.
    progress: nodes.comfy.Progress (``update(frames_in_chunk)``) or a callable(frames_done).

    The file is written to a temporary name beside ``path`` and renamed when complete: an error or
    interruption (checked between chunks) leaves any previous ``path`` untouched and no temp file.
    Raises VideoError (names the file) for bad frames/audio or an encoder failure, ValueError for
    bad fps/crf/preset/pix_fmt.
    """
    target = os.path.abspath(os.fspath(path))
    try:
        rate = parse_fps(fps)
    except ValueError as exc:
        raise ValueError(f"fps: {exc}") from None
    _container_format(target)
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf={crf!r} must be an integer 0..51 (lower is better quality; 19 is the default)")
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not an x264 preset; use one of {', '.join(PRESETS)}")
    if pix_fmt not in PIXEL_FORMATS:
        raise ValueError(f"pix_fmt={pix_fmt!r} is not supported; use one of {', '.join(PIXEL_FORMATS)}")
    track = _prepare_audio(audio, target) if audio is not None else None

    with atomic_path(target) as temp:
        writer = _Mp4Writer(temp, target, rate, crf, preset, pix_fmt, track, trim_audio)
        try:
            for index, chunk in enumerate(_iter_chunks(frames, target)):
                writer.write(chunk, index)
                _report(progress, len(chunk), writer.frames)
                check_interrupt()
            writer.finish()
        except av.error.FFmpegError as exc:
            writer.abort()
            raise VideoError(f"{target}: encoding failed ({exc.strerror or exc}); check disk space and retry") from exc
        except BaseException:
            writer.abort()
            raise
    return probe_video(target)
