"""The story render: one streamed pass from a run's saved scenes to the finished film and its telemetry.

    scenes/<id>.mkv masters (story's current order; the MP4 preview where a scene has no master)
        --join (cut, continue, crossfade, VACE clip)--> [T,H,W,3] chunks at the scenes' fps
        --interpolate (RIFE or flow, never across a hard cut)--> chunks at the target fps
        --upscale (model or Lanczos)--> chunks at the target size
        --encode (H.264 + AAC, atomic)--> final/<story-id>.mp4

Every stage is an iterator over chunks, so the pass holds a few chunks whatever the film's length.
The final file is written under a temporary name and renamed when complete: an interruption or a
crash leaves the previous film and its telemetry as they were. After the film: the Post record,
the consolidated telemetry (artifact-metadata.json, run-summary.txt, latest-run.json) and the
validator's verdict on the run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .. import comfy
from ..run import ledger
from ..run.atomic import remove_stale_temporaries
from ..timebase import parse_fps
from .join import FilmPlan, RenderError, audio_samples_for, joined_frames, plan_film

log = logging.getLogger("gemdirect")

INTERPOLATION_MODES = ("off", "flow", "rife")
BATCH_SIZE = 4  # interpolation jobs per model call (halved on out of memory)
AUDIO_MODES = ("auto", "off")
ON_STALE_MODES = ("warn", "stop")
RENDER_EVENT = "render"


@dataclass(frozen=True)
class RenderSettings:
    """How the film is made.

    interpolation: ``off``, ``flow`` (weightless optical flow) or ``rife`` (needs a RIFE model).
    target_fps: the film's rate after interpolation (None or the scenes' rate: no interpolation).
    upscale: an ``upscale.sizing.OutputSize`` (None: the scenes' size). A model, when given, upscales;
    else Lanczos.
    on_missing: ``skip`` (render the scenes that exist, warning for each left out) or ``stop``.
    audio: ``auto`` (the AUDIO input, else the story's soundtrack, else none) or ``off``.
    on_stale: ``warn`` (render, one warning per stale scene) or ``stop`` (RenderError naming them).
    chunk_size: frames per chunk through the pass. crf / x264_preset: the final encode's quality.
    """

    interpolation: str = "off"
    target_fps: Fraction | None = None
    upscale: Any = None
    on_missing: str = "skip"
    audio: str = "auto"
    chunk_size: int = 8
    crf: int = 19
    x264_preset: str = "medium"
    on_stale: str = "warn"
    rife_scale: float = 1.0  # RIFE estimates motion at this fraction of the frame size (0.5 for 4K)
    ensemble: bool = False  # RIFE 4.6-4.20: also run the swapped pair and average
    interpolation_fallback: str | None = None  # why the method differs from the preset's (Post.InterpolationFallback)
    upscale_fallback: str | None = None  # why the upscale method differs from the preset's (Post.UpscaleFallback)

    def __post_init__(self) -> None:
        if self.on_stale not in ON_STALE_MODES:
            raise RenderError(f"on_stale '{self.on_stale}' is not one of {', '.join(ON_STALE_MODES)}")
        if self.interpolation not in INTERPOLATION_MODES:
            raise RenderError(f"interpolation '{self.interpolation}' is not one of {', '.join(INTERPOLATION_MODES)}")
        if self.audio not in AUDIO_MODES:
            raise RenderError(f"audio '{self.audio}' is not one of {', '.join(AUDIO_MODES)}")
        if self.chunk_size < 1:
            raise RenderError(f"chunk_size = {self.chunk_size} must be at least 1 (8 is a good default)")


@dataclass
class RenderResult:
    """What a render made: the final file (probed back), its Post record, the plan and the verdict."""

    path: str
    post: dict[str, Any]
    film: FilmPlan
    info: Any  # video.VideoInfo of the final file
    audio_source: str
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the validator's, empty when the run is valid
    elapsed_s: float = 0.0
    memory: list[str] = field(default_factory=list)  # what each post stage asked ComfyUI to free (vram.room)

    def describe(self) -> str:
        """A few lines for the node's text output and the command line."""
        post = self.post
        order = " -> ".join(f"{s.scene_id}" + (f" (vace clip {s.clip_frames}f)" if s.clip else
                                                f" ({s.join} {s.overlap_out}f)" if s.overlap_out else
                                                " (continue)" if s.join == "continue" else "")
                            for s in self.film.segments)
        previews = [s.scene_id for s in self.film.segments if s.source != "master"]
        lines = [
            f"final: {self.path}",
            f"{post['FinalFrames']} frames, {post['FinalResolution']} @ {post['FinalFPS']:g} fps, "
            f"{post['FinalDurationSeconds']:.2f} s, audio: {self.audio_source}; rendered in {self.elapsed_s:.1f} s",
            f"scenes: {order}",
            "read from: " + ("lossless masters" if not previews else
                             f"H.264 previews for {', '.join(previews)} (no lossless master), masters for the rest"),
            f"interpolation: {post['InterpolationMethod']} ({post['InterpolationElapsed']:.0f} ms), "
            f"upscale: {post['UpscaleMethod']} ({post['UpscaleElapsed']:.0f} ms), "
            f"transitions: {post['TransitionMethod']}",
        ]
        lines += [f"memory: {text}" for text in self.memory]
        lines += [f"WARNING: {text}" for text in self.warnings]
        if self.problems:
            lines.append(f"validator: {len(self.problems)} problem(s)")
            lines += [f"  {problem}" for problem in self.problems]
        else:
            lines.append("validator: the run keeps the telemetry contract")
        return "\n".join(lines)


class _Timed:
    """An iterator that adds up the seconds spent producing its items (the stage and everything before it)."""

    def __init__(self, items: Iterable[Any]):
        self._items = iter(items)
        self.seconds = 0.0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        started = time.perf_counter()
        try:
            return next(self._items)
        finally:
            self.seconds += time.perf_counter() - started


class SceneCutGuard:
    """Wraps an interpolator so a frame between two scenes joined by a hard cut is never a blend.

    ``cut_lefts``: film frame indices i where (i, i+1) is a cut. Such frames copy the nearer source
    frame (a tie takes the earlier), as the interpolation engine does for cuts it detects itself.
    """

    def __init__(self, inner: Any, cut_lefts: Iterable[int]):
        self.inner = inner
        self.method = inner.method
        self.cut_lefts = frozenset(cut_lefts)
        self.held = 0  # frames copied at scene cuts
        if hasattr(inner, "make_room"):  # the engine's out-of-memory back-off frees memory through it
            self.make_room = inner.make_room

    def run(self, jobs: list[Any]) -> Any:
        import torch

        out: list[Any] = [None] * len(jobs)
        blend = [i for i, job in enumerate(jobs) if job.left not in self.cut_lefts]
        for i, job in enumerate(jobs):
            if job.left in self.cut_lefts:
                out[i] = (job.frame_a if job.t <= 0.5 else job.frame_b).float()
                self.held += 1
        if blend:
            made = self.inner.run([jobs[i] for i in blend])
            for slot, frame in zip(blend, made.unbind(0), strict=True):
                out[slot] = frame
        return torch.stack(out)


# --------------------------------------------------------------------------- inputs


def current_story(run: ledger.Run, story: Any | None = None) -> Any:
    """The story as it is on disk now (a LoadedStory), so a reordered timeline renders reordered.

    From the STORY input's file when given, else from the file the run recorded. RenderError when the
    file is gone or belongs to another story.
    """
    from ..story.load import StoryError
    from ..story.plan import load_and_plan

    info = ledger.story_info(run)
    path = getattr(story, "path", None) or info.file
    preset = story.plan.preset if story is not None else (info.preset or "none")
    if not path or not os.path.isfile(path):
        raise RenderError(f"the story file of run {run.run_id} ({path or 'not recorded'}) is gone; connect the "
                          "story input (Story Loader) to render from the story as it is now")
    try:
        loaded = load_and_plan(path, preset)
    except StoryError as exc:
        raise RenderError(f"the story changed and no longer loads, so the film cannot follow it: {exc}") from exc
    if loaded.plan.story_id != run.story_id:
        raise RenderError(f"story '{loaded.plan.story_id}' ({path}) is not the story of run {run.run_id} "
                          f"('{run.story_id}'); connect the run of this story, or this run's story")
    return loaded


def film_audio(audio: dict | None, story: Any, frames: int, fps: Fraction, mode: str) -> tuple[dict | None, str]:
    """(AUDIO dict fitted to the film, where it came from): the input, else the story's soundtrack.

    The track is cut, or padded with silence, to exactly cover ``frames`` at ``fps``.
    """
    if mode == "off":
        return None, "none"
    source = "audio input"
    if audio is None:
        soundtrack = getattr(getattr(story, "story", None), "soundtrack", None)
        if not soundtrack:
            return None, "none"
        from ..story.load import resolve_in_folder
        from ..video import read_audio

        path = resolve_in_folder(story.plan.story_dir, soundtrack, "soundtrack")
        try:
            audio = read_audio(path)
        except Exception as exc:
            raise RenderError(f"soundtrack '{soundtrack}' cannot be read ({exc}); fix or remove the story's "
                              "soundtrack, or set audio to off") from exc
        if audio is None:
            raise RenderError(f"soundtrack '{soundtrack}' holds no audio track; point the story's soundtrack at "
                              "an audio file")
        source = f"soundtrack {soundtrack}"
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise RenderError("audio: expected a ComfyUI AUDIO {'waveform': [1,C,T], 'sample_rate': Hz} (Load Audio)")
    waveform = audio["waveform"]
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().float().cpu().numpy()
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples[None]
    if samples.ndim != 3 or samples.shape[0] != 1:
        raise RenderError(f"audio: waveform shape {list(samples.shape)} is not [1,C,T]; pass one track")
    sample_rate = int(audio["sample_rate"])
    wanted = audio_samples_for(frames, fps, sample_rate)
    have = samples.shape[2]
    if have >= wanted:
        samples = samples[:, :, :wanted]
    else:
        samples = np.concatenate([samples, np.zeros((1, samples.shape[1], wanted - have), np.float32)], axis=2)
        source += f" (padded with {(wanted - have) / sample_rate:.2f} s of silence)"
    return {"waveform": np.ascontiguousarray(samples), "sample_rate": sample_rate}, source


def check_stale(run: ledger.Run, scenes: Any, on_stale: str) -> tuple[list[Any], list[str]]:
    """(stale SceneStates, their warnings) of the run against ``scenes`` (the story's plans now).

    ``stop``: RenderError naming the stale scenes and the fix. ``warn``: each one is a warning in the
    run's telemetry (and the log); the caller adds them to the report.
    """
    from ..run.freshness import STALE, scene_states, stale_warning

    stale = [state for state in scene_states(run, scenes) if state.state == STALE]
    if stale and on_stale == "stop":
        raise RenderError(
            f"{len(stale)} scene(s) of run {run.run_id} are stale: "
            + "; ".join(f"'{s.scene}' ({', '.join(s.reasons)})" for s in stale)
            + ". Re-render them first (the panel's Regenerate stale queues exactly these), or set on_stale to warn")
    warnings = [stale_warning(state) for state in stale]
    for state, text in zip(stale, warnings, strict=True):
        ledger.warn(run, text, scene=state.scene)
        log.warning("[gemDirect] render: %s", text)
    return stale, warnings


# --------------------------------------------------------------------------- the pass


def render_story(run: ledger.Run, settings: RenderSettings | None = None, *, story: Any | None = None,
                 rife_model: Any | None = None, upscale_model: Any | None = None, upscale_name: str | None = None,
                 audio: dict | None = None, node_id: str | None = None) -> RenderResult:
    """Render ``run``'s film in the story's current order and record it; see the module docstring.

    rife_model: a loaded RIFE (GEMDIRECT_RIFE) for ``interpolation='rife'``. upscale_model: core's
    UPSCALE_MODEL (spandrel descriptor); ``upscale_name`` names it in telemetry (default its label).
    audio: ComfyUI AUDIO {waveform [1,C,T] float -1..1, sample_rate Hz}, beats the story's soundtrack.
    Raises RenderError (bad settings, nothing to render, missing scenes with on_missing='stop'),
    VideoError (unreadable files) or the interrupt exception; the previous final file stays intact.
    """
    from ..interpolate import engine as interpolation
    from ..interpolate import timing
    from ..run.records import post_record
    from ..run.validate import validate_run
    from ..run.writer import write_telemetry
    from ..video import encode_video

    settings = settings or RenderSettings()
    started = time.perf_counter()
    loaded = current_story(run, story)
    stale, stale_warnings = check_stale(run, loaded.plan.scenes, settings.on_stale)
    film = plan_film(run, loaded.plan.scenes, on_missing=settings.on_missing)
    for text in film.warnings:
        ledger.warn(run, text)
        log.warning("[gemDirect] render: %s", text)
    remove_stale_temporaries(run.final_dir)  # left by a render that was killed an hour or more ago

    rate = film.fps
    interpolating = settings.interpolation != "off" and settings.target_fps is not None \
        and parse_fps(settings.target_fps) != film.fps
    if settings.interpolation == "rife" and rife_model is None:
        raise RenderError("interpolation 'rife' needs a RIFE model: connect RIFE Loader (gemDirect) to rife_model, "
                          "or choose interpolation 'flow' (no model)")
    if interpolating:
        try:
            rate = timing.target_rate(film.fps, target_fps=settings.target_fps)
        except ValueError as exc:
            raise RenderError(f"target_fps: {exc}") from exc
    total = timing.output_count(film.frames, film.fps, rate)

    joined = _Timed(joined_frames(film, settings.chunk_size))
    stream: Iterable[Any] = joined
    report = guard = None
    fallbacks = [text for text in (settings.interpolation_fallback if interpolating else None,
                                   settings.upscale_fallback if settings.upscale is not None else None) if text]
    if interpolating and settings.interpolation == "rife" and settings.ensemble and not rife_model.spec.ensemble:
        fallbacks.append(f"ensemble ignored: RIFE {rife_model.arch} has no ensemble mode")
    for text in fallbacks:
        ledger.warn(run, text)
        log.warning("[gemDirect] render: %s", text)
    if interpolating:
        inner = interpolation.RIFEInterpolator(rife_model, settings.rife_scale, settings.ensemble) \
            if settings.interpolation == "rife" else interpolation.FlowInterpolator(min(1.0, settings.rife_scale))
        batch = BATCH_SIZE
        if hasattr(inner, "make_room"):  # room before any pair runs, even if every pair turns out a cut
            if next(rife_model.net.parameters()).device.type == "cpu":
                batch = 1  # on the CPU one pair a call measured faster than four (benchmarks/interpolate.py)
            inner.make_room(film.height, film.width, batch)
        guard = SceneCutGuard(inner, film.cut_lefts)
        report = interpolation.Report(guard.method, film.fps, rate)
        stream = _Timed(interpolation.interpolate_chunks(joined, film.fps, rate, guard, report=report,
                                                         batch_size=batch))
    interpolated = stream
    upscaler = None
    if settings.upscale is not None:
        from ..upscale.engine import Upscaler, UpscaleSettings

        upscaler = Upscaler(upscale_model, UpscaleSettings(output=settings.upscale))
        target_size = upscaler.output_size(film.width, film.height)
        if target_size != (film.width, film.height) or upscale_model is not None:
            stream = _Timed(upscaler.run(interpolated))
        else:
            upscaler = None  # the size asked for is the scenes' size: nothing to do
    fitted_audio, audio_source = film_audio(audio, loaded, total, rate, settings.audio)

    final = ledger.final_video_path(run)
    ledger.append_event(run, RENDER_EVENT, phase="start", scenes=[s.scene_id for s in film.segments],
                        skipped=film.skipped, frames=total, fps=str(rate))
    progress = comfy.Progress(total, node_id=node_id)
    info = encode_video(final, stream, rate, audio=fitted_audio, trim_audio=True, progress=progress,
                        crf=settings.crf, preset=settings.x264_preset)

    interpolation_ms = (interpolated.seconds - joined.seconds) * 1000.0 if interpolating else 0.0
    upscale_ms = (stream.seconds - interpolated.seconds) * 1000.0 if upscaler is not None else 0.0
    post = post_record(
        interpolation_method=report.method if report else "none", interpolation_ms=max(interpolation_ms, 0.0),
        upscale_method=(upscale_name or upscaler.method) if upscaler else "none", upscale_ms=max(upscale_ms, 0.0),
        transition_method=film.transition_method, final_fps=info.fps, final_width=info.width,
        final_height=info.height, final_frames=info.frames, final_duration=info.duration,
        final_path=ledger.relative_path(run, info.path), audio_kept=fitted_audio is not None,
        joins=film.join_records(),
        extra={"Scenes": [s.scene_id for s in film.segments], "Skipped": film.skipped,
               "Joins": [{"From": join["From"], "To": join["To"], "Kind": join["Used"], "Frames": join["Frames"]}
                         for join in film.join_records()],
               "Sources": {s.scene_id: s.source for s in film.segments},
               "JoinedFrames": film.frames, "SourceFPS": str(film.fps), "AudioSource": audio_source,
               "FramesHeldAtSceneCuts": guard.held if guard else 0,
               "StoryFile": loaded.path})
    post["StaleScenes"] = [{"SceneId": s.scene, "Reasons": list(s.reasons)} for s in stale]
    post["InterpolationFallback"] = settings.interpolation_fallback if interpolating else None
    post["UpscaleFallback"] = settings.upscale_fallback if settings.upscale is not None else None
    rooms = list(getattr(inner, "rooms", []) if interpolating else []) + list(upscaler.rooms if upscaler else [])
    post["Memory"] = [room.telemetry() for room in rooms]
    post = ledger.record_post(run, post)
    elapsed = time.perf_counter() - started
    ledger.append_event(run, RENDER_EVENT, phase="end", final=post["FinalPath"], elapsed_s=round(elapsed, 3))
    problems: list[str] = []
    try:
        write_telemetry(run)
    except ValueError as exc:  # TelemetryError: the film stands, the telemetry says what is wrong
        problems.append(f"telemetry not written: {exc}")
    problems += validate_run(run.run_dir) if not problems else []
    result = RenderResult(info.path, post, film, info, audio_source,
                          stale_warnings + list(film.warnings) + fallbacks, problems, elapsed)
    result.memory = [room.describe() for room in rooms]
    if problems:
        log.warning("[gemDirect] render of run %s: %d telemetry problem(s): %s", run.run_id, len(problems),
                    "; ".join(problems))
    return result
