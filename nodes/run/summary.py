"""run-summary.txt: gemDirect1's human-readable run log, one event a line, ``[HH:mm:ss] <message>``.

Every line format lives here, with the parser that reads it back (the validator compares the parsed
numbers with artifact-metadata.json). Times are UTC, like the metadata's timestamps::

    [21:45:01] Story ready: lighthouse (scenes=3)
    [21:45:01] Preset: standard (832x480, 49 frames, cfg=5.2, steps=16)
    [21:46:10] [Scene a] Telemetry: DurationSeconds=68.21s | VRAMBeforeMB=1234.00MB | VRAMAfterMB=1300.50MB | \
VRAMDeltaMB=66.50MB | gpu=NVIDIA GeForce RTX 4090 | FLF2V=keyframe | Bookend=n/a (none)
    [21:46:10] [Scene a] WARNING: scenes[0].cfg = 6.5 is 6 or more ...
    [21:52:40] Post: interpolation=rife-4.22 (5120ms) upscale=lanczos (830ms) final=1664x960@32fps
    [21:52:41] Final video: final/lighthouse.mp4 (385 frames, 12.03s)

MB in the Telemetry line have 2 decimals and the Bookend score 1, so they agree with the metadata
within the validator's tolerances (0.01 MB, 0.1 points). A first scene has no bookend: ``n/a (none)``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

NO_BOOKEND = "n/a"

_LINE = re.compile(r"^\[(?P<time>\d{2}:\d{2}:\d{2})\] (?:\[Scene (?P<scene>[^\]]+)\] )?(?P<message>.*)$")
_NUMBER = r"-?\d+(?:\.\d+)?"
_PATTERNS = {
    "story": re.compile(r"^Story ready: (?P<id>\S+) \(scenes=(?P<scenes>\d+)\)$"),
    "preset": re.compile(
        rf"^Preset: (?P<name>.+) \((?P<resolution>\d+x\d+), (?P<frames>\d+) frames, cfg=(?P<cfg>{_NUMBER}), "
        r"steps=(?P<steps>\d+)\)$"),
    "telemetry": re.compile(
        rf"^Telemetry: DurationSeconds=(?P<duration>{_NUMBER})s \| VRAMBeforeMB=(?P<before>{_NUMBER})MB \| "
        rf"VRAMAfterMB=(?P<after>{_NUMBER})MB \| VRAMDeltaMB=(?P<delta>{_NUMBER})MB \| gpu=(?P<gpu>.*) \| "
        rf"FLF2V=(?P<flf2v>\S+) \| Bookend=(?P<score>{_NUMBER}|n/a) \((?P<status>[a-z]+)\)$"),
    "warning": re.compile(r"^WARNING: (?P<text>.*)$"),
    "error": re.compile(r"^ERROR: (?P<text>.*)$"),
    "post": re.compile(
        rf"^Post: interpolation=(?P<interpolation>\S+) \((?P<interpolation_ms>{_NUMBER})ms\) "
        rf"upscale=(?P<upscale>.+) \((?P<upscale_ms>{_NUMBER})ms\) "
        rf"final=(?P<resolution>\d+x\d+)@(?P<fps>{_NUMBER})fps$"),
    "final": re.compile(rf"^Final video: (?P<path>.+) \((?P<frames>\d+) frames, (?P<seconds>{_NUMBER})s\)$"),
}
_FLOATS = {"duration", "before", "after", "delta", "cfg", "interpolation_ms", "upscale_ms", "fps", "seconds"}
_INTS = {"scenes", "frames", "steps"}


# --------------------------------------------------------------------------- formatting


def clock(iso_time: str | None = None) -> str:
    """``HH:mm:ss`` (UTC) of an ISO-8601 time, or of now."""
    if iso_time:
        moment = _dt.datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(_dt.timezone.utc)
    else:
        moment = _dt.datetime.now(_dt.timezone.utc)
    return moment.strftime("%H:%M:%S")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _field(text: Any) -> str:
    # A value inside the ' | '-separated Telemetry line may not contain the separator.
    return _one_line(text).replace("|", "/") or "unknown"


def fps_text(fps: float | Fraction | int) -> str:
    """Frame rate for a summary line: 16 -> ``16``, 24000/1001 -> ``23.976``."""
    return f"{float(fps):.3f}".rstrip("0").rstrip(".")


def _line(time: str, message: str, scene: str | None = None) -> str:
    return f"[{time}] [Scene {scene}] {message}" if scene else f"[{time}] {message}"


def story_line(time: str, story_id: str, scene_count: int) -> str:
    return _line(time, f"Story ready: {story_id} (scenes={int(scene_count)})")


def preset_line(time: str, name: str, width: int, height: int, frames: int, cfg: float, steps: int) -> str:
    return _line(time, f"Preset: {_one_line(name)} ({int(width)}x{int(height)}, {int(frames)} frames, "
                       f"cfg={float(cfg):g}, steps={int(steps)})")


def telemetry_line(time: str, scene_id: str, *, duration_s: float, vram_before_mb: float, vram_after_mb: float,
                   vram_delta_mb: float, gpu: str, flf2v: str, bookend_score: float | None,
                   bookend_status: str | None) -> str:
    """The scene's Telemetry line; MB with 2 decimals, the bookend score with 1 (``n/a (none)`` if absent)."""
    bookend = (f"{NO_BOOKEND} (none)" if bookend_score is None
               else f"{float(bookend_score):.1f} ({bookend_status or 'none'})")
    return _line(time, (
        f"Telemetry: DurationSeconds={float(duration_s):.2f}s | VRAMBeforeMB={float(vram_before_mb):.2f}MB | "
        f"VRAMAfterMB={float(vram_after_mb):.2f}MB | VRAMDeltaMB={float(vram_delta_mb):.2f}MB | gpu={_field(gpu)} | "
        f"FLF2V={_field(flf2v)} | Bookend={bookend}"), scene_id)


def warning_line(time: str, text: str, scene: str | None = None) -> str:
    return _line(time, f"WARNING: {_one_line(text)}", scene)


def error_line(time: str, text: str, scene: str | None = None) -> str:
    return _line(time, f"ERROR: {_one_line(text)}", scene)


def post_line(time: str, *, interpolation: str, interpolation_ms: float, upscale: str, upscale_ms: float,
              resolution: str, fps: float) -> str:
    return _line(time, f"Post: interpolation={_one_line(interpolation)} ({float(interpolation_ms):.0f}ms) "
                       f"upscale={_one_line(upscale)} ({float(upscale_ms):.0f}ms) "
                       f"final={resolution}@{fps_text(fps)}fps")


def final_line(time: str, path: str, frames: int, seconds: float) -> str:
    return _line(time, f"Final video: {_one_line(path)} ({int(frames)} frames, {float(seconds):.2f}s)")


def scene_lines(scene: Mapping[str, Any]) -> list[str]:
    """Telemetry, WARNING and ERROR lines of one artifact-metadata ``Scenes[]`` entry."""
    telemetry = scene["Telemetry"]
    gpu = telemetry["GPU"]
    bookend = telemetry.get("BookendSimilarity") or {}
    time = clock(telemetry["QueueEnd"])
    scene_id = scene["SceneId"]
    lines = [telemetry_line(
        time, scene_id, duration_s=telemetry["DurationSeconds"], vram_before_mb=gpu["VramBeforeMB"],
        vram_after_mb=gpu["VramAfterMB"], vram_delta_mb=gpu["VramDeltaMB"], gpu=gpu["Name"],
        flf2v=telemetry["FLF2VSource"], bookend_score=bookend.get("Score"), bookend_status=bookend.get("Status"))]
    lines += [warning_line(time, text, scene_id) for text in scene.get("Warnings", ())]
    lines += [error_line(time, text, scene_id) for text in scene.get("Errors", ())]
    return lines


def post_lines(post: Mapping[str, Any], time: str) -> list[str]:
    """The Post and Final video lines of an artifact-metadata ``Post`` block."""
    return [
        post_line(time, interpolation=post["InterpolationMethod"], interpolation_ms=post["InterpolationElapsed"],
                  upscale=post["UpscaleMethod"], upscale_ms=post["UpscaleElapsed"],
                  resolution=post["FinalResolution"], fps=post["FinalFPS"]),
        final_line(time, post["FinalPath"], post["FinalFrames"], post["FinalDurationSeconds"]),
    ]


def render_summary(lines: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class SummaryLine:
    """One parsed line. ``kind``: story, preset, telemetry, warning, error, post, final or other."""

    number: int  # 1-based line number
    time: str
    kind: str
    scene: str | None
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_line(line: str, number: int = 0) -> SummaryLine | None:
    """Parse one ``[HH:mm:ss] ...`` line; None if it does not start with a time stamp."""
    match = _LINE.match(line.rstrip("\r\n"))
    if match is None:
        return None
    message, scene = match["message"], match["scene"]
    for kind, pattern in _PATTERNS.items():
        found = pattern.match(message)
        if found:
            values: dict[str, Any] = {}
            for key, value in found.groupdict().items():
                if key in _FLOATS:
                    values[key] = float(value)
                elif key in _INTS:
                    values[key] = int(value)
                elif key == "score":
                    values[key] = None if value == NO_BOOKEND else float(value)
                else:
                    values[key] = value
            return SummaryLine(number, match["time"], kind, scene, message, values)
    return SummaryLine(number, match["time"], "other", scene, message)


def parse_summary(text: str) -> list[SummaryLine]:
    """Every time-stamped line of a run-summary.txt, in order (other lines are ignored)."""
    parsed = (parse_line(line, number) for number, line in enumerate(text.splitlines(), start=1))
    return [line for line in parsed if line is not None]


def telemetry_by_scene(lines: Iterable[SummaryLine]) -> dict[str, SummaryLine]:
    """The last Telemetry line of each scene id."""
    return {line.scene: line for line in lines if line.kind == "telemetry" and line.scene}
