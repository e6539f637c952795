"""Chain Start's empty end image inside a real ComfyUI: a None IMAGE output feeds an optional IMAGE input.

Runs with ``COMFYUI_PATH`` like tests/test_comfyui_integration.py (its server fixture, its own ComfyUI).
WanFirstLastFrameToVideo needs a VAE (docs/chaining.md records that check, made by hand with a random
WAN 2.1 VAE); here the optional input is the pack's Animatic ``end_image``, which ComfyUI feeds the same way.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from test_comfyui_integration import DEMO_STORY, object_info, server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def _prompt(run_mode: str, end_image: str) -> dict:
    return {
        "1": {"class_type": "GemDirectStoryLoader", "inputs": {"story": DEMO_STORY, "preset": "from story"}},
        "2": {"class_type": "GemDirectSceneSelect", "inputs": {"story": ["1", 0], "scene_index": 1}},
        "3": {"class_type": "GemDirectRun", "inputs": {"story": ["1", 0], "scene": ["2", 0], "mode": run_mode}},
        "4": {"class_type": "GemDirectChainStart", "inputs": {"run": ["3", 0], "scene": ["2", 0], "fit": "crop",
                                                              "chain": "from story", "end_image": end_image}},
        "5": {"class_type": "GemDirectAnimatic", "inputs": {"keyframe": ["4", 0], "end_image": ["4", 1], "length": 5,
                                                            "move": "still", "easing": "linear", "amount": 0.0}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }


def _frames(server, entry) -> list[np.ndarray]:  # noqa: F811
    frames = []
    for image in entry["outputs"]["6"]["images"]:
        response = server.get("/view", params={"filename": image["filename"], "subfolder": image["subfolder"],
                                               "type": image["type"]})
        assert response.status_code == 200
        frames.append(np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(np.int16))
    return frames


def _stage_start(server) -> dict:  # noqa: F811
    logs = sorted((server.base / "output" / "gemdirect" / "lighthouse").glob("*/events.jsonl"))
    assert logs, "no run folder of the demo story"
    lines = [json.loads(line) for line in logs[-1].read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e for e in lines if e["event"] == "stage_start" and e.get("stage") == "scene"][-1]


def test_no_end_image_reaches_an_optional_input_as_none_and_the_next_keyframe_as_an_image(server, object_info):  # noqa: F811
    mode_spec = object_info["GemDirectRun"]["input"]["required"]["mode"]
    run_mode = mode_spec[1].get("default", mode_spec[0][0])
    results = {}
    for end_image in ("auto", "next scene's keyframe"):
        response = server.queue(_prompt(run_mode, end_image))
        assert response.status_code == 200, response.text
        entry = server.wait_for(response.json()["prompt_id"])
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)
        results[end_image] = (_frames(server, entry), _stage_start(server))
    frames, started = results["auto"]
    assert started["flf2v_end"] == "none" and started.get("end_sha256") is None
    assert all(np.array_equal(frame, frames[0]) for frame in frames)  # Animatic got None: the keyframe alone
    frames, started = results["next scene's keyframe"]
    assert started["flf2v_end"] == "next-keyframe" and len(started["end_sha256"]) == 64
    assert np.abs(frames[-1] - frames[0]).mean() > 10  # dissolved into the next scene's keyframe
