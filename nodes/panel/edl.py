"""CMX 3600 edit decision lists: one cut event per scene, timecodes from the plan's frame counts.

The same layout is written by ``web/js/lib/edl.js`` (the panel's client-side export); both are
checked against the hand-computed lists in ``web/tests/fixtures/edl_cases.json``.

Timecodes are non-drop-frame at the nominal rate (``round(fps)``: 24000/1001 counts as 24), as CMX
3600 knows no fractional rates. The record side starts at 01:00:00:00, the usual programme start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

RECORD_START_HOURS = 1
REEL = "AX"  # "auxiliary source": the clip is named in the FROM CLIP NAME comment below the event


@dataclass(frozen=True)
class EdlEvent:
    """One scene on the timeline: its clip name, its length in frames at ``fps``."""

    clip: str
    frames: int
    fps: Fraction
    comment: str = ""


def nominal_rate(fps: Fraction | float) -> int:
    """Frames per timecode second: the rate rounded (24000/1001 -> 24); at least 1."""
    return max(1, round(Fraction(fps)))


def timecode(frames: int, fps: Fraction | float) -> str:
    """``frames`` from zero as ``HH:MM:SS:FF`` (non-drop-frame) at the nominal rate of ``fps``."""
    if frames < 0:
        raise ValueError(f"frames = {frames} is negative; a timecode counts from 00:00:00:00")
    rate = nominal_rate(fps)
    seconds, frame = divmod(frames, rate)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours:02d}:{minute:02d}:{second:02d}:{frame:02d}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def write_edl(title: str, events: Sequence[EdlEvent], fps: Fraction | float) -> str:
    """The EDL text (CRLF-free, ends with a newline). ``fps`` is the timeline's rate; a scene at
    another rate is converted to the timeline's frames (rounded) on the record side
    (halves round up, as the panel's JS writer does)."""
    rate = Fraction(fps)
    lines = [f"TITLE: {_one_line(title)[:70]}", "FCM: NON-DROP FRAME", ""]
    record = RECORD_START_HOURS * 3600 * nominal_rate(rate)
    for number, event in enumerate(events, start=1):
        if event.frames < 1:
            raise ValueError(f"event {number} ({event.clip}) has {event.frames} frames; it needs at least 1")
        length = event.frames if event.fps == rate else math.floor(event.frames * rate / event.fps + Fraction(1, 2))
        source = (timecode(0, rate), timecode(length, rate))
        recorded = (timecode(record, rate), timecode(record + length, rate))
        lines.append(f"{number:03d}  {REEL:<8} {'V':<5} {'C':<4} {'':<3} {source[0]} {source[1]} "
                     f"{recorded[0]} {recorded[1]}")
        lines.append(f"* FROM CLIP NAME: {_one_line(event.clip)}")
        if event.comment:
            lines.append(f"* COMMENT: {_one_line(event.comment)}")
        lines.append("")
        record += length
    return "\n".join(lines)
