"""Saving a generated image as a scene's keyframe: a PNG in the story's folder and its path in story.json.

The PNG is written atomically to ``<folder>/<scene id>.png`` inside the story's folder; then story.json
is updated through :func:`nodes.story.load.update_story` (locked read-modify-write, validated, atomic):
only ``scenes[i].keyframe`` of that scene changes, every other field (unknown ones included) stays,
and a panel save that happened meanwhile is read first, not overwritten.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..story.load import LoadedFile, parse_story_text, resolve_in_folder, story_lock, update_story
from ..video.images import save_png

DEFAULT_FOLDER = "keyframes"
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}){0,3}$")


@dataclass(frozen=True)
class SavedKeyframe:
    scene_id: str
    relative: str  # as written into story.json, '/'-separated
    path: str  # absolute path of the PNG
    previous: str | None  # the scene's keyframe before (relative), None if it had none
    story: LoadedFile


def keyframe_relative(scene_id: str, folder: str = DEFAULT_FOLDER) -> str:
    """``<folder>/<scene id>.png``; ValueError for a folder that is not a plain relative path."""
    text = folder.replace("\\", "/").strip().rstrip("/")
    if not _FOLDER.match(text) or any(part in (".", "..") for part in text.split("/")):
        raise ValueError(f"folder = '{folder}' is not a plain folder name inside the story's folder; "
                         f"use something like '{DEFAULT_FOLDER}' or 'keyframes/generated'")
    return f"{text}/{scene_id}.png"


def save_keyframe(story_path: str, scene_id: str, image: Any, folder: str = DEFAULT_FOLDER) -> SavedKeyframe:
    """Write ``image`` ([H,W,3] or [1,H,W,3], float 0..1 or uint8) as scene ``scene_id``'s keyframe.

    ValueError when the scene is not in the story, or another scene already uses that file (it would
    change that scene's keyframe too); StoryError when the story no longer validates (nothing written
    to story.json then).
    """
    story_path = os.path.abspath(story_path)
    story_dir = os.path.dirname(story_path)
    relative = keyframe_relative(scene_id, folder)
    target = resolve_in_folder(story_dir, relative, "folder")
    found: dict[str, Any] = {}

    def check(raw: dict[str, Any]) -> None:
        scenes = raw.get("scenes") if isinstance(raw.get("scenes"), list) else []
        index = next((i for i, s in enumerate(scenes) if isinstance(s, dict) and s.get("id") == scene_id), None)
        if index is None:
            raise ValueError(f"scene '{scene_id}' is not in {story_path} any more; reload the story (press R)")
        for other, scene in enumerate(scenes):
            ref = scene.get("keyframe") if isinstance(scene, dict) else None
            if other != index and isinstance(ref, str) and ref.replace("\\", "/").strip() == relative:
                raise ValueError(f"scenes[{other}] ('{scene.get('id')}') uses {relative} as its keyframe too; "
                                 "give that scene its own file or pick another folder")
        found["index"] = index

    with story_lock(story_path):  # the PNG and story.json change together, never half
        with open(story_path, "rb") as handle:
            check(parse_story_text(handle.read(), story_path))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        save_png(target, image)

        def change(raw: dict[str, Any]) -> None:
            check(raw)
            scene = raw["scenes"][found["index"]]
            found["previous"] = scene.get("keyframe")
            scene["keyframe"] = relative

        loaded = update_story(story_path, change)
    return SavedKeyframe(scene_id, relative, target, found.get("previous"), loaded)
