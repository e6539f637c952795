"""A small ComfyUI home for the panel's tests (pytest and the browser test's server): the demo story
in input/gemdirect/demo/, and one run of it with scene 'dawn' rendered (record, last frame PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import pack_module
from run_helpers import scene_record
from run_helpers import story_info as plain_story_info

ledger = pack_module("nodes.run.ledger")
story_nodes = pack_module("nodes.story.nodes")
images = pack_module("nodes.video.images")

DEMO = "demo/story.json"
STORY_ID = "lighthouse"
SCENES = (("dawn", "Dawn over the sea"), ("noon", "The keeper's rounds"), ("dusk", "The lamp is lit"))


def make_home(home: Path) -> dict:
    """Fill ``home`` (already GEMDIRECT_HOME, with input/ output/ user/ temp/) and return names in it."""
    for sub in ("input", "output", "temp", "user", "models"):
        (home / sub).mkdir(exist_ok=True)
    story_nodes.list_stories()  # installs the demo story, as the Story Loader does on first use
    story_path = Path(story_nodes.story_path(DEMO))
    raw = json.loads(story_path.read_text())
    run = ledger.create_run(plain_story_info(STORY_ID, scenes=SCENES), raw)
    ledger.record_scene(run, scene_record("dawn", 1, bookend=None))
    last = ledger.scene_paths(run, "dawn").last_frame
    frame = np.zeros((48, 80, 3), np.float32)
    frame[..., 2] = 0.8  # a blue frame: tells the rendered frame from the keyframe on a card
    images.save_png(last, frame)
    return {"story": DEMO, "story_path": story_path, "story_id": STORY_ID, "run_id": run.run_id, "run": run}

