"""Story nodes: load a story.json (STORY) and pick one scene of it (SCENE + the plain values)."""

from __future__ import annotations

import hashlib
import json
import logging
import os

from .. import comfy
from ..paths import resolve_inside
from .demo import DEMO_FOLDER, install_demo_story
from .keyframe import grey_frame, load_keyframe
from .plan import LoadedStory, ScenePlan, describe_plan, load_and_plan
from .presets import FROM_STORY, NO_PRESET, available_presets

REQUIRES = ("pydantic", "numpy", "PIL")
log = logging.getLogger("gemdirect")
STORY_FOLDER = "gemdirect"  # under ComfyUI's input folder
NO_STORIES = "(no stories: put one in input/gemdirect/)"


def stories_folder() -> str:
    return os.path.join(comfy.input_directory(), STORY_FOLDER)


def list_stories() -> list[str]:
    """Story files under input/gemdirect/ (relative, '/' separated), installing the demo once."""
    root = stories_folder()
    if not os.path.exists(os.path.join(root, DEMO_FOLDER)):
        try:
            install_demo_story(os.path.join(root, DEMO_FOLDER))
        except OSError as exc:  # a read-only input folder must not break the node list
            log.warning("[gemDirect] could not install the demo story into %s: %s", root, exc)
    found = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        depth = os.path.relpath(dirpath, root).count(os.sep)
        if depth >= 3:
            dirnames[:] = []
        for name in files:
            if name.endswith(".json") and not name.startswith(".") and not name.endswith(".schema.json"):
                found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(found) or [NO_STORIES]


def story_path(name: str) -> str:
    """Absolute path of story ``name`` (as listed); ValueError if it is not inside input/gemdirect/."""
    root = stories_folder()
    path = resolve_inside(root, name)
    if path is None or path == os.path.realpath(root):
        raise ValueError(f"story '{name}' is not inside {root}; pick a story from the list")
    return path


def _story_fingerprint(path: str) -> str:
    """Hash of the story file's bytes and of the files it points at (keyframes, control zips: size and time)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return f"unreadable:{exc}"
    digest.update(data)
    try:
        raw = json.loads(data)
        scenes = [s for s in raw.get("scenes", []) if isinstance(s, dict)]
        refs = [s.get("keyframe") for s in scenes]
        refs += [s["control"].get("sequence") for s in scenes if isinstance(s.get("control"), dict)]
    except (ValueError, AttributeError):
        refs = []
    folder = os.path.dirname(path)
    for ref in refs:
        if isinstance(ref, str):
            try:
                stat = os.stat(os.path.join(folder, ref))
                digest.update(f"{ref}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            except OSError:
                digest.update(f"{ref}:missing".encode())
    return digest.hexdigest()


class GemDirectStoryLoader:
    """Load a story.json from ComfyUI's input/gemdirect/ folder and plan every scene."""

    CATEGORY = "gemDirect/story"
    FUNCTION = "load"
    RETURN_TYPES = ("STORY", "INT", "STRING")
    RETURN_NAMES = ("story", "scene_count", "plan")
    OUTPUT_TOOLTIPS = (
        "The validated story with its scene plan; feed it to Scene Select.",
        "How many scenes the story has (set ComfyUI's batch count to this to render them all).",
        "The scene plan as text: frames, size, seed, cfg, steps and warnings per scene.",
    )
    DESCRIPTION = "Reads a story.json, checks it (errors name the field) and plans each scene for WAN 2.2."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "story": (list_stories(), {
                    "tooltip": "A story file in ComfyUI's input/gemdirect/ folder (one folder per story, "
                    "with its keyframes beside it). The demo story is installed there on first use.",
                }),
                "preset": ([FROM_STORY, NO_PRESET, *available_presets()], {
                    "default": FROM_STORY,
                    "tooltip": "Generation settings. 'from story' uses the preset the story's defaults name; "
                    "'none' lets the story's defaults rule. A preset overrides the story's defaults; "
                    "a scene's own values override both.",
                }),
            }
        }

    @classmethod
    def IS_CHANGED(cls, story, preset):
        try:
            return f"{_story_fingerprint(story_path(story))}:{preset}"
        except ValueError:
            return story

    @classmethod
    def VALIDATE_INPUTS(cls, story, preset):
        if story == NO_STORIES:
            return "no story picked: put a story folder with story.json into ComfyUI's input/gemdirect/ and refresh"
        try:
            path = story_path(story)
        except ValueError as exc:
            return str(exc)
        if not os.path.isfile(path):
            return f"story file not found: {path} (refresh the list with R)"
        return True

    def load(self, story: str, preset: str):
        loaded = load_and_plan(story_path(story), preset)
        for warning in loaded.warnings:
            log.warning("[gemDirect] %s: %s", story, warning)
        return (loaded, len(loaded.plan.scenes), describe_plan(loaded.plan))


class GemDirectSceneSelect:
    """Pick scene N of a story: its SCENE plan plus the plain values core WAN nodes take."""

    CATEGORY = "gemDirect/story"
    FUNCTION = "select"
    RETURN_TYPES = ("SCENE", "STRING", "STRING", "INT", "FLOAT", "INT", "INT", "INT", "INT", "FLOAT", "IMAGE", "INT")
    RETURN_NAMES = ("scene", "positive", "negative", "seed", "cfg", "steps", "width", "height", "length",
                    "fps", "keyframe", "split_step")
    OUTPUT_TOOLTIPS = (
        "The scene's full plan, for the chain, save and render nodes.",
        "Positive prompt (to CLIP Text Encode).",
        "Negative prompt (to CLIP Text Encode).",
        "Sampler seed.",
        "CFG (WAN 2.2: about 5.2; 6 or more tends to black frames).",
        "Sampling steps.",
        "Frame width, already a multiple of the model's size step.",
        "Frame height, already a multiple of the model's size step.",
        "Frame count by the model's rule: 4n+1 for WAN, 8n+1 for LTX-Video, any count for SVD.",
        "Frames per second of this scene.",
        "The scene's keyframe fitted to width x height (cover and centre crop), or mid-grey if it has none.",
        "Two-expert WAN 2.2 14B: the step where the high-noise sampler stops (its end_at_step) and the "
        "low-noise one starts (its start_at_step). Half the steps unless the scene, preset or story sets split_step.",
    )
    DESCRIPTION = "Selects one scene by its 1-based position; with 'increment' the batch count walks the story."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "story": ("STORY", {"tooltip": "From Story Loader."}),
                "scene_index": ("INT", {
                    "default": 1, "min": 1, "max": 9999, "step": 1, "control_after_generate": True,
                    "tooltip": "Which scene, counting from 1 in play order. Set the control to 'increment' "
                    "and the batch count to the number of scenes to queue the whole story.",
                }),
            }
        }

    def select(self, story: LoadedStory, scene_index: int):
        import torch

        scene = pick_scene(story, scene_index)
        if scene.keyframe:
            frame = load_keyframe(scene.keyframe, scene.width, scene.height)
        else:
            frame = grey_frame(scene.width, scene.height)
        keyframe = torch.from_numpy(frame).unsqueeze(0).to(comfy.intermediate_device())
        return (scene, scene.prompt, scene.negative, scene.seed, scene.cfg, scene.steps, scene.width, scene.height,
                scene.length, float(scene.fps), keyframe, scene.split_step)


def pick_scene(story: LoadedStory, scene_index: int) -> ScenePlan:
    """Scene ``scene_index`` (1-based) of ``story``; ValueError says the valid range otherwise."""
    scenes = story.plan.scenes
    if not 1 <= scene_index <= len(scenes):
        raise ValueError(
            f"scene_index {scene_index} is outside the story '{story.plan.title}', which has {len(scenes)} "
            f"scene(s): use 1 to {len(scenes)} (with 'increment', set the batch count to {len(scenes)})"
        )
    return scenes[scene_index - 1]


NODE_CLASS_MAPPINGS = {
    "GemDirectStoryLoader": GemDirectStoryLoader,
    "GemDirectSceneSelect": GemDirectSceneSelect,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GemDirectStoryLoader": "Story Loader (gemDirect)",
    "GemDirectSceneSelect": "Scene Select (gemDirect)",
}


# Kept here (not imported from animatic.py) so listing the nodes does not import torch; a test keeps them equal.
ANIMATIC_MOVES = ("push in", "pull out", "pan left", "pan right", "tilt up", "tilt down", "still")
ANIMATIC_EASINGS = ("linear", "ease-in", "ease-out", "ease-in-out")


class GemDirectAnimatic:
    """A keyframe turned into a clip with a camera move (engine: animatic.py), to preview timing without a GPU."""

    CATEGORY = "gemDirect/story"
    FUNCTION = "animate"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The animatic: length frames, each resampled from the keyframe along the camera move.",)
    DESCRIPTION = ("Moves a camera over the keyframe (push in, pull out, pan, tilt, still) with easing, sub-pixel "
                   "smooth. With a SCENE, its planned length and size are used: the story's timing, no GPU.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "keyframe": ("IMAGE", {"tooltip": "The still to move over (the first image of a batch is used)."}),
                "length": ("INT", {
                    "default": 49, "min": 1, "max": 4097, "step": 4,
                    "tooltip": "Frames to make (4n+1 like WAN: 49 = 3 s at 16 fps). Ignored when a scene is "
                    "connected: the scene's planned length is used.",
                }),
                "move": (list(ANIMATIC_MOVES), {
                    "default": "push in",
                    "tooltip": "The camera move: push in / pull out zoom; pan left/right and tilt up/down travel "
                    "across the picture; still holds the keyframe.",
                }),
                "easing": (list(ANIMATIC_EASINGS), {
                    "default": "ease-in-out",
                    "tooltip": "How the move speeds up and slows down: linear (constant speed), ease-in (starts "
                    "slow), ease-out (ends slow), ease-in-out (both).",
                }),
                "amount": ("FLOAT", {
                    "default": 0.15, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Strength of the move: for push/pull the zoom change (0.15 = 15% closer), for "
                    "pans/tilts the travel as a fraction of the frame's width/height.",
                }),
            },
            "optional": {
                "scene": ("SCENE", {
                    "tooltip": "From Scene Select: take length, width and height from the scene's plan (the "
                    "keyframe is centre-cropped to the scene's aspect, never stretched).",
                }),
                "end_image": ("IMAGE", {
                    "tooltip": "Where the scene should end (e.g. Chain Start's end_image, the scene's keyframe): "
                    "the clip dissolves from keyframe into it along the easing, an animatic of an FLF2V scene. "
                    "Empty: the keyframe alone.",
                }),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def animate(self, keyframe, length: int, move: str, easing: str, amount: float,
                scene: ScenePlan | None = None, end_image=None, unique_id: str | None = None):
        from .animatic import animatic

        width = height = None
        if scene is not None:
            length, width, height = scene.length, scene.width, scene.height
        progress = comfy.Progress(int(length), node_id=unique_id)
        frames = animatic(keyframe, int(length), move, easing, amount, width=width, height=height,
                          on_chunk=lambda done, _total: progress.set(done), end_image=end_image)
        return (frames.to(comfy.intermediate_device()),)


NODE_CLASS_MAPPINGS["GemDirectAnimatic"] = GemDirectAnimatic
NODE_DISPLAY_NAME_MAPPINGS["GemDirectAnimatic"] = "Animatic (gemDirect)"


class GemDirectProviderSettings:
    """A scene's values for the SVD and LTX-Video core nodes (engine: provider.py), after checking the scene was
    planned for that provider."""

    CATEGORY = "gemDirect/story"
    FUNCTION = "settings"
    RETURN_TYPES = ("INT", "INT", "FLOAT", "STRING")
    RETURN_NAMES = ("fps", "motion_bucket_id", "frame_rate", "start_image_path")
    OUTPUT_TOOLTIPS = (
        "The scene's frame rate as a whole number (SVD_img2vid_Conditioning's fps; planning already rounded it).",
        "SVD's motion (the scene's or story's motion, 127 by default; higher moves more). 0 for other providers.",
        "The scene's exact frame rate (LTXVConditioning's frame_rate).",
        "The start_image written as a PNG in ComfyUI's temp folder, for nodes that take a path (FastVideo's "
        "InferenceArgs image_path); empty without a start_image.",
    )
    DESCRIPTION = ("Stops the prompt with the fix when the story was planned for another model (its frame counts and "
                   "sizes follow that model's rules), else gives the provider's own inputs.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "scene": ("SCENE", {"tooltip": "From Scene Select."}),
                "provider": (["svd", "ltxv", "fastvideo", "wan"], {
                    "default": "svd",
                    "tooltip": "The model this workflow renders with: svd (Stable Video Diffusion), ltxv "
                    "(LTX-Video), fastvideo (FastVideo's nodes) or wan. The story's model profile must be one of "
                    "its profiles.",
                }),
            },
            "optional": {
                "start_image": ("IMAGE", {
                    "tooltip": "Chain Start's start image, for providers that take a file path "
                    "(start_image_path).",
                }),
            },
        }

    def settings(self, scene: ScenePlan, provider: str, start_image=None):
        from .provider import provider_values, start_image_file

        values = provider_values(scene, provider)
        path = "" if start_image is None else start_image_file(start_image, scene, comfy.temp_directory())
        return (values.fps, values.motion_bucket_id, values.frame_rate, path)


NODE_CLASS_MAPPINGS["GemDirectProviderSettings"] = GemDirectProviderSettings
NODE_DISPLAY_NAME_MAPPINGS["GemDirectProviderSettings"] = "Provider Settings (gemDirect)"


class GemDirectVideoFrames:
    """A video file's frames as IMAGE (engine: provider.py), for nodes that return a path (FastVideo)."""

    CATEGORY = "gemDirect/story"
    FUNCTION = "frames"
    RETURN_TYPES = ("IMAGE", "INT")
    RETURN_NAMES = ("frames", "frame_count")
    OUTPUT_TOOLTIPS = ("Every frame of the video, [T,H,W,3] 0..1 (to Scene Save).", "How many frames it has.")
    DESCRIPTION = ("Reads the video a path names (only inside ComfyUI's input, output, temp or user folders) into "
                   "frames, so a provider that writes files goes through Scene Save like any other.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "video_path": ("STRING", {
                    "default": "", "forceInput": True,
                    "tooltip": "The path of the video (FastVideo's Video Generator video_path output).",
                }),
            }
        }

    def frames(self, video_path: str):
        from .provider import video_file_frames

        frames = video_file_frames(video_path, comfy.allowed_roots())
        return (frames.to(comfy.intermediate_device()), int(frames.shape[0]))


NODE_CLASS_MAPPINGS["GemDirectVideoFrames"] = GemDirectVideoFrames
NODE_DISPLAY_NAME_MAPPINGS["GemDirectVideoFrames"] = "Video Frames (gemDirect)"
