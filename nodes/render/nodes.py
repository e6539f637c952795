"""Story Render node: the run's scenes joined, interpolated, upscaled and encoded into the final film."""

from __future__ import annotations

import logging
from typing import Any

from .. import comfy
from ..upscale.sizing import size_inputs

REQUIRES = ("numpy", "av", "pydantic")  # torch comes with ComfyUI; engines are imported when the node runs
log = logging.getLogger("gemdirect")

FROM_STORY = "from story"
INTERPOLATION_CHOICES = (FROM_STORY, "off", "target fps")
UPSCALE_CHOICES = (FROM_STORY, "off", "factor", "long side", "exact")
ON_MISSING = {"render what exists": "skip", "stop": "stop"}
ON_STALE_CHOICES = ("warn", "stop")
AUDIO_CHOICES = ("auto", "off")
WHEN_NOW = "now"
WHEN_LAST = "after the last scene"
WHEN_CHOICES = (WHEN_NOW, WHEN_LAST)
RIFE_SCALES = ("1.0", "0.5", "0.25", "2.0")  # as Interpolate (gemDirect)'s scale
NO_RIFE = "none (optical flow)"  # RIFE Loader's first choice
NO_UPSCALE = "none (Lanczos)"  # Upscale Model Loader's first choice


def render_settings(story_post: Any, *, interpolation: str, target_fps: float, rife_connected: bool, upscale: str,
                    factor: float, long_side: int, width: int, height: int, on_missing: str, audio: str,
                    crf: int, on_stale: str = "warn", upscale_connected: bool = False, scale: str = "1.0",
                    ensemble: bool = False) -> Any:
    """RenderSettings from the node's widgets; ``from story`` takes the story's preset (a PostPlan).

    A preset that asks for RIFE (or a model upscale) while no model is chosen falls back to optical
    flow (Lanczos) and says so: ``interpolation_fallback`` / ``upscale_fallback`` become warnings in the
    report, the run ledger and the UI event, and Post.InterpolationFallback / Post.UpscaleFallback."""
    from ..upscale.sizing import OutputSize
    from .engine import RenderSettings
    from .join import RenderError

    method = "rife" if rife_connected else "flow"
    interpolation_fallback = upscale_fallback = None
    if interpolation == FROM_STORY:
        enabled = bool(story_post and story_post.interpolation and story_post.target_fps)
        interpolation_mode, rate = (method if enabled else "off"), (story_post.target_fps if enabled else None)
        if enabled and story_post.interpolation_method == "rife" and not rife_connected:
            interpolation_fallback = (f"the preset asks for RIFE interpolation but no RIFE model is chosen "
                                      f"(RIFE Loader on '{NO_RIFE}' or not connected): optical flow used instead; "
                                      "choose a RIFE file in RIFE Loader (gemDirect) to get RIFE")
    elif interpolation == "target fps":
        interpolation_mode, rate = method, target_fps
    elif interpolation == "off":
        interpolation_mode, rate = "off", None
    else:
        raise RenderError(f"interpolation '{interpolation}' is not one of {', '.join(INTERPOLATION_CHOICES)}")
    if upscale == FROM_STORY:
        enabled = bool(story_post and story_post.upscale and story_post.upscale_factor != 1.0)
        size = OutputSize(mode="factor", factor=story_post.upscale_factor) if enabled else None
        if enabled and story_post.upscale_method == "model" and not upscale_connected:
            upscale_fallback = (f"the preset asks for a model upscale but no upscale model is chosen "
                                f"(Upscale Model Loader on '{NO_UPSCALE}' or not connected): Lanczos used instead; "
                                "choose an ESRGAN-family file in Upscale Model Loader (gemDirect)")
    elif upscale == "off":
        size = None
    elif upscale in UPSCALE_CHOICES:
        size = OutputSize(mode=upscale, factor=factor, long_side=long_side, width=width, height=height)
    else:
        raise RenderError(f"upscale '{upscale}' is not one of {', '.join(UPSCALE_CHOICES)}")
    if on_missing not in ON_MISSING:
        raise RenderError(f"on_missing '{on_missing}' is not one of {', '.join(ON_MISSING)}")
    if scale not in RIFE_SCALES:
        raise RenderError(f"scale '{scale}' is not one of {', '.join(RIFE_SCALES)}")
    return RenderSettings(interpolation=interpolation_mode, target_fps=rate, upscale=size,
                          on_missing=ON_MISSING[on_missing], audio=audio, crf=crf, on_stale=on_stale,
                          rife_scale=float(scale), ensemble=bool(ensemble),
                          interpolation_fallback=interpolation_fallback, upscale_fallback=upscale_fallback)


class GemDirectStoryRender:
    """Join a run's scenes in the story's current order into the final film (MP4 with audio) and its telemetry."""

    CATEGORY = "gemDirect/render"
    FUNCTION = "render"
    OUTPUT_NODE = True
    RETURN_TYPES = ("RUN", "STRING", "STRING")
    RETURN_NAMES = ("run", "final_path", "report")
    OUTPUT_TOOLTIPS = (
        "The same run, now with its final film and Post telemetry.",
        "Absolute path of the final film (output/gemdirect/<story>/<run>/final/<story>.mp4).",
        "What was made: frames, size, fps, scenes and joins, warnings, and the validator's verdict.",
    )
    DESCRIPTION = ("Joins the run's saved scenes (read from their lossless masters) in the story's current order "
                   "(cut, crossfade, VACE clip; chained scenes continue without a repeated frame), "
                   "interpolates to the target fps, upscales, and encodes the final MP4 with audio, streaming "
                   "chunk by chunk. Writes the run's telemetry and validates it.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "run": ("RUN", {"tooltip": "From Run or Scene Save: the run whose scenes make the film. Queue this "
                                "after the last scene (or on its own later, with the run's id in Run)."}),
                "interpolation": (list(INTERPOLATION_CHOICES), {
                    "default": FROM_STORY,
                    "tooltip": "from story: the preset's interpolation (e.g. Standard: to 24 fps). target fps: to "
                    "target_fps. off: keep the scenes' rate. RIFE when rife_model is connected, else optical "
                    "flow. Frames between two scenes joined by a cut are never blended.",
                }),
                "target_fps": ("FLOAT", {
                    "default": 24.0, "min": 1.0, "max": 240.0, "step": 0.001,
                    "tooltip": "The film's rate when interpolation is target fps (24, 30, 60, 23.976...). At or "
                    "above the scenes' rate.",
                }),
                "upscale": (list(UPSCALE_CHOICES), {
                    "default": FROM_STORY,
                    "tooltip": "from story: the preset's upscale factor. factor / long side / exact: the size "
                    "below. off: keep the scenes' size. With upscale_model connected the model upscales, else "
                    "Lanczos.",
                }),
                **size_inputs("film", "upscale"),
                "on_missing": (list(ON_MISSING), {
                    "default": "render what exists",
                    "tooltip": "A scene not rendered or failed: render what exists (left out with a warning, "
                    "its transitions become cuts) or stop with an error naming the scenes.",
                }),
                "audio_mode": (list(AUDIO_CHOICES), {
                    "default": "auto",
                    "tooltip": "auto: the audio input, else the story's soundtrack, cut or padded with silence "
                    "to the film's length. off: a silent film.",
                }),
                "crf": ("INT", {"default": 19, "min": 0, "max": 51, "step": 1,
                                "tooltip": "x264 quality of the film: 0 lossless, 19 visually clean, higher is "
                                "smaller."}),
                "when": (list(WHEN_CHOICES), {
                    "default": WHEN_NOW,
                    "tooltip": "now: render on every prompt. after the last scene: in a per-scene workflow, "
                    "skip (saying which scenes are still missing) until every scene of the run is rendered, so "
                    "the film is made once, by the prompt that saves the last scene.",
                }),
                "on_stale": (list(ON_STALE_CHOICES), {
                    "default": "warn",
                    "tooltip": "A stale scene (its inputs changed since it was rendered, or it is chained to a "
                    "scene that changed): warn (render it as it is, with a warning per stale scene in the report "
                    "and the telemetry) or stop with an error naming them. Regenerate stale re-renders them.",
                }),
                "scale": (list(RIFE_SCALES), {
                    "default": "1.0",
                    "tooltip": "RIFE estimates motion at this fraction of the frame size: 1.0 up to 1080p, 0.5 for "
                    "4K, 0.25 for 8K; 2.0 for small frames with fine motion. Optical flow uses at most 1.0.",
                }),
                "ensemble": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "RIFE 4.6-4.20: also run each step on the swapped pair and average (about twice the "
                    "time, steadier motion). RIFE 4.21 and newer have none: ignored, with a warning.",
                }),
            },
            "optional": {
                "story": ("STORY", {"tooltip": "From Story Loader: render from this story file as it is now. "
                                    "Empty: the story file the run was started from (re-read, so a reordered "
                                    "timeline renders reordered)."}),
                "rife_model": ("GEMDIRECT_RIFE", {"tooltip": f"From RIFE Loader (gemDirect). '{NO_RIFE}' there, or "
                                                  "not connected: optical flow (a preset asking for RIFE warns)."}),
                "upscale_model": ("UPSCALE_MODEL", {"tooltip": "From Upscale Model Loader (gemDirect) or core's Load "
                                                    f"Upscale Model (ESRGAN family). '{NO_UPSCALE}' or not "
                                                    "connected: Lanczos (a preset asking for a model warns)."}),
                "audio": ("AUDIO", {"tooltip": "Sound for the film (Load Audio); beats the story's soundtrack."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # the scenes on disk and the story file decide: render on every prompt

    @classmethod
    def VALIDATE_INPUTS(cls, interpolation=FROM_STORY, upscale=FROM_STORY, on_missing="render what exists",
                        audio_mode="auto", when=WHEN_NOW, on_stale="warn", scale="1.0", **_inputs):
        for name, value, choices in (("interpolation", interpolation, INTERPOLATION_CHOICES),
                                     ("upscale", upscale, UPSCALE_CHOICES), ("on_missing", on_missing, ON_MISSING),
                                     ("audio_mode", audio_mode, AUDIO_CHOICES), ("when", when, WHEN_CHOICES),
                                     ("on_stale", on_stale, ON_STALE_CHOICES), ("scale", scale, RIFE_SCALES)):
            if value not in choices:
                return f"{name} '{value}' is not one of {', '.join(choices)}"
        return True

    def render(self, run: Any, interpolation: str = FROM_STORY, target_fps: float = 24.0, upscale: str = FROM_STORY,
               factor: float = 2.0, long_side: int = 1920, width: int = 1920, height: int = 1080,
               on_missing: str = "render what exists", audio_mode: str = "auto", crf: int = 19, when: str = WHEN_NOW,
               on_stale: str = "warn", scale: str = "1.0", ensemble: bool = False, story: Any = None,
               rife_model: Any = None, upscale_model: Any = None,
               audio: dict | None = None, unique_id=None, prompt=None):
        from ..chain.save import preview_entry
        from ..run.ledger import run_status
        from .engine import current_story, render_story

        if when == WHEN_LAST:
            waiting = run_status(run).pending
            if waiting:
                report = (f"Story Render waits: scene(s) {', '.join(waiting)} of run {run.run_id} are not rendered "
                          "yet; the film is made by the prompt that saves the last of them.")
                log.info("[gemDirect] %s", report)
                return {"ui": {}, "result": (run, "", report)}
        loaded = current_story(run, story)
        settings = render_settings(loaded.plan.post, interpolation=interpolation, target_fps=target_fps,
                                   rife_connected=rife_model is not None, upscale=upscale, factor=factor,
                                   long_side=long_side, width=width, height=height, on_missing=on_missing,
                                   audio=audio_mode, crf=crf, on_stale=on_stale,
                                   upscale_connected=upscale_model is not None, scale=scale, ensemble=ensemble)
        result = render_story(run, settings, story=loaded, rife_model=rife_model, upscale_model=upscale_model,
                              upscale_name=upscale_model_file(prompt, unique_id) if upscale_model is not None else None,
                              audio=audio, node_id=unique_id)
        report = result.describe()
        log.info("[gemDirect] %s", report.replace("\n", " | "))
        comfy.send_event("gemdirect.render", {"run_id": run.run_id, "story_id": run.story_id, "final": result.path,
                                              "frames": result.post["FinalFrames"], "problems": result.problems,
                                              "warnings": result.warnings, "memory": result.memory,
                                              "fallbacks": {"interpolation": result.post.get("InterpolationFallback"),
                                                            "upscale": result.post.get("UpscaleFallback")},
                                              "stale": [s["SceneId"] for s in result.post.get("StaleScenes") or []]})
        preview = preview_entry(result.path)
        ui = {"images": [preview], "animated": (True,)} if preview else {}
        return {"ui": ui, "result": (run, result.path, report)}


def upscale_model_file(prompt: Any, node_id: Any) -> str | None:
    """The upscale model's file name from the prompt (core's UpscaleModelLoader feeding this node), if any."""
    if not isinstance(prompt, dict) or node_id is None:
        return None
    link = ((prompt.get(str(node_id)) or {}).get("inputs") or {}).get("upscale_model")
    if not isinstance(link, list) or not link:
        return None
    source = prompt.get(str(link[0])) or {}
    name = (source.get("inputs") or {}).get("model_name")
    return name if isinstance(name, str) else None


NODE_CLASS_MAPPINGS = {"GemDirectStoryRender": GemDirectStoryRender}
NODE_DISPLAY_NAME_MAPPINGS = {"GemDirectStoryRender": "Story Render (gemDirect)"}
