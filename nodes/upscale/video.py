"""Video file in, upscaled video file out, audio copied: the story renderer's upscale stage.

Frames are decoded, upscaled and encoded chunk by chunk (``nodes/video`` does the I/O), so memory
holds one chunk and its upscaled copy whatever the clip's length. The result carries the Post
telemetry fields (UpscaleMethod, UpscaleElapsed, FinalResolution) and can be recorded in a run's
events.jsonl.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..run import events
from ..video import encode_video, iter_frames, probe_video, read_audio
from .engine import Upscaler, UpscaleSettings

UPSCALE_EVENT = "upscale_done"
DEFAULT_CHUNK = 4  # frames; a 4x model's float32 output of one 832x480 frame is 77 MB


@dataclass(frozen=True)
class UpscaleResult:
    """What an upscale job wrote: file, method, time (ms), size, frames, exact fps, audio kept."""

    path: str
    method: str
    elapsed_ms: float
    width: int
    height: int
    frames: int
    fps: Fraction
    audio_kept: bool
    tile: int | None
    backoffs: int

    def post_fields(self) -> dict[str, Any]:
        """The Post telemetry fields of this stage (TELEMETRY.md names and units)."""
        return upscale_post_fields(self.method, self.elapsed_ms, self.width, self.height)


def upscale_post_fields(method: str, elapsed_ms: float, width: int, height: int) -> dict[str, Any]:
    """``UpscaleMethod`` (model file or lanczos|none), ``UpscaleElapsed`` (ms), ``FinalResolution`` (WxH)."""
    return {"UpscaleMethod": str(method), "UpscaleElapsed": round(float(elapsed_ms), 1),
            "FinalResolution": f"{int(width)}x{int(height)}"}


def record_upscale(run_dir: str | os.PathLike[str], result: UpscaleResult) -> dict[str, Any]:
    """Append the stage's ``upscale_done`` event (snake_case fields with units) to the run's events.jsonl."""
    return events.append_event(run_dir, UPSCALE_EVENT, stage="upscale", method=result.method,
                               elapsed_ms=round(result.elapsed_ms, 1),
                               final_resolution=f"{result.width}x{result.height}", frames=result.frames,
                               tile=result.tile, oom_backoffs=result.backoffs, audio_kept=result.audio_kept)


def upscale_video(source: str | os.PathLike[str], target: str | os.PathLike[str], model: Any | None = None,
                  settings: UpscaleSettings | None = None, *, chunk_size: int = DEFAULT_CHUNK,
                  method_name: str | None = None, crf: int = 19, preset: str = "medium",
                  progress: Any = None, run_dir: str | os.PathLike[str] | None = None) -> UpscaleResult:
    """Upscale the video at ``source`` into ``target`` (MP4, H.264), copying its audio.

    model: spandrel ImageModelDescriptor or None (lanczos). method_name: what telemetry calls the
    method (the model's file name; default the model's label or ``lanczos``). progress: a
    ``nodes.comfy.Progress`` or callable taking frames done in each step. run_dir: when given, the
    ``upscale_done`` event is appended to that run's events.jsonl. Alpha does not exist in MP4.
    Raises VideoError for unreadable input, UpscaleModelError for an unusable model.
    """
    info = probe_video(source)
    audio = read_audio(source)
    report = getattr(progress, "update", progress)
    upscaler = Upscaler(model, settings, progress=report)
    started = time.perf_counter()
    written = encode_video(target, upscaler.run(iter_frames(source, chunk_size)), info.fps, audio=audio,
                           crf=crf, preset=preset)
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    result = UpscaleResult(path=written.path, method=method_name or upscaler.method, elapsed_ms=elapsed_ms,
                           width=written.width, height=written.height, frames=written.frames, fps=written.fps,
                           audio_kept=audio is not None, tile=upscaler.plan.tile if upscaler.plan else None,
                           backoffs=upscaler.backoffs)
    if run_dir is not None:
        record_upscale(run_dir, result)
    return result
