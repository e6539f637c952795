"""Chain start: the image a scene starts from, and the one it should end at (FLF2V).

- Scene 1, or chaining off: the scene's keyframe (fitted to the scene's size), or mid-grey without one.
- Scene N with chaining on: the saved last frame of scene N-1 in the same run
  (``scenes/<id>_last.png``, lossless, so the start is bit-exact what N-1 ended on).
- The end image (``end_image`` mode, recorded as ``FLF2VEnd``): ``auto`` takes the scene's keyframe
  when it differs from the start image (more than 1/255 in any pixel at the scene's size), else
  none; ``keyframe`` and ``next scene's keyframe`` take that image, or none with a warning when
  there is none; ``none`` gives none. No end image means the WAN node runs as image-to-video. An
  end image equal to the start image is only used when asked for explicitly, and then with a
  warning (the clip loops back to where it began).
- When the previous scene is not rendered yet, failed, or lost its last frame, the scene falls back
  to its keyframe and the reason is recorded (``FLF2VFallback`` in the scene's telemetry, and a
  warning in the run).

Calling :func:`begin_scene` also opens the scene's timing: a ``stage_start`` event (stage
``scene``) with the device memory now, which Scene Save closes. A scene's elapsed time is therefore
Chain Start -> end of Scene Save: sampling, decoding, encoding and QA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..run import events, ledger, measure
from ..story.keyframe import FIT_MODES, fit_image, grey_frame, load_keyframe
from ..video.convert import to_float32, to_uint8
from ..video.images import load_png
from ..video.images import pixel_sha256 as image_sha256

SOURCE_KEYFRAME, SOURCE_PREVIOUS, SOURCE_NONE = "keyframe", "previous-scene", "none"
CHAIN_FROM_STORY, CHAIN_ON, CHAIN_OFF = "from story", "on", "off"
CHAIN_CHOICES = (CHAIN_FROM_STORY, CHAIN_ON, CHAIN_OFF)
SCENE_STAGE = "scene"  # the stage name of a whole scene in events.jsonl
END_AUTO, END_KEYFRAME, END_NEXT, END_NONE = "auto", "keyframe", "next scene's keyframe", "none"
END_CHOICES = (END_AUTO, END_KEYFRAME, END_NEXT, END_NONE)
# What FLF2VEnd records: the image the scene was asked to end on.
FLF2V_END_KEYFRAME, FLF2V_END_NEXT, FLF2V_END_NONE = "keyframe", "next-keyframe", "none"
SAME_TOLERANCE = 1  # in 8-bit steps (1/255): two images closer than this everywhere are "the same"


class ChainError(ValueError):
    """The chain cannot start this scene; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class ChainStart:
    """Where a scene starts and ends. Images are [H,W,3] float32 0..1 at the scene's size."""

    start: np.ndarray
    end: np.ndarray | None  # None: no end image (the WAN node runs as image-to-video)
    source: str  # keyframe | previous-scene | none
    fallback: str | None  # why the scene was not chained although chaining was asked for
    previous_scene: str | None  # id of the scene before this one in play order
    start_file: str | None  # absolute path the start image was read from (None for grey)
    end_mode: str = END_AUTO  # the end_image mode asked for
    flf2v_end: str = FLF2V_END_NONE  # keyframe | next-keyframe | none: what the end image is
    end_note: str | None = None  # why the end image is what it is, when that needs saying
    end_warning: str | None = None  # set when the end is not what was asked, or equals the start


def check_scene_in_run(run: ledger.Run, scene: Any) -> ledger.StoryInfo:
    """The run's story facts, after checking ``scene`` (a SCENE) belongs to it at its position."""
    scene_story = getattr(scene, "story_id", None)
    if scene_story != run.story_id:
        raise ChainError(
            f"the RUN is run {run.run_id} of story '{run.story_id}', but the SCENE is from story '{scene_story}'; "
            "feed Run and Scene Select from the same Story Loader (or pick a run of this story)"
        )
    info = ledger.story_info(run)
    count = len(info.scenes)
    if not 1 <= scene.index <= count:
        raise ChainError(
            f"scene index {scene.index} is past the end of story '{run.story_id}' in run {run.run_id}, which has "
            f"{count} scene(s): use 1 to {count}, or start a new run if scenes were added"
        )
    expected = info.scene_ids[scene.index - 1]
    if expected != scene.id:
        raise ChainError(
            f"scene '{scene.id}' is number {scene.index} in the SCENE, but run {run.run_id} has '{expected}' there: "
            "the story changed since; queue the prompt again so Run picks up the new story, or start a new run"
        )
    return info


def fit_pixels(pixels: Any, width: int, height: int, fit: str = "crop") -> np.ndarray:
    """A frame ([H,W,3] float 0..1 or uint8) at ``width`` x ``height`` by ``fit`` (crop | pad), as
    [H,W,3] float32 0..1 on the 8-bit grid of the PNG bookends. A frame already of that size is not
    resampled, so a saved last frame comes back bit-exact.
    """
    from PIL import Image

    if fit not in FIT_MODES:
        raise ChainError(f"fit {fit!r} is not one of {', '.join(FIT_MODES)}")
    values = to_uint8(pixels)
    if values.shape[:2] != (height, width):
        fitted = fit_image(Image.fromarray(np.ascontiguousarray(values), "RGB"), width, height, fit)
        values = np.asarray(fitted)
    return to_float32(values)


def _story_image(scene: Any, path: str | None, fit: str, what: str, fix: str) -> np.ndarray | None:
    """A keyframe file of the story at ``scene``'s size, or None without one; ChainError (naming ``what``
    and ``fix``) if the file went missing or cannot be read."""
    if not path:
        return None
    if not os.path.isfile(path):
        raise ChainError(f"scene '{scene.id}': {what} {path} is missing (it was there when the story was loaded: "
                         f"moved or deleted since?); put it back, or {fix}")
    try:
        return load_keyframe(path, scene.width, scene.height, fit)
    except ValueError as exc:
        raise ChainError(f"scene '{scene.id}': {what}: {exc}") from None


def keyframe_image(scene: Any, fit: str = "crop") -> np.ndarray | None:
    """The scene's keyframe at its size, or None without one; ChainError if the file went missing."""
    return _story_image(scene, scene.keyframe, fit, "keyframe file",
                        f"remove scenes[{scene.index - 1}].keyframe from story.json and reload the story")


def previous_last_frame(run: ledger.Run, previous_id: str) -> tuple[str | None, str | None]:
    """``(path of scene previous_id's last-frame PNG, None)`` if usable, else ``(None, why not)``."""
    record = ledger.read_scene(run, previous_id)
    if record is None:
        return None, f"previous scene '{previous_id}' has not been rendered in run {run.run_id}"
    if record.get("Success") is not True:
        errors = "; ".join(str(e) for e in record.get("Errors") or []) or "no error recorded"
        return None, f"previous scene '{previous_id}' failed in run {run.run_id} ({errors})"
    path = ledger.scene_paths(run, previous_id).last_frame
    if not os.path.isfile(path):
        return None, f"previous scene '{previous_id}' has no saved last frame ({path} is missing)"
    return path, None


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two [H,W,3] images of one size are pixel-equal within 1/255 (on the 8-bit grid)."""
    x, y = to_uint8(a).astype(np.int16), to_uint8(b).astype(np.int16)
    return x.shape == y.shape and int(np.max(np.abs(x - y))) <= SAME_TOLERANCE


def next_keyframe_image(scene: Any, fit: str = "crop") -> np.ndarray | None:
    """The next scene's keyframe fitted to *this* scene's size, or None (last scene, or no keyframe)."""
    return _story_image(scene, getattr(scene, "next_keyframe", None), fit, "the next scene's keyframe",
                        "set end_image to another mode")


def end_image(scene: Any, start: np.ndarray, keyframe: np.ndarray | None, mode: str = END_AUTO,
              fit: str = "crop") -> tuple[np.ndarray | None, str, str | None, str | None]:
    """``(end image or None, FLF2VEnd, note, warning)`` for ``mode`` (see the module docstring).

    note says why the end is what it is when that is not obvious; warning is set when the end is
    not what ``mode`` asked for, or when an explicitly asked end image equals the start image.
    """
    if mode not in END_CHOICES:
        raise ChainError(f"end_image {mode!r} is not one of {', '.join(END_CHOICES)}")
    if mode == END_NONE:
        return None, FLF2V_END_NONE, "end_image is 'none': image-to-video", None
    if mode == END_AUTO:
        if keyframe is None:
            return None, FLF2V_END_NONE, "auto: the scene has no keyframe, so no end image (image-to-video)", None
        if same_image(keyframe, start):
            return None, FLF2V_END_NONE, ("auto: the keyframe is the start image, so no end image "
                                          "(image-to-video; an end equal to the start loops the clip back)"), None
        return keyframe, FLF2V_END_KEYFRAME, None, None
    if mode == END_KEYFRAME:
        image, kind, missing = keyframe, FLF2V_END_KEYFRAME, "the scene has no keyframe"
    else:
        image, kind = next_keyframe_image(scene, fit), FLF2V_END_NEXT
        missing = ("it is the last scene" if getattr(scene, "next_scene", None) is None
                   else f"the next scene '{scene.next_scene}' has no keyframe")
    if image is None:
        why = f"end_image '{mode}' asked for, but {missing}: no end image (image-to-video)"
        return None, FLF2V_END_NONE, why, why
    if same_image(image, start):
        why = (f"end_image '{mode}' is the start image (equal within 1/255): used as asked, so the clip "
               "loops back to where it began; pick 'auto' or 'none' for image-to-video")
        return image, kind, why, why
    return image, kind, None, None


def chain_start(run: ledger.Run, scene: Any, *, fit: str = "crop", chain: str = CHAIN_FROM_STORY,
                end_mode: str = END_AUTO) -> ChainStart:
    """Start and end image of ``scene`` (a SCENE) in ``run``; see the module docstring for the rules.

    chain: ``from story`` (the scene's own ``chain`` setting; the first scene never chains), ``on``
    (chain even if the story says not to) or ``off`` (always start from the keyframe).
    end_mode: ``auto``, ``keyframe``, ``next scene's keyframe`` or ``none`` (:func:`end_image`).
    Raises ChainError for a SCENE of another story, a scene index past the run's story, or a
    keyframe file that has gone missing.
    """
    if chain not in CHAIN_CHOICES:
        raise ChainError(f"chain {chain!r} is not one of {', '.join(CHAIN_CHOICES)}")
    if end_mode not in END_CHOICES:
        raise ChainError(f"end_image {end_mode!r} is not one of {', '.join(END_CHOICES)}")
    if fit not in FIT_MODES:
        raise ChainError(f"fit {fit!r} is not one of {', '.join(FIT_MODES)}")
    info = check_scene_in_run(run, scene)
    keyframe = keyframe_image(scene, fit)
    wanted = bool(scene.chain) if chain == CHAIN_FROM_STORY else chain == CHAIN_ON
    previous_id = info.scene_ids[scene.index - 2] if scene.index > 1 else None

    start, source, start_file, fallback = None, SOURCE_NONE, None, None
    if wanted and previous_id is not None:
        path, fallback = previous_last_frame(run, previous_id)
        if path is not None:
            start = fit_pixels(load_png(path, dtype="uint8", as_torch=False), scene.width, scene.height, fit)
            source, start_file = SOURCE_PREVIOUS, path
    if start is None and keyframe is not None:
        start, source, start_file = keyframe, SOURCE_KEYFRAME, scene.keyframe
    if start is None:
        start = grey_frame(scene.width, scene.height)
    if fallback is not None:
        fallback += "; started from the keyframe" if source == SOURCE_KEYFRAME else "; started from mid-grey"
    end, flf2v_end, end_note, end_warning = end_image(scene, start, keyframe, end_mode, fit)
    return ChainStart(start=start, end=end, source=source, fallback=fallback, previous_scene=previous_id,
                      start_file=start_file, end_mode=end_mode, flf2v_end=flf2v_end, end_note=end_note,
                      end_warning=end_warning)


def begin_scene(run: ledger.Run, scene: Any, result: ChainStart, *, fit: str = "crop") -> dict[str, Any]:
    """Log the scene's start (``stage_start``, stage ``scene``) with device memory now; warn on a fallback.

    The event carries what Scene Save needs to close the stage: the full memory snapshot, the CUDA
    reserved bytes (peak tracking), the chain's source and fallback, and the images as used:
    ``start_sha256`` / ``end_sha256`` (:func:`image_sha256`; None without an end image),
    ``flf2v_end`` (keyframe | next-keyframe | none), ``end_mode`` and ``end_note``.
    """
    snapshot = measure.memory_snapshot()
    reserved = measure._cuda_peak_reset(snapshot)
    if result.fallback:
        ledger.warn(run, f"not chained: {result.fallback}", scene=scene.id)
    if result.end_warning:
        ledger.warn(run, result.end_warning, scene=scene.id)
    return events.append_event(
        run.run_dir, events.STAGE_START, stage=SCENE_STAGE, scene=scene.id,
        device=snapshot.device_name, vram_before_mb=snapshot.vram_used_mb, ram_before_mb=snapshot.ram_used_mb,
        device_type=snapshot.device_type, device_index=snapshot.device_index, vram_total=snapshot.vram_total,
        vram_free=snapshot.vram_free, cuda_reserved=reserved, flf2v_source=result.source,
        flf2v_fallback=result.fallback, previous_scene=result.previous_scene,
        start_file=ledger.relative_path(run, result.start_file)
        if result.start_file and result.start_file.startswith(run.run_dir + os.sep) else result.start_file,
        fit=fit, start_sha256=image_sha256(result.start),
        end_sha256=image_sha256(result.end) if result.end is not None else None, flf2v_end=result.flf2v_end,
        end_mode=result.end_mode, end_note=result.end_note, end_warning=result.end_warning,
    )


def describe_start(scene: Any, result: ChainStart) -> str:
    """Chain Start's report: where the scene starts and ends, and why."""
    start = f"Scene '{scene.id}' ({scene.index}) starts from {result.source}"
    if result.start_file:
        start += f" ({os.path.basename(result.start_file)})"
    lines = [start + (f"; fallback: {result.fallback}" if result.fallback else "")]
    lines.append(f"End image ({result.end_mode}): {result.flf2v_end}" + (f": {result.end_note}" if result.end_note
                                                                         and not result.end_warning else ""))
    if result.end_warning:
        lines.append(f"WARNING: {result.end_warning}")
    return "\n".join(lines)
