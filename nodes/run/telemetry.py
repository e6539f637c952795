"""artifact-metadata.json: the telemetry contract kept from gemDirect1, as pydantic models.

Field names are gemDirect1's, PascalCase, exactly as /docs/telemetry.md lists them; the pack's own
additions sit beside them (``RunCreated``, ``Progress``, ``SceneIndex``, ``FPSExact``, ``Video.Master``,
``FinalFPSExact``, ``Post.Joins``, ``Extra``) and are optional. Unknown fields are refused, so a
misspelt field (``VramDeltaMb``) is caught when it is written, not when a dashboard reads it.

Units: bytes for ``Vram*`` without a suffix, MB (2**20 bytes) for ``*MB``, seconds for
``*Seconds``, milliseconds for ``*Elapsed``, frames per second for ``FPS``; times are UTC ISO-8601.

The published JSON Schema (``docs/schema/artifact-metadata.schema.json``) is generated from these
models; regenerate it after changing them with::

    python -m <pack-folder>.nodes.run.export_schema    # run from the folder above the pack
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_ID = "gemdirect.artifact-metadata/1"
SCHEMA_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "docs", "schema", "artifact-metadata.schema.json",
)
SCHEMA_URL = "https://github.com/gemdirect/gemdirect/blob/main/docs/schema/artifact-metadata.schema.json"

# gemDirect1's thresholds on its pixel score (100 - mean absolute difference in percent).
BOOKEND_FAIL_BELOW = 25.0
BOOKEND_WARN_BELOW = 35.0
# VramDeltaMB must equal VramAfterMB - VramBeforeMB to the 2 decimals the summary prints.
MB_TOLERANCE = 0.005

ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
RESOLUTION = r"^\d+x\d+$"

IsoTime = Annotated[str, Field(pattern=ISO_UTC, description="UTC ISO-8601, e.g. 2026-11-23T21:45:01.123Z")]
Seconds = Annotated[float, Field(ge=0, description="seconds")]
Millis = Annotated[float, Field(ge=0, description="milliseconds")]
MegaBytes = Annotated[float, Field(description="MB (2**20 bytes)")]
Bytes = Annotated[int, Field(ge=0, description="bytes")]
Resolution = Annotated[str, Field(pattern=RESOLUTION, description="WIDTHxHEIGHT in pixels, e.g. 832x480")]
RelativePath = Annotated[str, Field(description="relative to the run folder, forward slashes, e.g. scenes/a.mp4")]


class TelemetryError(ValueError):
    """Telemetry that breaks the schema. ``problems`` holds one line per field at fault."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("telemetry does not match the schema " + SCHEMA_ID + ":\n  " + "\n  ".join(self.problems))


class _Model(BaseModel):
    # strict: "12" is not a number and true is not 1; forbid: misspelt fields are errors; no NaN.
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False,
                              field_title_generator=lambda name, _info: name)


# --------------------------------------------------------------------------- Story


class StoryTelemetry(_Model):
    Id: str = Field(description="the story's id (slug), also its folder under output/gemdirect/")
    Title: str
    Logline: str
    DirectorsVision: str
    File: str = Field(description="the story.json the run was started from (absolute path)")
    StoryDir: str = Field(description="the story's folder (absolute path)")
    SceneCount: int = Field(ge=0, description="scenes in the story (rendered or not)")
    Warnings: list[str]


# --------------------------------------------------------------------------- Scenes[]


class Lora(_Model):
    Name: str = Field(description="LoRA file name as in ComfyUI's loras folder")
    Strength: float
    # gemDirect's own
    Expert: Literal["high", "low"] | None = Field(
        None, description="two-expert models: the only expert it patches; absent when it patches both")


class VideoTelemetry(_Model):
    Path: RelativePath
    DurationSeconds: Seconds | None
    Status: Literal["ready", "processing", "error", "missing"]
    UpdatedAt: IsoTime
    Error: str | None
    # gemDirect's own
    Master: RelativePath | None = Field(
        None, description="the scene's lossless master (scenes/<id>.mkv, FFV1; or the PNG folder "
        "scenes/<id>_frames), which the render reads; null when masters were off. Path stays the MP4 preview")


class GPUTelemetry(_Model):
    Name: str = Field(description="device name, e.g. NVIDIA GeForce RTX 4090 (cpu when there is no GPU)")
    Type: str = Field(description="device type: cuda, mps, xpu, cpu ...")
    Index: int | None = Field(description="device index, null when the type has none")
    VramTotal: Bytes
    VramFreeBefore: Bytes
    VramFreeAfter: Bytes
    VramDelta: int = Field(description="bytes: VramFreeBefore - VramFreeAfter (memory taken by the stage)")
    VramBeforeMB: MegaBytes = Field(description="used before the stage: (VramTotal - VramFreeBefore) in MB")
    VramAfterMB: MegaBytes = Field(description="used after the stage in MB")
    VramDeltaMB: MegaBytes = Field(description="VramAfterMB - VramBeforeMB")
    VramPeakMB: MegaBytes | None = Field(description="highest use during the stage in MB, null if unknown")


class SystemTelemetry(_Model):
    Before: MegaBytes | None = Field(description="system RAM used before the stage, MB")
    After: MegaBytes | None = Field(description="system RAM used after the stage, MB")
    FallbackNotes: list[str] = Field(description="fallbacks taken, e.g. 'RIFE weights missing: optical flow'")


class BookendTelemetry(_Model):
    Score: float = Field(ge=0, le=100, description="100 - mean absolute pixel difference in percent")
    Method: str = Field(description="how Score was measured, e.g. pixel")
    Status: Literal["pass", "warn", "fail"] = Field(description="fail below 25, warn below 35 (pixel score)")


class StartMatchTelemetry(_Model):
    PSNR: float = Field(ge=0, description="dB, first frame against the start image it was given (RGB, 8-bit)")
    SSIM: float = Field(ge=-1, le=1, description="structural similarity of the same pair (luma)")
    Verdict: Literal["pass", "fail"] = Field(description="fail when PSNR is below Threshold")
    Threshold: float = Field(description="PSNR in dB below which the scene did not start on its start image")


class SceneRunTelemetry(_Model):
    QueueStart: IsoTime
    QueueEnd: IsoTime
    DurationSeconds: Seconds
    GPU: GPUTelemetry
    System: SystemTelemetry
    FLF2VEnabled: bool
    FLF2VSource: Literal["keyframe", "previous-scene", "none"]
    FLF2VFallback: str | None = Field(description="why the scene was not chained, null when it was")
    BookendSimilarity: BookendTelemetry | None = Field(
        description="last frame of the previous scene against this scene's first; null for the first scene")
    FLF2VEnd: Literal["keyframe", "next-keyframe", "none"] | None = Field(
        None, description="the end image the scene was given (Chain Start's end_image); none: image-to-video; "
        "null when Chain Start did not run")
    StartMatch: StartMatchTelemetry | None = Field(
        None, description="chained scenes: the first frame against the start image it was given; null otherwise")


class SceneTelemetry(_Model):
    SceneId: str
    SceneTitle: str
    Prompt: str
    NegativePrompt: str
    KeyframeSource: str | None = Field(description="keyframe image the scene started from, null for none")
    Seed: int = Field(ge=0)
    CFG: float = Field(ge=0)
    Steps: int = Field(ge=1)
    Sampler: str
    Models: list[str] = Field(description="model file names used")
    Loras: list[Lora]
    FrameCount: int = Field(ge=1)
    DurationSeconds: Seconds
    FPS: float = Field(gt=0, description="frames per second")
    Resolution: Resolution
    Success: bool
    Warnings: list[str]
    Errors: list[str]
    AttemptsRun: int = Field(ge=1, description="how many times this scene was rendered in this run")
    Video: VideoTelemetry
    Telemetry: SceneRunTelemetry
    # gemDirect's own
    SceneIndex: int | None = Field(None, ge=1, description="1-based position in the story's play order")
    FPSExact: str | None = Field(None, pattern=r"^\d+(/\d+)?$", description="exact rate, e.g. 24000/1001")
    Extra: dict[str, Any] | None = Field(None, description="room-specific details (free form)")


# --------------------------------------------------------------------------- Post


class JoinTelemetry(_Model):
    From: str = Field(description="scene id before the join")
    To: str = Field(description="scene id after the join")
    Asked: str = Field(description="the transition the story asks for: cut, crossfade or vace")
    Used: str = Field(description="what the film got: cut, continue, crossfade, vace or vace->crossfade")
    Frames: int = Field(ge=0, description="frames the join takes from the scenes: the overlap (crossfade), "
                        "the frames of To dropped (continue: 1), From's tail + To's head a VACE clip replaces "
                        "(Inserted frames go in instead); 0 for a cut")
    Reason: str | None = Field(description="why Used differs from Asked (or why it is what it is), null when equal")
    FilmStart: int = Field(ge=0, description="film frame (0-based, before interpolation) where the join begins: "
                           "its first blended frame, or To's first frame shown for a cut or continue")
    # the VACE joiner's (vace joins only)
    Clip: str | None = Field(None, description="vace: the transition master used (relative to the run folder), "
                             "null when none was usable (Reason says why)")
    Inserted: int | None = Field(None, ge=0, description="vace: frames of the transition clip put in place of "
                                 "Frames frames of From's tail and To's head (null without a clip)")


class StaleScene(_Model):
    SceneId: str
    Reasons: list[str] = Field(description="what changed since the scene was rendered (fields, predecessor)")


class StageMemory(_Model):
    Stage: str = Field(description="the post stage that asked for room: interpolate or upscale")
    Reason: str = Field(description="start (before its model moved to the device) or out of memory (a back-off)")
    Device: str
    NeedMB: float = Field(ge=0, description="bytes asked for: the stage's estimate plus ComfyUI's reserve")
    FreeBeforeMB: float = Field(ge=0)
    FreeAfterMB: float = Field(ge=0)
    CachedModelsBeforeMB: float = Field(ge=0, description="models ComfyUI held on the device before")
    CachedModelsAfterMB: float = Field(ge=0, description="... and after (lower: ComfyUI unloaded them)")
    Unloaded: list[str] = Field(description="models ComfyUI unloaded to make room")


class PostTelemetry(_Model):
    InterpolationMethod: str = Field(pattern=r"^(rife-4\.[0-9A-Za-z.]+|flow|none)$",
                                     description="rife-4.x (IFNet version), flow, or none")
    InterpolationElapsed: Millis
    UpscaleMethod: str = Field(description="upscale model file name, lanczos, or none")
    UpscaleElapsed: Millis
    TransitionMethod: str = Field(description="how scenes were joined: cut, crossfade, vace (or mixed)")
    FinalFPS: float = Field(gt=0, description="frames per second of the final video")
    FinalResolution: Resolution
    FinalFrames: int = Field(ge=1)
    FinalDurationSeconds: Seconds
    FinalPath: RelativePath
    AudioKept: bool
    # gemDirect's own
    FinalFPSExact: str | None = Field(None, pattern=r"^\d+(/\d+)?$", description="exact rate, e.g. 24000/1001")
    Joins: list[JoinTelemetry] | None = Field(None, description="every join between two scenes, in film order")
    StaleScenes: list[StaleScene] | None = Field(
        None, description="scenes rendered into the film although stale (inputs or chained predecessor changed)")
    InterpolationFallback: str | None = Field(
        None, description="why InterpolationMethod is not what the preset asked for (e.g. RIFE asked, no RIFE "
        "model chosen: flow), null when it is")
    UpscaleFallback: str | None = Field(
        None, description="why UpscaleMethod is not what the preset asked for (a model asked, none chosen: "
        "lanczos), null when it is")
    Memory: list[StageMemory] | None = Field(
        None, description="each time a post stage asked ComfyUI to free memory for it, with the figures")
    Extra: dict[str, Any] | None = Field(None, description="room-specific details (free form)")


class ProgressTelemetry(_Model):
    ScenesDone: list[str]
    ScenesFailed: list[str]
    ScenesPending: list[str]
    Finished: bool = Field(description="the final video is rendered and recorded")


class ArtifactMetadata(_Model):
    model_config = ConfigDict(
        title="gemDirect artifact metadata",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_URL},
    )

    Schema: Literal["gemdirect.artifact-metadata/1"]
    RunId: str = Field(pattern=r"^\d{8}-\d{6}-[0-9a-f]{4}$", description="YYYYMMDD-HHMMSS-xxxx (UTC)")
    Timestamp: IsoTime = Field(description="when this file was written (UTC)")
    RunDir: str = Field(description="the run folder (absolute, forward slashes)")
    Story: StoryTelemetry
    Scenes: list[SceneTelemetry] = Field(description="recorded scenes in story order")
    Post: PostTelemetry | None = Field(description="post stages and the final video; null until rendered")
    Preset: str
    Warnings: list[str]
    # gemDirect's own
    RunCreated: IsoTime | None = Field(None, description="when the run was started (UTC)")
    Progress: ProgressTelemetry | None = None


# --------------------------------------------------------------------------- checking


def _path(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", part):
            text += f".{part}" if text else part
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: Mapping[str, Any]) -> tuple[str, str]:
    path = _path(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return path, "missing (a required field of " + SCHEMA_ID + ")"
    if kind == "extra_forbidden":
        return path, "is not a field of " + SCHEMA_ID + " (misspelt? names are PascalCase; see docs/telemetry.md)"
    return path, f"{error['msg']} (got {_short(error.get('input'))})"


def _scene_label(data: Any, index: int) -> str:
    try:
        return f" (scene '{data['Scenes'][index]['SceneId']}')"
    except (KeyError, IndexError, TypeError):
        return ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _relative_path_problems(where: str, value: Any) -> list[str]:
    if not isinstance(value, str):
        return []
    if "\\" in value:
        return [f"{where} = {value!r} has a backslash; write it relative to the run folder with forward "
                "slashes (e.g. scenes/a.mp4)"]
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value) or ".." in value.split("/"):
        return [f"{where} = {value!r} is not inside the run folder; write it relative to it (e.g. scenes/a.mp4)"]
    return []


def scene_rule_problems(scene: Any, where: str = "") -> list[str]:
    """Checks a JSON Schema cannot express, for one ``Scenes[]`` entry; ``where`` prefixes the paths."""
    problems: list[str] = []
    gpu = _dig(scene, "Telemetry", "GPU")
    before, after, delta = (_number(_dig(gpu, key)) for key in ("VramBeforeMB", "VramAfterMB", "VramDeltaMB"))
    if None not in (before, after, delta) and abs(delta - (after - before)) > MB_TOLERANCE:
        problems.append(f"{where}Telemetry.GPU.VramDeltaMB = {delta:g} but VramAfterMB - VramBeforeMB = "
                        f"{after:g} - {before:g} = {after - before:.2f}; VramDeltaMB must be After - Before")
    free_before, free_after, delta_bytes = (_dig(gpu, key) for key in ("VramFreeBefore", "VramFreeAfter", "VramDelta"))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (free_before, free_after, delta_bytes)) and \
            delta_bytes != free_before - free_after:
        problems.append(f"{where}Telemetry.GPU.VramDelta = {delta_bytes} but VramFreeBefore - VramFreeAfter = "
                        f"{free_before - free_after}; VramDelta is the memory the stage took, in bytes")
    problems += _relative_path_problems(f"{where}Video.Path", _dig(scene, "Video", "Path"))
    problems += _relative_path_problems(f"{where}Video.Master", _dig(scene, "Video", "Master"))
    return problems


def rule_problems(data: Any) -> list[str]:
    """Checks beyond the JSON Schema for a whole metadata document (the equations and path rules)."""
    problems: list[str] = []
    scenes = data.get("Scenes") if isinstance(data, Mapping) else None
    if isinstance(scenes, list):
        for index, scene in enumerate(scenes):
            problems += scene_rule_problems(scene, f"Scenes[{index}]{_scene_label(data, index)}.")
    problems += _relative_path_problems("Post.FinalPath", _dig(data, "Post", "FinalPath"))
    return problems


def _check(model: type[BaseModel], data: Any, label: Any = None) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        checked = model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path, message = _describe(error)
            loc = error["loc"]
            if label is not None and len(loc) >= 2 and loc[0] == "Scenes" and isinstance(loc[1], int):
                path = f"Scenes[{loc[1]}]{_scene_label(label, loc[1])}" + path[len(f"Scenes[{loc[1]}]"):]
            problems.append(f"{path or '(document)'}: {message}")
        return None, problems
    return checked.model_dump(mode="json"), []


def metadata_problems(data: Any) -> list[str]:
    """Everything wrong with an artifact-metadata document, one line each (empty list: it is valid)."""
    _value, problems = _check(ArtifactMetadata, data, data)
    return problems + rule_problems(data)


def check_metadata(data: Any) -> dict[str, Any]:
    """``data`` as the schema normalises it; TelemetryError naming every field at fault otherwise."""
    value, problems = _check(ArtifactMetadata, data, data)
    problems += rule_problems(data)
    if problems:
        raise TelemetryError(problems)
    return value  # type: ignore[return-value]


def check_scene_record(record: Any) -> dict[str, Any]:
    """One ``Scenes[]`` entry checked on its own; errors read ``scene 'b': Telemetry.GPU.VramDeltaMB: ...``."""
    value, problems = _check(SceneTelemetry, record)
    problems += scene_rule_problems(record)
    if problems:
        scene = _dig(record, "SceneId")
        raise TelemetryError([f"scene {scene!r}: {problem}" for problem in problems])
    return value  # type: ignore[return-value]


def check_post_record(post: Any) -> dict[str, Any]:
    """The ``Post`` block checked on its own; errors read ``Post.FinalFPS: ...``."""
    value, problems = _check(PostTelemetry, post)
    problems = [f"Post.{problem}" for problem in problems]
    problems += _relative_path_problems("Post.FinalPath", _dig(post, "FinalPath"))
    if problems:
        raise TelemetryError(problems)
    return value  # type: ignore[return-value]


# --------------------------------------------------------------------------- the published schema


def metadata_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of artifact-metadata.json, generated from the models."""
    return ArtifactMetadata.model_json_schema(mode="validation")


def schema_text() -> str:
    """The schema file's exact text (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(metadata_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schema_file(path: str = SCHEMA_FILE) -> str:
    """Regenerate ``docs/schema/artifact-metadata.schema.json`` (atomically); returns its path."""
    from .atomic import atomic_write_text

    atomic_write_text(path, schema_text())
    return path

