"""Read what a video file holds, the way ffprobe reports it, without decoding pictures."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av

from .errors import VideoError


@dataclass(frozen=True)
class VideoInfo:
    """What one video file holds (its first video stream and first audio stream).

    fps is exact (``Fraction(24000, 1001)``, not 23.976); durations are in seconds.
    """

    path: str
    frames: int
    fps: Fraction
    width: int
    height: int
    duration: float
    codec: str
    pix_fmt: str
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None
    audio_duration: float | None

    @property
    def resolution(self) -> str:
        """``WxH``, the telemetry's resolution format."""
        return f"{self.width}x{self.height}"


def _looks_like_text(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(512)
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def open_video(path: str | os.PathLike[str], *, require_video: bool = True) -> av.container.InputContainer:
    """Open ``path`` for reading; any failure is a VideoError naming the file and the fix.

    The caller closes the container (``with open_video(p) as container:``). With require_video
    (the default) the container is guaranteed to hold at least one video stream.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise VideoError(f"{name}: file not found; check the path (relative paths start at {os.getcwd()})")
    if os.path.isdir(name):
        raise VideoError(f"{name}: is a folder, not a video file; point at the .mp4 inside it")
    if os.path.getsize(name) == 0:
        raise VideoError(f"{name}: empty file (0 bytes), its write never finished; render it again")
    try:
        container = av.open(name, "r")
    except av.error.FFmpegError as exc:
        kind = "is a text file, not a video" if _looks_like_text(name) else "is truncated, corrupt or not a video"
        raise VideoError(
            f"{name}: cannot be read as a video ({exc.strerror or exc}); it {kind}. "
            "Render or export it again."
        ) from exc
    if require_video and not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"{name}: has no video stream (holds: {', '.join(kinds)}); pick a video file")
    return container


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    # Demuxing reads the file's bytes but decodes nothing: a few ms per thousand frames.
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


def probe_video(path: str | os.PathLike[str], *, verify: bool = True) -> VideoInfo:
    """Describe the video at ``path``: frame count, exact fps, size, codec, audio.

    frames: the stream's nb_frames when the header has it, else the packets counted by demuxing.
    fps: the stream's average frame rate (else its guessed rate) as an exact Fraction.
    duration: the video stream's duration in seconds (else the container's, else frames / fps).

    verify=True (the default) also demuxes the whole stream and checks that every frame the header
    promises is really in the file, which catches truncated MP4s whose index sits at the front.
    Raises VideoError naming the file for a missing, empty, truncated, corrupt or non-video file.
    """
    name = os.fspath(path)
    with open_video(name) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoError(f"{name}: the video stream has no frame rate; re-encode it with a fixed fps")
        fps = Fraction(rate.numerator, rate.denominator)
        header_frames = int(stream.frames or 0)
        counted = None
        if verify or header_frames == 0:
            try:
                counted = _count_packets(container, stream)
            except av.error.FFmpegError as exc:
                reason = exc.strerror or exc
                raise VideoError(f"{name}: truncated or corrupt video data ({reason}); render it again") from exc
        if header_frames and counted is not None and counted < header_frames:
            raise VideoError(
                f"{name}: truncated: holds {counted} of the {header_frames} frames its header lists "
                "(an interrupted copy or write?); render or copy it again"
            )
        frames = header_frames or counted or 0
        if frames == 0:
            raise VideoError(f"{name}: the video stream holds no frames; render it again")

        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = float(frames / fps)

        audio = container.streams.audio[0] if container.streams.audio else None
        audio_duration = None
        if audio is not None and audio.duration:
            audio_duration = float(audio.duration * audio.time_base)
        return VideoInfo(
            path=name,
            frames=frames,
            fps=fps,
            width=int(context.width),
            height=int(context.height),
            duration=duration,
            codec=context.name,
            pix_fmt=str(context.pix_fmt or ""),
            has_audio=audio is not None,
            audio_sample_rate=int(audio.codec_context.sample_rate) if audio is not None else None,
            audio_channels=int(audio.codec_context.channels) if audio is not None else None,
            audio_duration=audio_duration,
        )
