"""Small stories for tests, written to a temporary story folder."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from PIL import Image

BASE_STORY = {
    "schema": "gemdirect.story/1",
    "id": "test-story",
    "title": "Test Story",
    "defaults": {"fps": 16, "cfg": 5.2, "steps": 16},
    "scenes": [
        {"id": "a", "prompt": "a red boat on a lake", "duration": 3.0, "keyframe": "kf/a.png"},
        {"id": "b", "prompt": "the boat reaches the shore", "frames": 49},
        {"id": "c", "prompt": "night falls over the lake", "duration": 2.0},
    ],
}


def base_story() -> dict:
    return copy.deepcopy(BASE_STORY)


def write_story(folder: Path, story: dict | str | bytes, name: str = "story.json") -> Path:
    """Write ``story`` (dict as JSON, or raw text/bytes) plus a small keyframe kf/a.png."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kf").mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), (200, 40, 40)).save(folder / "kf" / "a.png")
    path = folder / name
    if isinstance(story, dict):
        path.write_text(json.dumps(story), encoding="utf-8")
    elif isinstance(story, str):
        path.write_text(story, encoding="utf-8")
    else:
        path.write_bytes(story)
    return path
