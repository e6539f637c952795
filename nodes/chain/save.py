"""Scene save: the frames of one scene become its MP4, first/last PNG bookends and its ledger record.

Steps (:func:`save_scene`), each visible to the panel through ``gemdirect.scene`` events:

1. check the RUN and SCENE belong together (same story, scene at its position);
2. drift against the story's reference (:func:`story_reference`), and, if asked, colour-match the
   frames to that reference first (drift is then recorded before and after);
3. encode ``scenes/<id>.mp4`` (audio kept: the preview people watch), keep the lossless master
   ``scenes/<id>.mkv`` (FFV1; PNG frames ``<id>_frames/`` where PyAV has no FFV1) that the render
   reads, unless masters are off, and write ``<id>_first.png`` / ``<id>_last.png`` from the frames
   themselves (lossless: the next scene starts bit-exact where this one ended);
4. bookend similarity of the previous scene's saved last frame against this scene's first frame,
   and for a chained scene the start match (first frame against the start image it was given);
5. close the scene's stage opened by Chain Start (elapsed, VRAM before/after/peak) and write the
   scene record (artifact-metadata ``Scenes[]`` shape, checked against the schema).

A failure after step 1 records the scene as failed (so the next scene falls back to its keyframe
and the panel shows it) and re-raises.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import comfy
from ..paths import is_inside
from ..run import events, ledger, measure, records
from ..run.fingerprint import scene_fingerprint
from ..video.convert import to_uint8
from ..video.encode import encode_video
from ..video.images import load_png, save_png
from ..video.master import MASTER_FFV1, encode_master, master_format, remove_master
from ..video.probe import VideoInfo
from . import states
from .bookend import BookendResult, StartMatch, compare_bookends, start_match
from .drift import Drift, as_frames, measure_drift
from .start import (
    SCENE_STAGE,
    SOURCE_NONE,
    SOURCE_PREVIOUS,
    check_scene_in_run,
    fit_pixels,
    image_sha256,
    keyframe_image,
    previous_last_frame,
)

COLOR_MATCH_OFF = "off"
COLOR_MATCH_METHODS = ("reinhard", "histogram", "mkl")
COLOR_MATCH_CHOICES = (COLOR_MATCH_OFF, *COLOR_MATCH_METHODS)
REFERENCE_OWN_FIRST = "own first frame"
REFERENCE_KEYFRAME = "keyframe"

# Inputs of model-loading nodes whose values are model file names (core and ComfyUI-GGUF loaders).
log = logging.getLogger("gemdirect")

MODEL_INPUT = re.compile(r"^(ckpt_name|unet_name|vae_name|clip_name\d*|lora_name)$")


@dataclass
class SceneSaveResult:
    """What one save wrote. ``frames`` are the frames as saved (after any colour match), torch [T,H,W,3]."""

    record: dict[str, Any]
    paths: ledger.ScenePaths
    video: VideoInfo
    frames: Any
    bookend: BookendResult | None
    drift: Drift
    drift_after_match: Drift | None
    preview: dict[str, str] | None  # ComfyUI ui entry {filename, subfolder, type} of the MP4
    report: str
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- inputs


def prompt_models(prompt: Mapping[str, Any] | None) -> list[str]:
    """Model file names a ComfyUI prompt loads (``ckpt_name``, ``unet_name``, ``vae_name``,
    ``clip_name*``, ``lora_name`` widget values), in node order without repeats."""
    found: list[str] = []
    for node in (prompt or {}).values():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        for name, value in (inputs or {}).items():
            if MODEL_INPUT.match(name) and isinstance(value, str) and value and value not in found:
                found.append(value)  # linked inputs are lists, so only widget values count
    return found


def check_frames(frames: Any) -> Any:
    """``frames`` as torch float32 [T,H,W,3] 0..1; ValueError names the problem and the fix."""
    if frames is None:
        raise ValueError("frames: nothing connected; connect the decoded frames (VAE Decode's IMAGE)")
    tensor = as_frames(frames)
    if tensor.ndim != 4 or tensor.shape[-1] != 3 or tensor.shape[0] < 1:
        hint = " (drop the alpha channel)" if tensor.shape[-1:] == (4,) else ""
        raise ValueError(f"frames: shape {list(tensor.shape)} is not an RGB IMAGE batch [T,H,W,3]{hint}")
    return tensor


# --------------------------------------------------------------------------- reference and stage


def story_reference(run: ledger.Run, scene: Any, info: ledger.StoryInfo, fit: str = "crop") -> tuple[
        np.ndarray | None, str]:
    """The image drift is measured against and colour is matched to, ``([H,W,3] float32, name)``.

    The first scene's saved first frame in this run (the look the story began with); for the first
    scene itself, or before it is saved: this scene's keyframe; else None (the caller then uses the
    scene's own first frame, so drift measures change within the clip).
    """
    first_id = info.scene_ids[0]
    if scene.id != first_id:
        record = ledger.read_scene(run, first_id)
        path = ledger.scene_paths(run, first_id).first_frame
        if record and record.get("Success") is True and os.path.isfile(path):
            image = fit_pixels(load_png(path, dtype="uint8", as_torch=False), scene.width, scene.height, fit)
            return image, ledger.relative_path(run, path)
    if scene.keyframe and os.path.isfile(scene.keyframe):
        return keyframe_image(scene, fit), REFERENCE_KEYFRAME
    return None, REFERENCE_OWN_FIRST


def scene_start_event(run: ledger.Run, scene_id: str) -> dict[str, Any] | None:
    """Chain Start's ``stage_start`` event of the scene's current attempt (after its last record), or None."""
    found = None
    for event in events.read_events(run.run_dir).events:
        if event.get("scene") != scene_id:
            continue
        if event.get("event") == events.SCENE_RECORDED:
            found = None
        elif event.get("event") == events.STAGE_START and event.get("stage") == SCENE_STAGE:
            found = event
    return found


def _parse_time(text: str) -> _dt.datetime | None:
    try:
        return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.timezone.utc)
    except (TypeError, ValueError):
        return None


def close_stage(run: ledger.Run, scene_id: str, start_event: Mapping[str, Any] | None,
                save_start: measure.StageMeasurement, error: str | None = None) -> measure.StageMeasurement:
    """The scene's measurement from Chain Start (``start_event``) to now, logged as ``stage_end``.

    Without a start event, the save itself (``save_start``: a measurement begun when saving
    started) is the stage.
    """
    after = measure.memory_snapshot()
    ended = events.utc_now()
    if start_event is not None:
        before = measure.MemorySnapshot(
            device_type=str(start_event.get("device_type") or "unknown"),
            device_name=str(start_event.get("device") or "unknown"),
            device_index=start_event.get("device_index"), vram_total=int(start_event.get("vram_total") or 0),
            vram_free=int(start_event.get("vram_free") or 0), ram_used_mb=start_event.get("ram_before_mb"))
        started_at = str(start_event["time"])
        reserved = start_event.get("cuda_reserved")
    else:
        before, started_at, reserved = save_start.before, save_start.started_at, None
    begin, end = _parse_time(started_at), _parse_time(ended)
    elapsed = max(0.0, (end - begin).total_seconds()) if begin and end else 0.0
    peak = measure._cuda_peak_mb(before, reserved)
    if peak is None:
        peak = max(before.vram_used_mb, after.vram_used_mb)
    stage = measure.StageMeasurement(stage=SCENE_STAGE, scene=scene_id, before=before, started_at=started_at,
                                     after=after, ended_at=ended, elapsed_s=elapsed, peak_mb=peak)
    events.append_event(run.run_dir, events.STAGE_END, stage=SCENE_STAGE, scene=scene_id,
                        elapsed_s=round(elapsed, 3), vram_before_mb=before.vram_used_mb,
                        vram_after_mb=after.vram_used_mb, vram_peak_mb=peak, ram_before_mb=before.ram_used_mb,
                        ram_after_mb=after.ram_used_mb, error=error)
    return stage


def _save_measurement() -> measure.StageMeasurement:
    return measure.StageMeasurement(stage=SCENE_STAGE, scene=None, before=measure.memory_snapshot(),
                                    started_at=events.utc_now())


def _chain_facts(start_event: Mapping[str, Any] | None) -> tuple[str, str | None, list[str]]:
    """``(FLF2VSource, FLF2VFallback, fallback notes)`` from Chain Start's event."""
    if start_event is None:
        return SOURCE_NONE, "Chain Start did not run for this scene, so its start image is unknown", [
            "no Chain Start for this scene: DurationSeconds and VRAM cover saving only"]
    return str(start_event.get("flf2v_source") or SOURCE_NONE), start_event.get("flf2v_fallback"), []


# --------------------------------------------------------------------------- preview


def preview_entry(path: str) -> dict[str, str] | None:
    """ComfyUI's ui entry for a file in the output folder (``filename``, ``subfolder``, ``type``),
    the shape core's SaveVideo returns; None when the file is outside the output folder."""
    root = os.path.realpath(comfy.output_directory())
    folder = os.path.realpath(os.path.dirname(path))
    if not is_inside(folder, root):
        return None
    subfolder = os.path.relpath(folder, root)
    return {"filename": os.path.basename(path), "subfolder": "" if subfolder == "." else subfolder.replace(os.sep, "/"),
            "type": "output"}


# --------------------------------------------------------------------------- master


def keep_master(run: ledger.Run, paths: ledger.ScenePaths, clip: Any, fps: Any, enabled: bool,
                progress: Any = None) -> tuple[str | None, str]:
    """Write (or, when ``enabled`` is False, remove) the scene's lossless master.

    Returns ``(master path relative to the run or None, one line for the report)``. A master of the
    other kind (or any master when off) left by an earlier save of the scene is removed, so the run
    holds only what the record names.
    """
    if not enabled:
        removed = [remove_master(paths.master), remove_master(paths.master_frames)]
        note = "Master: off (Story Render will read the H.264 preview and warn)"
        return None, note + ("; the earlier master was removed" if any(removed) else "")
    fmt = master_format()
    target, other = (paths.master, paths.master_frames) if fmt == MASTER_FFV1 else (paths.master_frames, paths.master)
    info = encode_master(target, clip, fps, fmt=fmt, progress=progress)
    remove_master(other)
    size = os.path.getsize(target) if os.path.isfile(target) else sum(
        entry.stat().st_size for entry in os.scandir(target) if entry.is_file())
    relative = ledger.relative_path(run, target)
    return relative, f"Master: {relative} ({fmt}, {info.frames} frames, {size / 2**20:.2f} MB, lossless)"


# --------------------------------------------------------------------------- save


def _bookend(run: ledger.Run, scene: Any, previous_id: str | None, first: np.ndarray, fit: str) -> tuple[
        BookendResult | None, str | None]:
    """Bookend of the previous scene's saved last frame against ``first`` (uint8 [H,W,3]); or a note why not."""
    if previous_id is None:
        return None, None
    path, why_not = previous_last_frame(run, previous_id)
    if path is None:
        return None, f"no bookend similarity: {why_not}"
    previous = load_png(path, dtype="uint8", as_torch=False)
    if previous.shape != first.shape:
        previous = fit_pixels(previous, first.shape[1], first.shape[0], fit)
    return compare_bookends(previous, first), None


def _start_match(run: ledger.Run, start_event: Mapping[str, Any] | None, first: np.ndarray, fit: str) -> tuple[
        StartMatch | None, str | None]:
    """A chained scene's first frame (uint8 [H,W,3]) against the start file of Chain Start's event; or a note
    why it cannot be measured. None, None for a scene that was not chained."""
    if start_event is None or start_event.get("flf2v_source") != SOURCE_PREVIOUS:
        return None, None
    name = start_event.get("start_file")
    path = name if not name or os.path.isabs(name) else os.path.join(run.run_dir, name)
    if not path or not os.path.isfile(path):
        return None, f"no start match: the start image {name} Chain Start used is gone"
    start = fit_pixels(load_png(path, dtype="uint8", as_torch=False), first.shape[1], first.shape[0],
                       start_event.get("fit") or fit)
    note = None
    if start_event.get("start_sha256") and start.shape == first.shape \
            and image_sha256(start) != start_event["start_sha256"]:
        note = f"start match: {name} changed since Chain Start read it (measured against the file as it is now)"
    return start_match(start, first), note


def _keep_latents(run: ledger.Run, scene_id: str, latent: Any) -> tuple[dict[str, Any] | None, str]:
    """Keep the scene's last latents (or remove an earlier save's file when no LATENT is connected)."""
    from ..svi.latents import remove_last_latents, save_last_latents

    if latent is None:
        removed = remove_last_latents(run, scene_id)
        return None, "Latents: not kept (no LATENT connected)" + ("; the earlier file was removed" if removed else "")
    entry = save_last_latents(run, scene_id, latent)
    return entry, (f"Latents: {entry['Path']} (last {entry['Frames']} of {entry['TotalFrames']} latent frames, "
                   f"{'x'.join(str(s) for s in entry['Shape'])})")


def _svi_facts(run: ledger.Run, scene: Any, warnings: list[str]) -> dict[str, Any] | None:
    """What SVI Continue did for this attempt (its event), with the scene's planned SVI settings; None off."""
    from ..svi.engine import continuation_facts, fallback_warning

    facts = continuation_facts(run, scene.id)
    svi = getattr(scene, "svi", None)
    if facts is None and (svi is None or not svi.enabled):
        return None
    facts = dict(facts or {"Source": None, "Fallback": "SVI Continue did not run for this scene"})
    facts.update(Enabled=bool(svi is not None and svi.enabled),
                 LoraStrength=float(svi.lora_strength) if svi is not None else None)
    warning = fallback_warning(scene, facts)
    if warning and warning not in warnings:
        warnings.append(warning)
    return facts


def _failure_record(run: ledger.Run, scene: Any, paths: ledger.ScenePaths, stage: measure.StageMeasurement,
                    start_event: Mapping[str, Any] | None, models: Sequence[str], error: str) -> None:
    source, fallback, notes = _chain_facts(start_event)
    record = records.scene_record(
        **records.scene_plan_fields(scene), video_path=ledger.relative_path(run, paths.video),
        video_status="error", video_error=error, success=False, errors=[error], models=models,
        extra={"Fingerprint": scene_fingerprint(run.run_dir, scene, start_event, models)},
        telemetry=records.run_telemetry(stage, flf2v_source=source, flf2v_fallback=fallback, fallback_notes=notes,
                                        flf2v_end=start_event.get("flf2v_end") if start_event else None),
    )
    ledger.record_scene(run, record)


def save_scene(run: ledger.Run, scene: Any, frames: Any, *, audio: dict | None = None, models: Sequence[str] = (),
               color_match: str = COLOR_MATCH_OFF, color_match_strength: float = 1.0, fit: str = "crop",
               crf: int = 19, progress: Callable[[int], None] | Any | None = None,
               master: bool = True, latent: Any = None) -> SceneSaveResult:
    """Save ``frames`` (IMAGE [T,H,W,3] float 0..1) as scene ``scene`` (a SCENE) of ``run`` (a RUN).

    audio: optional ComfyUI AUDIO, muxed as AAC. models: model file names for telemetry
    (see :func:`prompt_models`). color_match: ``off`` or a method of the colour engine
    (``reinhard``, ``histogram``, ``mkl``) applied towards the story's reference at
    ``color_match_strength`` 0..1. fit: how a reference or previous frame of another size is fitted
    (``crop`` | ``pad``). crf: x264 quality of the scene's MP4. master: keep the lossless master the
    render reads (False saves disk; the render then reads the MP4 preview and warns). latent: the
    sampler's LATENT; its last latent frames are kept beside the master for SVI continuation
    (``scenes/<id>_latents.safetensors``, see nodes/svi/latents.py).
    """
    if color_match not in COLOR_MATCH_CHOICES:
        raise ValueError(f"color_match {color_match!r} is not one of {', '.join(COLOR_MATCH_CHOICES)}")
    if not 0.0 <= float(color_match_strength) <= 1.0:
        raise ValueError(f"color_match_strength {color_match_strength} is outside 0..1")
    info = check_scene_in_run(run, scene)
    clip = check_frames(frames)
    if latent is not None:
        from ..svi.latents import as_samples

        as_samples(latent)  # a wrong input is refused before anything is written
    paths = ledger.scene_paths(run, scene.id)
    save_start = _save_measurement()
    start_event = scene_start_event(run, scene.id)
    states.send_scene_state(run, scene, states.SAVING, frames=int(clip.shape[0]))
    try:
        result = _save(run, scene, info, clip, paths, start_event, save_start, audio=audio, models=models,
                       color_match=color_match, strength=float(color_match_strength), fit=fit, crf=crf,
                       progress=progress, master=bool(master), latent=latent)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        try:
            stage = close_stage(run, scene.id, start_event, save_start, error=error)
            _failure_record(run, scene, paths, stage, start_event, models, error)
        except Exception as record_exc:  # never hide the real error behind a bookkeeping one
            log.warning("[gemDirect] could not record the failure of scene '%s': %s", scene.id, record_exc)
        states.send_scene_state(run, scene, states.FAILED, error=error)
        raise
    states.send_scene_state(
        run, scene, states.DONE, video=result.record["Video"]["Path"], frames=result.video.frames,
        master=result.record["Video"].get("Master"),
        flf2v_source=result.record["Telemetry"]["FLF2VSource"],
        bookend=result.bookend.extra() if result.bookend else None,
        drift=result.drift.extra(), flf2v_end=result.record["Telemetry"].get("FLF2VEnd"),
        start_match=result.record["Telemetry"].get("StartMatch"),
        duration_seconds=result.record["Telemetry"]["DurationSeconds"], attempt=result.record["AttemptsRun"],
    )
    return result


def _save(run: ledger.Run, scene: Any, info: ledger.StoryInfo, clip: Any, paths: ledger.ScenePaths,
          start_event: Mapping[str, Any] | None, save_start: measure.StageMeasurement, *, audio: dict | None,
          models: Sequence[str], color_match: str, strength: float, fit: str, crf: int,
          progress: Any, master: bool = True, latent: Any = None) -> SceneSaveResult:
    count, height, width = int(clip.shape[0]), int(clip.shape[1]), int(clip.shape[2])
    warnings = list(getattr(scene, "warnings", ()))
    if (width, height) != (scene.width, scene.height):
        warnings.append(f"frames are {width}x{height}, the scene was planned at {scene.width}x{scene.height}")
    if count != scene.length:
        warnings.append(f"{count} frames saved, the scene was planned with {scene.length}")

    reference, reference_name = story_reference(run, scene, info, fit)
    if reference is not None and reference.shape[:2] != (height, width):
        reference = fit_pixels(reference, width, height, fit)
    if reference is None:
        reference = to_uint8(clip[0])
    drift = measure_drift(clip, reference, reference_name)
    drift_after = None
    if color_match != COLOR_MATCH_OFF:
        from ..vace.colour import match_colour

        clip = match_colour(clip, as_frames(reference)[0], method=color_match, strength=strength)
        clip = clip.clamp(0.0, 1.0)
        drift_after = measure_drift(clip, reference, reference_name)

    video = encode_video(paths.video, clip, scene.fps, audio=audio, crf=crf, progress=progress)
    master_path, master_note = keep_master(run, paths, clip, scene.fps, master)
    save_png(paths.first_frame, clip[0])
    save_png(paths.last_frame, clip[-1])

    previous_id = info.scene_ids[scene.index - 2] if scene.index > 1 else None
    bookend, bookend_note = _bookend(run, scene, previous_id, to_uint8(clip[0]), fit)
    if bookend is not None and bookend.status != "pass":
        warnings.append(f"bookend {bookend.score:.1f} ({bookend.status}) against the last frame of scene "
                        f"'{previous_id}': the join will jump (SSIM {bookend.ssim:.2f})")
    source, fallback, notes = _chain_facts(start_event)
    if fallback and start_event is not None:
        warnings.append(f"not chained: {fallback}")  # the text Chain Start warned with, so it appears once
    if bookend_note:
        notes.append(bookend_note)
    match, match_note = _start_match(run, start_event, to_uint8(clip[0]), fit)
    notes += [match_note] if match_note else []
    if match is not None and match.verdict == "fail":
        warnings.append(f"start match {match.psnr:.1f} dB (fail, below {match.threshold:g} dB): the first frame is "
                        f"not the start image it was given (SSIM {match.ssim:.2f}); the join with "
                        f"'{previous_id}' will jump")
    if start_event is not None and start_event.get("end_warning"):
        warnings.append(str(start_event["end_warning"]))  # Chain Start's words, so the record says it too

    latents_entry, latents_note = _keep_latents(run, scene.id, latent)
    svi_facts = _svi_facts(run, scene, warnings)
    stage = close_stage(run, scene.id, start_event, save_start)
    fields = records.scene_plan_fields(scene)
    fields.update(frame_count=count, width=video.width, height=video.height, warnings=warnings)
    extra: dict[str, Any] = {
        "Chain": {"Source": source, "Fallback": fallback, "PreviousScene": previous_id, "Fit": fit,
                  "StartFile": start_event.get("start_file") if start_event else None},
        "Bookend": bookend.extra() if bookend else None,
        "Drift": drift.extra(),
        "ColorMatch": {"Method": color_match, "Strength": strength, "Reference": reference_name},
        "DriftAfterColorMatch": drift_after.extra() if drift_after else None,
        "Files": {"FirstFrame": ledger.relative_path(run, paths.first_frame),
                  "LastFrame": ledger.relative_path(run, paths.last_frame), "Master": master_path},
        "Latents": latents_entry,
        "SVI": svi_facts,
        "Audio": audio is not None,
        "Fingerprint": scene_fingerprint(run.run_dir, scene, start_event, models),  # what made it: staleness
    }
    record = records.scene_record(
        **fields, video_path=ledger.relative_path(run, paths.video), video_status="ready",
        video_duration=video.duration, models=models, extra=extra, video_master=master_path,
        telemetry=records.run_telemetry(stage, flf2v_source=source, flf2v_fallback=fallback,
                                        bookend=bookend.telemetry() if bookend else None, fallback_notes=notes,
                                        flf2v_end=start_event.get("flf2v_end") if start_event else None,
                                        start_match=match.telemetry() if match else None),
    )
    checked = ledger.record_scene(run, record)
    report = describe_save(scene, checked, bookend, drift, drift_after, start_event,
                           "\n".join(n for n in (master_note, latents_note) if n))
    return SceneSaveResult(record=checked, paths=paths, video=video, frames=clip, bookend=bookend, drift=drift,
                           drift_after_match=drift_after, preview=preview_entry(paths.video), report=report,
                           warnings=warnings)


def describe_save(scene: Any, record: Mapping[str, Any], bookend: BookendResult | None, drift: Drift | None,
                  drift_after: Drift | None, start_event: Mapping[str, Any] | None = None,
                  master_note: str | None = None) -> str:
    """A few lines for the node's text output."""
    telemetry = record["Telemetry"]
    lines = [
        f"Scene '{scene.id}' ({scene.index}): {record['FrameCount']} frames {record['Resolution']} @ "
        f"{record['FPS']:g} fps -> {record['Video']['Path']} (attempt {record['AttemptsRun']}, "
        f"{telemetry['DurationSeconds']:.1f} s)",
        f"FLF2V: {telemetry['FLF2VSource']}" + (f" (fallback: {telemetry['FLF2VFallback']})"
                                                 if telemetry["FLF2VFallback"] else ""),
        f"FLF2V end: {telemetry.get('FLF2VEnd') or 'unknown (no Chain Start)'}"
        + (f" ({start_event['end_note']})" if start_event and start_event.get("end_note")
           and start_event.get("end_note") != start_event.get("end_warning") else ""),  # a warning is listed below
        "Bookend: " + (f"{bookend.score:.1f} ({bookend.status}), SSIM {bookend.ssim:.3f}" if bookend else "none"),
        "Start match: " + (f"PSNR {m['PSNR']:.1f} dB, SSIM {m['SSIM']:.3f} ({m['Verdict']}, threshold "
                           f"{m['Threshold']:g} dB)" if (m := telemetry.get("StartMatch")) else "none (not chained)"),
        f"Drift vs {drift.reference}: mean dE {drift.mean_delta_e:.2f}, last frame dE "
        f"{drift.last_frame_delta_e:.2f}" + (f"; after colour match {drift_after.mean_delta_e:.2f}" if drift_after
                                             else ""),
    ]
    if master_note:
        lines.append(master_note)
    lines += [f"WARNING: {w}" for w in record["Warnings"]]
    return "\n".join(lines)
