"""Which scenes make the film, and the one stream of frames that joins them.

A scene's transition says how it joins the **next** scene. A ``cut`` puts the two back to back. A
``crossfade`` of N frames overlaps them: the last N frames of scene A and the first N of scene B
become N blended frames, so the film is ``sum(lengths) - sum(overlaps)`` frames long. A ``vace``
transition of N frames uses the clip ``transitions/<a>--<b>.mp4`` of exactly N frames in place of
those N blended frames; without such a clip it falls back to the crossfade and says so.

The stream holds one decoded chunk per open file (at most three: scene A, scene B and the VACE clip
while a transition is being made), never a scene, so memory does not depend on the film's length.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..run import ledger
from ..video import iter_frames, probe_video
from ..video.errors import VideoError

CUT, CROSSFADE, VACE = "cut", "crossfade", "vace"
EASINGS = ("linear", "ease-in", "ease-out", "ease-in-out")
READ_CHUNK = 8  # frames decoded at a time from each open file


class RenderError(ValueError):
    """The film cannot be rendered; the message names the scene or setting and the fix."""


@dataclass(frozen=True)
class Segment:
    """One scene as it goes into the film.

    ``frames`` and ``width``/``height`` are read from the scene's file; ``overlap_out`` is how many
    of its last frames the join with the next segment consumes (0 for a cut or the last scene).
    """

    scene_id: str
    path: str  # absolute path of the scene's MP4
    frames: int
    fps: Fraction
    width: int
    height: int
    join: str = CUT  # how it joins the next segment: cut | crossfade | vace | vace->crossfade
    overlap_out: int = 0
    easing: str = "linear"
    clip: str | None = None  # absolute path of the VACE transition clip to the next segment


@dataclass
class FilmPlan:
    """The segments in play order, the film's size and rate, and what the join had to say."""

    segments: list[Segment]
    fps: Fraction
    width: int
    height: int
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # scene ids left out (missing or failed)

    @property
    def frames(self) -> int:
        """Frames of the joined film before interpolation: sum(lengths) - sum(overlaps)."""
        return sum(s.frames for s in self.segments) - sum(s.overlap_out for s in self.segments)

    @property
    def cut_lefts(self) -> set[int]:
        """Film frame indices i where (i, i+1) is a hard cut between two scenes (never blended)."""
        cuts, position = set(), 0
        for segment in self.segments[:-1]:
            position += segment.frames - segment.overlap_out
            if segment.overlap_out == 0:
                cuts.add(position - 1)
        return cuts

    @property
    def transition_method(self) -> str:
        """TransitionMethod for telemetry: the one kind used, ``mixed: a, b`` or ``none`` (one scene)."""
        kinds = list(dict.fromkeys(s.join for s in self.segments[:-1]))
        if not kinds:
            return "none"
        return kinds[0] if len(kinds) == 1 else "mixed: " + ", ".join(kinds)


def ease(weight: float, easing: str) -> float:
    """Blend weight 0..1 of the incoming scene for linear progress ``weight`` 0..1 (smoothstep-style)."""
    if easing == "linear":
        return weight
    if easing == "ease-in":
        return weight * weight
    if easing == "ease-out":
        return 1.0 - (1.0 - weight) ** 2
    if easing == "ease-in-out":
        return weight * weight * (3.0 - 2.0 * weight)
    raise RenderError(f"easing '{easing}' is not one of {', '.join(EASINGS)}")


def crossfade_weights(frames: int, easing: str) -> list[float]:
    """Weights of the incoming scene for the ``frames`` overlap frames: never 0 or 1 (both scenes show)."""
    return [ease((k + 1) / (frames + 1), easing) for k in range(frames)]


def _scene_problem(run: ledger.Run, scene_id: str) -> tuple[str | None, str | None]:
    """(absolute video path, None) for a usable scene, or (None, why not)."""
    record = ledger.read_scene(run, scene_id)
    if record is None:
        return None, "not rendered yet (no scene record in this run)"
    video = record.get("Video") or {}
    if record.get("Success") is not True or video.get("Status") != "ready":
        reason = video.get("Error") or "; ".join(record.get("Errors") or []) or f"status {video.get('Status')}"
        return None, f"failed ({reason})"
    try:
        path = ledger.resolve_in_run(run.run_dir, str(video.get("Path") or ""))
    except ledger.RunError as exc:
        return None, str(exc)
    if not os.path.isfile(path):
        return None, f"its video {video.get('Path')} is missing from the run folder"
    return path, None


def plan_film(run: ledger.Run, scenes: Sequence[Any], *, on_missing: str = "skip") -> FilmPlan:
    """The film from ``scenes`` (ScenePlans of the story as it is now, in play order) and the run's files.

    ``on_missing``: ``skip`` leaves out scenes that are not rendered or failed (a warning each; a cut
    replaces a transition whose partner is gone); ``stop`` raises RenderError naming them.
    """
    if on_missing not in ("skip", "stop"):
        raise RenderError(f"on_missing '{on_missing}' is not one of skip, stop")
    usable: list[tuple[Any, str]] = []
    warnings: list[str] = []
    missing: list[str] = []
    for scene in scenes:
        path, problem = _scene_problem(run, scene.id)
        if problem:
            missing.append(f"scene '{scene.id}' {problem}")
        else:
            usable.append((scene, path))
    if missing and on_missing == "stop":
        raise RenderError("cannot render the whole film: " + "; ".join(missing) +
                          ". Render those scenes again, or set on_missing to 'render what exists'")
    warnings += [f"left out of the film: {text}" for text in missing]
    if not usable:
        raise RenderError(f"run {run.run_id} has no rendered scene to join ({'; '.join(missing) or 'no scenes'}); "
                          "render at least one scene with Scene Save first")

    infos = []
    for scene, path in usable:
        try:
            infos.append(probe_video(path))
        except VideoError as exc:
            raise RenderError(f"scene '{scene.id}': {exc}") from exc
    fps = Fraction(infos[0].fps)
    for (scene, _path), info in zip(usable, infos, strict=True):
        if Fraction(info.fps) != fps:
            raise RenderError(
                f"scene '{scene.id}' plays at {float(info.fps):g} fps but '{usable[0][0].id}' at {float(fps):g} fps; "
                "one film needs one rate: give every scene the same fps in story.json and render it again")
    width, height = infos[0].width, infos[0].height
    for (scene, _path), info in zip(usable, infos, strict=True):
        if (info.width, info.height) != (width, height):
            warnings.append(f"scene '{scene.id}' is {info.width}x{info.height}, the film {width}x{height}: "
                            "resized with Lanczos (render it at the story's size to avoid this)")

    order = [scene.id for scene in scenes]
    segments: list[Segment] = []
    incoming = 0
    for position, ((scene, path), info) in enumerate(zip(usable, infos, strict=True)):
        join, overlap, clip = CUT, 0, None
        transition = scene.transition
        if position + 1 < len(usable):
            following = usable[position + 1][0]
            adjacent = order.index(following.id) == order.index(scene.id) + 1
            if transition.kind != CUT and not adjacent:
                warnings.append(f"scene '{scene.id}': its {transition.kind} led into a scene that is left out; "
                                f"cut to '{following.id}' instead")
            elif transition.kind != CUT:
                next_frames = infos[position + 1].frames
                room = min(info.frames - incoming, next_frames) - 1
                overlap = int(transition.frames)
                if overlap > room:
                    warnings.append(f"scene '{scene.id}': {transition.kind} of {overlap} frames does not fit "
                                    f"(the scenes' files allow {max(room, 0)}); shortened to {max(room, 0)}")
                    overlap = max(room, 0)
                join = transition.kind if overlap else CUT
                if join == VACE:
                    join, clip = _vace_clip(run, scene.id, following.id, overlap, warnings)
        segments.append(Segment(scene.id, path, info.frames, fps, info.width, info.height, join, overlap,
                                transition.easing if overlap else "linear", clip))
        incoming = overlap
    skipped = [scene.id for scene in scenes if scene.id not in {s.scene_id for s in segments}]
    return FilmPlan(segments, fps, width, height, warnings, skipped)


def _vace_clip(run: ledger.Run, from_id: str, to_id: str, overlap: int, warnings: list[str]) -> tuple[str, str | None]:
    """(join kind, clip path) for a VACE transition: the clip when it is there and fits, else the crossfade."""
    path = ledger.transition_path(run, from_id, to_id)
    relative = ledger.relative_path(run, path)
    if not os.path.isfile(path):
        warnings.append(f"vace transition '{from_id}' -> '{to_id}': no clip at {relative}; crossfaded "
                        f"{overlap} frames instead (render the transition with the VACE nodes to use it)")
        return f"{VACE}->{CROSSFADE}", None
    try:
        info = probe_video(path)
    except VideoError as exc:
        warnings.append(f"vace transition '{from_id}' -> '{to_id}': {exc}; crossfaded instead")
        return f"{VACE}->{CROSSFADE}", None
    if info.frames != overlap:
        warnings.append(f"vace transition '{from_id}' -> '{to_id}': {relative} holds {info.frames} frames but the "
                        f"transition overlaps {overlap}; crossfaded instead (render the clip with {overlap} frames)")
        return f"{VACE}->{CROSSFADE}", None
    return VACE, path


# --------------------------------------------------------------------------- the frame stream


def _frames_of(path: str, width: int, height: int) -> Iterator[np.ndarray]:
    """Frames of ``path`` one at a time, [H,W,3] float32 0..1, resized to ``width`` x ``height`` if needed."""
    for chunk in iter_frames(path, READ_CHUNK, as_torch=False):
        if chunk.shape[1:3] != (height, width):
            import torch

            from ..upscale.resample import lanczos_resize

            chunk = lanczos_resize(torch.from_numpy(chunk), width, height).numpy()
        yield from chunk


def _take(frames: Iterator[np.ndarray], what: str) -> np.ndarray:
    try:
        return next(frames)
    except StopIteration:
        raise RenderError(f"{what} ended early; its file changed while rendering, render again") from None


def joined_frames(film: FilmPlan, chunk_size: int = 8) -> Iterator[Any]:
    """The film before interpolation as torch chunks [T,H,W,3] float32 0..1, ``film.frames`` in all.

    Holds one read chunk per open file and one output chunk; nothing else.
    """
    import torch

    buffer = np.empty((chunk_size, film.height, film.width, 3), np.float32)
    filled = 0

    def emit(frame: np.ndarray) -> Iterator[Any]:
        nonlocal filled
        buffer[filled] = frame
        filled += 1
        if filled == chunk_size:
            filled = 0
            yield torch.from_numpy(buffer.copy())

    current = _frames_of(film.segments[0].path, film.width, film.height)
    incoming = 0
    for index, segment in enumerate(film.segments):
        label = f"scene '{segment.scene_id}'"
        for _ in range(segment.frames - incoming - segment.overlap_out):
            yield from emit(_take(current, label))
        if index + 1 < len(film.segments):
            following = film.segments[index + 1]
            upcoming = _frames_of(following.path, film.width, film.height)
            clip = _frames_of(segment.clip, film.width, film.height) if segment.clip else None
            weights = crossfade_weights(segment.overlap_out, segment.easing)
            for weight in weights:
                outgoing = _take(current, label)
                entering = _take(upcoming, f"scene '{following.scene_id}'")
                if clip is not None:
                    yield from emit(_take(clip, f"transition clip {os.path.basename(segment.clip)}"))
                else:
                    yield from emit(outgoing * (1.0 - weight) + entering * weight)
            current.close()
            if clip is not None:
                clip.close()
            current = upcoming
            incoming = segment.overlap_out
    current.close()
    if filled:
        yield torch.from_numpy(buffer[:filled].copy())


def scene_spans(film: FilmPlan) -> list[dict[str, Any]]:
    """Where each scene sits in the joined film: ``{scene, start, end}`` (frames, end exclusive, overlaps shared)."""
    spans, position = [], 0
    for segment in film.segments:
        spans.append({"scene": segment.scene_id, "start": position, "end": position + segment.frames})
        position += segment.frames - segment.overlap_out
    return spans


def audio_samples_for(frames: int, fps: Fraction, sample_rate: int) -> int:
    """Samples of audio covering ``frames`` at ``fps``: ceil(frames / fps * rate)."""
    return math.ceil(Fraction(frames) / Fraction(fps) * int(sample_rate))
