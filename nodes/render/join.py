"""Which scenes make the film, and the one stream of frames that joins them.

A scene's transition says how it joins the **next** scene. A ``cut`` puts the two back to back. A
``crossfade`` of N frames overlaps them: the last N frames of scene A and the first N of scene B
become N blended frames. A ``vace`` transition uses the fresh transition of the pair that VACE
Splice recorded in the run (``transitions/<a>--<b>.json`` + its lossless master, see
``vace.transitions``): A's last ``Tail`` frames and B's first ``Head`` frames are replaced by the
clip's frames, as the record's layout says. Without a fresh one (missing, stale, made for another
chaining, or too long for the scenes) it falls back to the crossfade of N frames (a chained pair:
continue) and says why.

A **chained** pair (B started on A's saved last frame, as B's record proves: :func:`chain_proof`) is
joined by ``continue`` whatever the story asks: B's first frame, a copy of A's last, is dropped and
nothing is blended. A cut would show that frame twice (a stutter); a crossfade would blend A[n-k+i]
with B[i] = A[n-1+i], frames k-1 apart (ghosting, a jump back in time). Either is replaced, with a
warning; a VACE clip made for the pair is still used. So the film is
``sum(lengths) - sum(overlaps) - sum(dropped) + sum(VACE clip frames)`` frames long.

Scenes are read from their lossless masters (``scenes/<id>.mkv``, see ``video.master``); a scene
saved without one is read from its H.264 preview, with a warning.

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

from ..run import fingerprint, ledger
from ..video.errors import VideoError
from ..video.master import iter_source_frames, probe_source

CUT, CONTINUE, CROSSFADE, VACE = "cut", "continue", "crossfade", "vace"
SOURCE_MASTER, SOURCE_PREVIEW = "master", "preview"
EASINGS = ("linear", "ease-in", "ease-out", "ease-in-out")
READ_CHUNK = 8  # frames decoded at a time from each open file


class RenderError(ValueError):
    """The film cannot be rendered; the message names the scene or setting and the fix."""


@dataclass(frozen=True)
class Segment:
    """One scene as it goes into the film.

    ``frames`` and ``width``/``height`` are read from the scene's file; ``overlap_out`` is how many
    of its last frames the join with the next segment consumes (0 for a cut, a continue or the last
    scene); ``skip_in`` how many of its first frames a ``continue`` from the previous segment drops.
    """

    scene_id: str
    path: str  # absolute path of what is read: the master (.mkv or PNG folder), else the MP4 preview
    frames: int
    fps: Fraction
    width: int
    height: int
    join: str = CUT  # how it joins the next segment: cut | continue | crossfade | vace | vace->crossfade
    overlap_out: int = 0
    easing: str = "linear"
    clip: str | None = None  # absolute path of the VACE transition clip to the next segment
    skip_in: int = 0
    asked: str = CUT  # the transition the story asks for to the next segment
    reason: str | None = None  # why ``join`` is not ``asked`` (or needs saying), for telemetry
    source: str = SOURCE_MASTER  # master | preview
    clip_frames: int = 0  # frames of the VACE clip put in after this segment (its tail is ``overlap_out``)
    clip_relative: str | None = None  # the clip's path relative to the run folder, for telemetry


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
        """Frames of the joined film before interpolation: sum(lengths) - sum(overlaps) - sum(dropped) + sum(VACE
        clip frames)."""
        return sum(s.frames - s.overlap_out - s.skip_in + s.clip_frames for s in self.segments)

    def join_starts(self) -> list[int]:
        """For each join, the film frame where it begins: its first blended frame, or for a cut or a
        continue the first frame of the next scene shown, for a VACE clip its first frame."""
        starts, position = [], 0
        for segment in self.segments[:-1]:
            position += segment.frames - segment.skip_in - segment.overlap_out
            starts.append(position)
            position += segment.clip_frames
        return starts

    @property
    def cut_lefts(self) -> set[int]:
        """Film frame indices i where (i, i+1) is a hard cut between two scenes (never blended).

        A continue is not a cut: B carries on from A's last frame, so interpolation may run across it.
        """
        return {start - 1 for segment, start in zip(self.segments, self.join_starts(), strict=False)
                if segment.join == CUT}

    def join_records(self) -> list[dict[str, Any]]:
        """``Post.Joins``: ``{From, To, Asked, Used, Frames, Reason, FilmStart}`` for each join in film order, and
        for a VACE clip ``Clip`` (its master, relative to the run) and ``Inserted`` (its frames)."""
        records = []
        for a, b, start in zip(self.segments, self.segments[1:], self.join_starts(), strict=False):
            frames = b.skip_in if a.join == CONTINUE else a.overlap_out + (b.skip_in if a.clip else 0)
            record = {"From": a.scene_id, "To": b.scene_id, "Asked": a.asked, "Used": a.join, "Frames": frames,
                      "Reason": a.reason, "FilmStart": start}
            if a.asked == VACE:
                record.update(Clip=a.clip_relative, Inserted=a.clip_frames if a.clip else None)
            records.append(record)
        return records

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


def _scene_source(run: ledger.Run, scene_id: str) -> tuple[dict | None, str | None, str, str | None]:
    """``(record, absolute path to read, master|preview, None)`` for a usable scene, else ``(.., None, .., why not)``.

    The record's ``Video.Master`` is read when it is there; the MP4 preview otherwise (the caller warns).
    """
    record = ledger.read_scene(run, scene_id)
    if record is None:
        return None, None, SOURCE_PREVIEW, "not rendered yet (no scene record in this run)"
    video = record.get("Video") or {}
    if record.get("Success") is not True or video.get("Status") != "ready":
        reason = video.get("Error") or "; ".join(record.get("Errors") or []) or f"status {video.get('Status')}"
        return record, None, SOURCE_PREVIEW, f"failed ({reason})"
    try:
        master = ledger.resolve_in_run(run.run_dir, str(video["Master"])) if video.get("Master") else None
        path = ledger.resolve_in_run(run.run_dir, str(video.get("Path") or ""))
    except ledger.RunError as exc:
        return record, None, SOURCE_PREVIEW, str(exc)
    if master is not None and os.path.exists(master):
        return record, master, SOURCE_MASTER, None
    if not os.path.isfile(path):
        return record, None, SOURCE_PREVIEW, f"its video {video.get('Path')} is missing from the run folder"
    return record, path, SOURCE_PREVIEW, None


def _preview_warning(scene_id: str, record: dict) -> str:
    video = record.get("Video") or {}
    why = (f"its lossless master {video['Master']} is missing" if video.get("Master") else
           "it was saved without a lossless master (Scene Save's lossless_master off)")
    return (f"scene '{scene_id}': {why}, so the film is made from its H.264 preview {video.get('Path')} "
            "(lossy frames encoded twice); save the scene again with lossless_master on to avoid it")


def chain_proof(run: ledger.Run, previous_id: str, record: dict) -> tuple[bool, str | None]:
    """Whether the scene of ``record`` started on scene ``previous_id``'s saved last frame as it is now.

    ``(True, None)``: chained (its ``FLF2VSource`` is ``previous-scene``, its chain facts name
    ``previous_id``, and the recorded start file and start hash match that scene's last frame now:
    the fingerprint's ``StartSha256``, compared as staleness compares it). ``(False, None)``: it did
    not chain. ``(False, why)``: it chained, but not to this frame (the story was reordered, or
    ``previous_id`` was rendered again since).
    """
    telemetry = record.get("Telemetry") or {}
    if telemetry.get("FLF2VSource") != "previous-scene":
        return False, None
    chain = (record.get("Extra") or {}).get("Chain") or {}
    scene_id = record.get("SceneId")
    named = chain.get("PreviousScene")
    if named != previous_id:
        return False, (f"'{scene_id}' was chained to {f'scene {named!r}' if named else 'an unrecorded scene'}, "
                       f"not to '{previous_id}'")
    last = ledger.scene_paths(run, previous_id).last_frame
    expected = ledger.relative_path(run, last)
    start_file = chain.get("StartFile")
    if start_file and start_file.replace("\\", "/") != expected:
        return False, f"'{scene_id}' started from {start_file}, not from {expected}"
    width, height = (int(value) for value in str(record.get("Resolution") or "0x0").split("x"))
    try:
        same = fingerprint.starts_on(record, last, width, height)
    except (OSError, ValueError, VideoError):
        return False, f"'{previous_id}''s last frame {expected} is missing or unreadable"
    if same is False:
        return False, (f"'{previous_id}' was rendered again after '{scene_id}' started on its last frame "
                       f"({expected} changed)")
    return True, None


def _probe(scene_id: str, path: str) -> Any:
    try:
        return probe_source(path)
    except VideoError as exc:
        raise RenderError(f"scene '{scene_id}': {exc}") from exc


def plan_film(run: ledger.Run, scenes: Sequence[Any], *, on_missing: str = "skip") -> FilmPlan:
    """The film from ``scenes`` (ScenePlans of the story as it is now, in play order) and the run's files.

    ``on_missing``: ``skip`` leaves out scenes that are not rendered or failed (a warning each; a cut
    replaces a transition whose partner is gone); ``stop`` raises RenderError naming them.
    """
    if on_missing not in ("skip", "stop"):
        raise RenderError(f"on_missing '{on_missing}' is not one of skip, stop")
    usable: list[tuple[Any, str, str, dict]] = []
    warnings: list[str] = []
    missing: list[str] = []
    for scene in scenes:
        record, path, source, problem = _scene_source(run, scene.id)
        if problem:
            missing.append(f"scene '{scene.id}' {problem}")
        else:
            usable.append((scene, path, source, record))
    if missing and on_missing == "stop":
        raise RenderError("cannot render the whole film: " + "; ".join(missing) +
                          ". Render those scenes again, or set on_missing to 'render what exists'")
    warnings += [f"left out of the film: {text}" for text in missing]
    if not usable:
        raise RenderError(f"run {run.run_id} has no rendered scene to join ({'; '.join(missing) or 'no scenes'}); "
                          "render at least one scene with Scene Save first")
    warnings += [_preview_warning(scene.id, record) for scene, _p, source, record in usable
                 if source == SOURCE_PREVIEW]

    infos = [_probe(scene.id, path) for scene, path, _source, _record in usable]
    fps = Fraction(infos[0].fps)
    for (scene, *_rest), info in zip(usable, infos, strict=True):
        if Fraction(info.fps) != fps:
            raise RenderError(
                f"scene '{scene.id}' plays at {float(info.fps):g} fps but '{usable[0][0].id}' at {float(fps):g} fps; "
                "one film needs one rate: give every scene the same fps in story.json and render it again")
    width, height = infos[0].width, infos[0].height
    for (scene, *_rest), info in zip(usable, infos, strict=True):
        if (info.width, info.height) != (width, height):
            warnings.append(f"scene '{scene.id}' is {info.width}x{info.height}, the film {width}x{height}: "
                            "resized with Lanczos (render it at the story's size to avoid this)")

    order = [scene.id for scene in scenes]
    segments: list[Segment] = []
    known: dict[str, Any] = {}

    def states() -> dict[str, Any]:  # the scenes' freshness, computed once, only when a vace join asks
        if not known:
            from ..run.freshness import scene_states

            known.update({state.scene: state for state in scene_states(run, scenes)})
        return known

    incoming = skip = 0  # frames of this segment's head taken by the previous join (overlap or dropped)
    for position, ((scene, path, source, _record), info) in enumerate(zip(usable, infos, strict=True)):
        transition = scene.transition
        join, overlap, clip, reason, next_skip = CUT, 0, None, None, 0
        if position + 1 < len(usable):
            following, _p, _s, following_record = usable[position + 1]
            adjacent = order.index(following.id) == order.index(scene.id) + 1
            chained, not_proven = chain_proof(run, scene.id, following_record) if adjacent else (False, None)
            if not_proven:
                warnings.append(f"scene '{following.id}' is recorded as chained but is not joined as chained: "
                                f"{not_proven}; joined as the story asks ({transition.kind}). Render "
                                f"'{following.id}' again to chain it to '{scene.id}' as it is now")
            if not adjacent:
                if transition.kind != CUT:
                    reason = f"'{scene.id}''s {transition.kind} led into a scene that is left out"
                    warnings.append(f"scene '{scene.id}': its {transition.kind} led into a scene that is left out; "
                                    f"cut to '{following.id}' instead")
            else:
                join, overlap, clip, reason, next_skip = _join_pair(
                    run, scene, following, transition, info.frames - incoming - skip,
                    infos[position + 1].frames, chained, warnings, states)
                if not_proven:
                    reason = f"not joined as chained: {not_proven}" + (f"; {reason}" if reason else "")
        segments.append(Segment(scene.id, path, info.frames, fps, info.width, info.height, join, overlap,
                                transition.easing if overlap and clip is None else "linear",
                                clip.path if clip else None, skip, transition.kind, reason, source,
                                clip.frames if clip else 0, clip.relative if clip else None))
        incoming, skip = (0 if clip else overlap), next_skip
    skipped = [scene.id for scene in scenes if scene.id not in {s.scene_id for s in segments}]
    return FilmPlan(segments, fps, width, height, warnings, skipped)


@dataclass(frozen=True)
class _Clip:
    """A fresh VACE transition that fits: its master, its frames, and the scene frames it replaces."""

    path: str
    relative: str
    frames: int
    tail: int  # A's last frames it replaces
    head: int  # B's first frames it replaces


def _join_pair(run: ledger.Run, scene: Any, following: Any, transition: Any, available: int, next_frames: int,
               chained: bool, warnings: list[str],
               states: Any = None) -> tuple[str, int, _Clip | None, str | None, int]:
    """``(join, overlap, VACE clip, reason, frames of the next scene dropped)`` for two adjacent scenes.

    ``available``: this scene's frames not yet taken by the previous join; ``next_frames``: the next
    scene's frames. For a VACE clip ``overlap`` is A's tail and the frames dropped B's head. ``states``:
    a callable giving the run's SceneStates by id (for the transition's freshness). Appends the
    warnings the choice needs.
    """
    asked, pair = transition.kind, f"'{scene.id}' -> '{following.id}'"
    reason = None
    if asked == VACE:
        clip, problem = _vace_clip(run, scene, following, available, next_frames, chained, states)
        if clip is not None:
            return VACE, clip.tail, clip, None, clip.head
        warnings.append(problem)
        reason = problem
    room = min(available, next_frames) - 1
    if chained:
        if next_frames < 2:
            reason = f"'{following.id}' has one frame: dropping it would leave nothing; cut instead of continue"
            warnings.append(f"{pair}: chained, but {reason}")
            return CUT, 0, None, reason, 0
        why = {CUT: "a cut would show that frame twice (a stutter)",
               CROSSFADE: "a crossfade would blend frames that lie far apart in time (ghosting)",
               VACE: "there is no usable VACE clip, and its crossfade fallback would blend frames that lie far "
                     "apart in time (ghosting)"}[asked]
        reason = (f"'{following.id}' started on '{scene.id}''s saved last frame (chained): its first frame is "
                  f"dropped, nothing blended; {why}") + (f" ({reason})" if reason else "")
        warnings.append(f"{pair}: {asked} asked for a chained pair, joined by continue instead: {reason}")
        return CONTINUE, 0, None, reason, 1
    if asked == CUT:
        return CUT, 0, None, None, 0
    overlap = int(transition.frames)
    if overlap > room:
        shortened = f"{asked} of {overlap} frames does not fit (the scenes' files allow {max(room, 0)})"
        warnings.append(f"scene '{scene.id}': {shortened}; shortened to {max(room, 0)}")
        reason = (reason + "; " if reason else "") + f"{shortened}; shortened to {max(room, 0)}"
        overlap = max(room, 0)
    if not overlap:
        return CUT, 0, None, reason, 0
    if asked == VACE:
        return f"{VACE}->{CROSSFADE}", overlap, None, reason, 0
    return CROSSFADE, overlap, None, reason, 0


def _vace_clip(run: ledger.Run, scene: Any, following: Any, available: int, next_frames: int, chained: bool,
               states: Any) -> tuple[_Clip | None, str | None]:
    """``(clip, None)`` for a fresh VACE transition of the pair that fits, else ``(None, what is wrong)``."""
    from ..vace import transitions

    pair = f"vace transition '{scene.id}' -> '{following.id}'"
    fallback = f"crossfaded {scene.transition.frames} frames instead" if not chained else "continued instead"
    state = transitions.transition_state(run, 0, scene, following, states() if states else {})
    if state.state == transitions.MISSING:
        return None, (f"{pair}: {'; '.join(state.reasons)}; {fallback} (make it with VACE Prep + VACE Splice: "
                      "the panel's Generate queues every transition)")
    if state.state == transitions.STALE:
        return None, (f"{pair} is stale: {'; '.join(state.reasons)}; {fallback} (the panel's Regenerate stale "
                      "transitions makes it again)")
    record = transitions.read_transition(run, scene.id, following.id) or {}
    layout = record.get("Layout") or {}
    tail, head = int(layout.get("Tail") or 0), int(layout.get("Head") or 0)
    if bool(layout.get("Chained")) != chained:
        made = "a chained" if layout.get("Chained") else "an unchained"
        return None, f"{pair} was made for {made} pair, the scenes now are not; {fallback} (make it again)"
    if tail > available - 1 or head > next_frames - 1:
        return None, (f"{pair} replaces {tail} + {head} frames, the scenes' files allow {available - 1} + "
                      f"{next_frames - 1}; {fallback} (lower context/replace frames or lengthen the scenes)")
    relative = str((record.get("Video") or {}).get("Master"))
    path = ledger.resolve_in_run(run.run_dir, relative)
    try:
        info = probe_source(path)
    except VideoError as exc:
        return None, f"{pair}: {exc}; {fallback}"
    if info.frames != int(record.get("Frames") or -1):
        return None, (f"{pair}: {relative} holds {info.frames} frames, its record says {record.get('Frames')}; "
                      f"{fallback} (make it again)")
    return _Clip(path, relative, info.frames, tail, head), None


# --------------------------------------------------------------------------- the frame stream


def _frames_of(path: str, width: int, height: int) -> Iterator[np.ndarray]:
    """Frames of ``path`` (a master or a video) one at a time, [H,W,3] float32 0..1, resized to ``width`` x
    ``height`` if needed."""
    for chunk in iter_source_frames(path, READ_CHUNK, as_torch=False):
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
            for _ in range(following.skip_in):  # a continue's repeated frame, or the head a VACE clip replaces
                _take(upcoming, f"scene '{following.scene_id}'")
            if segment.clip:  # A's tail is replaced: not read, the clip's frames go in
                clip = _frames_of(segment.clip, film.width, film.height)
                for _ in range(segment.clip_frames):
                    yield from emit(_take(clip, f"transition clip {os.path.basename(segment.clip)}"))
                clip.close()
            for weight in crossfade_weights(0 if segment.clip else segment.overlap_out, segment.easing):
                outgoing = _take(current, label)
                entering = _take(upcoming, f"scene '{following.scene_id}'")
                yield from emit(outgoing * (1.0 - weight) + entering * weight)
            current.close()
            current = upcoming
            incoming = (0 if segment.clip else segment.overlap_out) + following.skip_in
    current.close()
    if filled:
        yield torch.from_numpy(buffer[:filled].copy())


def scene_spans(film: FilmPlan) -> list[dict[str, Any]]:
    """Where each scene sits in the joined film: ``{scene, start, end}`` (frames, end exclusive, overlaps
    shared; a scene continued from the previous one starts after its dropped first frame)."""
    spans, position = [], 0
    for segment in film.segments:
        spans.append({"scene": segment.scene_id, "start": position, "end": position + segment.frames - segment.skip_in})
        position += segment.frames - segment.skip_in - segment.overlap_out + segment.clip_frames
    return spans


def audio_samples_for(frames: int, fps: Fraction, sample_rate: int) -> int:
    """Samples of audio covering ``frames`` at ``fps``: ceil(frames / fps * rate)."""
    return math.ceil(Fraction(frames) / Fraction(fps) * int(sample_rate))
