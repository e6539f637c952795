"""Run nodes: pick the run a prompt writes into (RUN), and write a run's telemetry files."""

from __future__ import annotations

import logging
from typing import Any

from .. import comfy
from . import ledger
from .writer import write_telemetry

REQUIRES = ("pydantic",)
log = logging.getLogger("gemdirect")


def story_info(story: Any) -> ledger.StoryInfo:
    """The ledger's plain StoryInfo from a STORY value (LoadedStory: ``.plan``, ``.raw``, ``.path``...)."""
    plan = story.plan
    first = plan.scenes[0] if plan.scenes else None
    settings = {} if first is None else {
        "width": first.width, "height": first.height, "frames": first.length, "cfg": first.cfg, "steps": first.steps,
    }
    return ledger.StoryInfo(
        story_id=plan.story_id, title=plan.title,
        scenes=tuple(ledger.SceneInfo(scene.id, scene.title) for scene in plan.scenes),
        logline=plan.logline or "", directors_vision=plan.directors_vision or "",
        file=plan.file or story.path, story_dir=plan.story_dir, preset=plan.preset, preset_settings=settings,
        warnings=tuple(plan.warnings), content_hash=story.content_hash,
    )


class GemDirectRun:
    """Start, join or resume the run (output/gemdirect/<story>/<run-id>/) that this scene renders into."""

    CATEGORY = "gemDirect/run"
    FUNCTION = "start"
    RETURN_TYPES = ("RUN", "STRING")
    RETURN_NAMES = ("run", "run_dir")
    OUTPUT_TOOLTIPS = (
        "The run this prompt writes into; feed it to Scene Save, Story Render and the Telemetry Writer.",
        "The run's folder (absolute path), for display or a file-saving node.",
    )
    DESCRIPTION = ("A run is the story's working copy: continue (the default) renders into the story's newest run, "
                   "finished or not, so re-rendering a scene replaces it in place; new starts a fresh run; a run "
                   "id resumes that run.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "story": ("STORY", {"tooltip": "From Story Loader; its id names the run's folder."}),
                "scene": ("SCENE", {"tooltip": "From Scene Select: the scene this prompt renders."}),
                "mode": (list(ledger.MODES), {
                    "default": ledger.MODE_CONTINUE,
                    "tooltip": "continue: render into the story's newest run, finished or not (a new run only when "
                    "the story has none); a re-rendered scene replaces its own files, a reordered story keeps the "
                    "run. new: start a new run. Ignored when run_id is set. (Saved workflows' 'auto' is read as "
                    "continue.)",
                }),
            },
            "optional": {
                "run_id": ("STRING", {
                    "default": "",
                    "tooltip": "Resume this run (e.g. 20261123-214501-3fa2, the name of its folder under "
                    "output/gemdirect/<story>/) to re-render a scene in it. Leave empty to use the mode.",
                }),
            },
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # which run to use depends on the ledger on disk: decide on every prompt

    @classmethod
    def VALIDATE_INPUTS(cls, mode, run_id=""):
        # Naming mode here makes ComfyUI skip its own combo check, so the old name 'auto' still validates.
        if mode not in ledger.MODES and mode not in ledger.MODE_ALIASES:
            return f"mode {mode!r} is not one of {', '.join(ledger.MODES)}"
        if run_id and run_id.strip():
            try:
                ledger.check_run_id(run_id.strip())
            except ledger.RunError as exc:
                return str(exc)
        return True

    def start(self, story: Any, scene: Any, mode: str = ledger.MODE_CONTINUE, run_id: str = ""):
        from .freshness import scene_states

        if mode in ledger.MODE_ALIASES:
            log.info("[gemDirect] Run mode '%s' is the old name of '%s' (the story's newest run); set the widget "
                     "to '%s'", mode, ledger.MODE_ALIASES[mode], ledger.MODE_ALIASES[mode])
        run = ledger.resolve_run(mode, story_info(story), scene.id, story.raw, run_id=run_id)
        status = ledger.run_status(run)
        try:
            states, states_error = [state.to_json() for state in scene_states(run, story.plan.scenes)], None
        except (ledger.RunError, OSError, ValueError) as exc:  # the states are for display: never block the scene
            states, states_error = None, str(exc)
            log.warning("[gemDirect] scene states of run %s not known: %s", run.run_id, exc)
        log.info("[gemDirect] scene '%s' -> %s", scene.id, status.describe())
        comfy.send_event("gemdirect.run", {"run_id": run.run_id, "story_id": run.story_id, "run_dir": run.run_dir,
                                           "scene": scene.id, "done": list(status.done),
                                           "failed": list(status.failed), "pending": list(status.pending),
                                           "scene_states": states, "scene_states_error": states_error})
        return (run, run.run_dir)


class GemDirectTelemetryWriter:
    """Write the run's artifact-metadata.json, run-summary.txt and output/gemdirect/latest-run.json."""

    CATEGORY = "gemDirect/run"
    FUNCTION = "write"
    OUTPUT_NODE = True
    RETURN_TYPES = ("RUN", "STRING")
    RETURN_NAMES = ("run", "summary")
    OUTPUT_TOOLTIPS = (
        "The same run, passed through.",
        "The run summary (run-summary.txt) as text.",
    )
    DESCRIPTION = ("Consolidates the run's scene records, events and post stages into its telemetry files. "
                   "Refuses to write telemetry that breaks the schema and names the field.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "run": ("RUN", {"tooltip": "From Run, Scene Save or Story Render: the run to write telemetry for. "
                                "Connect it after the nodes that record into the run so it runs last."}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # the ledger on disk changes between prompts

    def write(self, run: ledger.Run):
        files = write_telemetry(run)
        comfy.send_event("gemdirect.telemetry", {"run_id": run.run_id, "story_id": run.story_id,
                                                 "metadata": files.metadata_path,
                                                 "progress": files.metadata.get("Progress")})
        return {"ui": {"text": [files.summary]}, "result": (run, files.summary)}


NODE_CLASS_MAPPINGS = {
    "GemDirectRun": GemDirectRun,
    "GemDirectTelemetryWriter": GemDirectTelemetryWriter,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GemDirectRun": "Run (gemDirect)",
    "GemDirectTelemetryWriter": "Telemetry Writer (gemDirect)",
}
