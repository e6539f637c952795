"""Builders for the ledger's records from plain values, so other rooms never spell PascalCase by hand.

A scene's save node builds its record like this and hands it to ``ledger.record_scene``::

    with measure_stage(run.run_dir, "sample", scene=scene.id) as stage:
        ...                                              # render
    record = scene_record(
        **scene_plan_fields(scene),                      # seed, cfg, steps, prompt... from SCENE
        video_path=ledger.relative_path(run, paths.video), video_status="ready", video_duration=3.06,
        telemetry=run_telemetry(stage, flf2v_source="previous-scene", bookend=bookend_similarity(87.5)),
        models=["wan2.2_i2v_14B_Q4_K_M.gguf"],
    )
    ledger.record_scene(run, record)

Every builder returns a dict in the artifact-metadata shape; ``ledger.record_scene`` and
``ledger.record_post`` check it against the schema before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from ..timebase import parse_fps
from .events import utc_now
from .fingerprint import lora_entry
from .telemetry import BOOKEND_FAIL_BELOW, BOOKEND_WARN_BELOW

MB = 1 << 20  # the telemetry's "MB" is 2**20 bytes


def mb(value_bytes: int | float) -> float:
    """Bytes to MB (2**20 bytes), rounded to the 2 decimals the summary prints."""
    return round(float(value_bytes) / MB, 2)


def fps_fields(fps: Fraction | int | float | str) -> tuple[float, str]:
    """``(FPS as a float rounded to 3 decimals, exact "N/D" or "N")``: 24000/1001 -> (23.976, "24000/1001")."""
    rate = parse_fps(fps)
    exact = str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"
    return round(float(rate), 3), exact


def gpu_telemetry(*, name: str, device_type: str, index: int | None, total: int, free_before: int,
                  free_after: int, peak_mb: float | None = None) -> dict[str, Any]:
    """The ``Telemetry.GPU`` block from device memory readings in bytes.

    Used = total - free; ``VramBeforeMB``/``VramAfterMB`` are used MB, ``VramDeltaMB`` is exactly
    After - Before (of the rounded values), ``VramDelta`` is ``free_before - free_after`` bytes.
    """
    before_mb, after_mb = mb(total - free_before), mb(total - free_after)
    return {
        "Name": str(name), "Type": str(device_type), "Index": index,
        "VramTotal": int(total), "VramFreeBefore": int(free_before), "VramFreeAfter": int(free_after),
        "VramDelta": int(free_before) - int(free_after),
        "VramBeforeMB": before_mb, "VramAfterMB": after_mb, "VramDeltaMB": round(after_mb - before_mb, 2),
        "VramPeakMB": None if peak_mb is None else round(float(peak_mb), 2),
    }


def system_telemetry(before_mb: float | None, after_mb: float | None, notes: Iterable[str] = ()) -> dict[str, Any]:
    """The ``Telemetry.System`` block: system RAM used before/after in MB, and fallback notes."""
    return {"Before": None if before_mb is None else round(float(before_mb), 2),
            "After": None if after_mb is None else round(float(after_mb), 2),
            "FallbackNotes": [str(note) for note in notes]}


def bookend_status(score: float) -> str:
    """gemDirect1's verdict on a pixel score 0..100: ``fail`` below 25, ``warn`` below 35, else ``pass``."""
    if score < BOOKEND_FAIL_BELOW:
        return "fail"
    return "warn" if score < BOOKEND_WARN_BELOW else "pass"


def bookend_similarity(score: float | None, method: str = "pixel", status: str | None = None) -> dict[str, Any] | None:
    """The ``BookendSimilarity`` block (None when there is no previous scene to compare with)."""
    if score is None:
        return None
    score = round(float(score), 2)
    return {"Score": score, "Method": method, "Status": status or bookend_status(score)}


def run_telemetry(stage: Any, *, flf2v_source: str, flf2v_enabled: bool | None = None,
                  flf2v_fallback: str | None = None, bookend: Mapping[str, Any] | None = None,
                  fallback_notes: Iterable[str] = (), flf2v_end: str | None = None,
                  start_match: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The scene's ``Telemetry`` block from a finished :class:`measure.StageMeasurement`.

    flf2v_source: ``keyframe``, ``previous-scene`` or ``none``; FLF2VEnabled defaults to
    "started from the previous scene". flf2v_end: ``keyframe``, ``next-keyframe``, ``none`` (None:
    unknown). start_match: the ``StartMatch`` block (chained scenes).
    """
    return {
        "QueueStart": stage.started_at,
        "QueueEnd": stage.ended_at,
        "DurationSeconds": round(stage.elapsed_s, 3),
        "GPU": stage.gpu_telemetry(),
        "System": stage.system_telemetry(fallback_notes),
        "FLF2VEnabled": flf2v_source == "previous-scene" if flf2v_enabled is None else bool(flf2v_enabled),
        "FLF2VSource": flf2v_source,
        "FLF2VFallback": flf2v_fallback,
        "BookendSimilarity": dict(bookend) if bookend else None,
        "FLF2VEnd": flf2v_end,
        "StartMatch": dict(start_match) if start_match else None,
    }


def scene_plan_fields(scene: Any) -> dict[str, Any]:
    """The plan values of a SCENE (any object with ScenePlan's attributes) as :func:`scene_record` keywords."""
    loras = [(getattr(lora, "name", None), getattr(lora, "strength", 1.0), getattr(lora, "expert", "both"))
             for lora in getattr(scene, "loras", ())]
    return {
        "scene_id": scene.id, "title": scene.title, "prompt": scene.prompt, "negative": scene.negative,
        "keyframe_source": scene.keyframe, "seed": scene.seed, "cfg": scene.cfg, "steps": scene.steps,
        "sampler": scene.sampler, "loras": loras, "frame_count": scene.length, "fps": scene.fps,
        "width": scene.width, "height": scene.height, "scene_index": getattr(scene, "index", None),
        "warnings": list(getattr(scene, "warnings", ())),
    }


def scene_record(*, scene_id: str, title: str, prompt: str, negative: str, seed: int, cfg: float, steps: int,
                 sampler: str, frame_count: int, fps: Fraction | int | float | str, width: int, height: int,
                 video_path: str, telemetry: Mapping[str, Any], video_status: str = "ready",
                 video_duration: float | None = None, video_error: str | None = None,
                 keyframe_source: str | None = None, models: Sequence[str] = (),
                 loras: Iterable[tuple[str, float] | tuple[str, float, str]] = (), success: bool = True,
                 warnings: Iterable[str] = (),
                 errors: Iterable[str] = (), attempts: int | None = None, scene_index: int | None = None,
                 updated_at: str | None = None, extra: Mapping[str, Any] | None = None,
                 video_master: str | None = None) -> dict[str, Any]:
    """One ``Scenes[]`` entry. ``video_path`` is relative to the run folder (``scenes/a.mp4``), so is
    ``video_master`` (the lossless master the render reads, None without one);
    ``attempts`` None lets ``record_scene`` count the attempts; duration is frames / fps seconds."""
    fps_float, fps_exact = fps_fields(fps)
    return {
        "SceneId": scene_id, "SceneTitle": title, "Prompt": prompt, "NegativePrompt": negative,
        "KeyframeSource": keyframe_source, "Seed": int(seed), "CFG": float(cfg), "Steps": int(steps),
        "Sampler": sampler, "Models": list(models),
        "Loras": [lora_entry(*lora) for lora in loras],
        "FrameCount": int(frame_count), "DurationSeconds": round(frame_count / float(Fraction(fps_exact)), 3),
        "FPS": fps_float, "Resolution": f"{int(width)}x{int(height)}", "Success": bool(success),
        "Warnings": list(warnings), "Errors": list(errors), "AttemptsRun": attempts,
        "Video": {"Path": video_path, "DurationSeconds": video_duration, "Status": video_status,
                  "UpdatedAt": updated_at or utc_now(), "Error": video_error, "Master": video_master},
        "Telemetry": dict(telemetry),
        "SceneIndex": scene_index, "FPSExact": fps_exact, "Extra": dict(extra) if extra else None,
    }


def post_record(*, interpolation_method: str, interpolation_ms: float, upscale_method: str, upscale_ms: float,
                transition_method: str, final_fps: Fraction | int | float | str, final_width: int,
                final_height: int, final_frames: int, final_duration: float, final_path: str, audio_kept: bool,
                extra: Mapping[str, Any] | None = None,
                joins: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The ``Post`` block. Times in milliseconds; ``final_path`` relative to the run folder; ``joins``
    the ``Post.Joins`` entries (``From, To, Asked, Used, Frames, Reason, FilmStart``).
    Take size, frames, fps and duration from the probed final file (``encode_video`` returns them)."""
    fps_float, fps_exact = fps_fields(final_fps)
    return {
        "InterpolationMethod": interpolation_method, "InterpolationElapsed": round(float(interpolation_ms), 1),
        "UpscaleMethod": upscale_method, "UpscaleElapsed": round(float(upscale_ms), 1),
        "TransitionMethod": transition_method, "FinalFPS": fps_float,
        "FinalResolution": f"{int(final_width)}x{int(final_height)}", "FinalFrames": int(final_frames),
        "FinalDurationSeconds": round(float(final_duration), 3), "FinalPath": final_path,
        "AudioKept": bool(audio_kept), "FinalFPSExact": fps_exact,
        "Joins": [dict(join) for join in joins] if joins is not None else None,
        "Extra": dict(extra) if extra else None,
    }
