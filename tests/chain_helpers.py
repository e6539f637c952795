"""Helpers for the chain room's tests: a tiny three-scene story and one prompt's worth of node calls."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import pack_module
from PIL import Image

WIDTH, HEIGHT, FRAMES = 80, 64, 5

STORY = {
    "schema": "gemdirect.story/1",
    "id": "chain-story",
    "title": "Chain Story",
    "defaults": {"fps": 16, "cfg": 5.2, "steps": 16, "width": WIDTH, "height": HEIGHT,
                 "model_profile": "wan22-i2v-14b"},
    "scenes": [
        {"id": "a", "prompt": "a red boat on a lake", "frames": FRAMES, "keyframe": "kf/a.png"},
        {"id": "b", "prompt": "the boat reaches the shore", "frames": FRAMES, "keyframe": "kf/b.png"},
        {"id": "c", "prompt": "night falls over the lake", "frames": FRAMES},
    ],
}


def story_dict(**changes) -> dict:
    story = copy.deepcopy(STORY)
    story.update(changes)
    return story


def write_story(folder: Path, story: dict | None = None) -> Path:
    """story.json plus keyframes kf/a.png (120x64, wider than the scene) and kf/b.png (80x64)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kf").mkdir(exist_ok=True)
    y, x = np.mgrid[0:64, 0:120]
    a = np.stack([x * 2 % 256, y * 5 % 256, np.full_like(x, 60)], -1).astype(np.uint8)
    Image.fromarray(a, "RGB").save(folder / "kf" / "a.png")
    Image.new("RGB", (80, 64), (40, 90, 200)).save(folder / "kf" / "b.png")
    path = folder / "story.json"
    path.write_text(json.dumps(story or STORY), encoding="utf-8")
    return path


def node(name: str):
    return pack_module("nodes.chain.nodes" if name in ("GemDirectChainStart", "GemDirectSceneSave")
                       else "nodes.run.nodes" if name in ("GemDirectRun", "GemDirectTelemetryWriter")
                       else "nodes.story.nodes").NODE_CLASS_MAPPINGS[name]()


def load_story(path: Path):
    return pack_module("nodes.story.plan").load_and_plan(str(path))


def render(start_image, end_image, count: int = FRAMES, gain: float = 0.03):
    """Stand-in for the WAN sampler: frames from start towards end, brightening a little each frame.

    The first frame is the start image itself, as FLF2V's first frame follows its start image.
    Without an end image (Chain Start gave None: image-to-video) the clip stays on the start image.
    """
    import torch

    if end_image is None:
        end_image = start_image
    t = torch.linspace(0, 1, count).view(count, 1, 1, 1)
    frames = start_image * (1 - t) + end_image * t
    frames = frames + gain * torch.arange(count).view(count, 1, 1, 1)
    frames[0] = start_image[0]
    return frames.clamp(0, 1).float()


PROMPT = {
    "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf"}},
    "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                                 "type": "wan"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
    "4": {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": "lightx2v_4step.safetensors",
                                                          "model": ["1", 0], "strength_model": 1.0}},
    "5": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf"}},
}


def run_scene(story_path: Path, index: int, *, mode: str = "continue", color_match: str = "off", prompt=PROMPT,
              renderer=render, end_image: str = "auto"):
    """One prompt rendering scene ``index``: fresh node instances and a fresh story load, as ComfyUI does."""
    story = load_story(story_path)
    scene, *_values, keyframe, _split_step = node("GemDirectSceneSelect").select(story, index)
    run, _run_dir = node("GemDirectRun").start(story, scene, mode)
    start_image, end, source = node("GemDirectChainStart").start(run, scene, "crop", "from story", end_image)
    frames = renderer(start_image, end)
    saved = node("GemDirectSceneSave").save(frames, scene, run, color_match, 1.0, prompt=prompt, unique_id="7")
    return {"story": story, "scene": scene, "run": run, "start": start_image, "end": end, "source": source,
            "frames": frames, "saved": saved, "keyframe": keyframe}


@pytest.fixture
def scene_events():
    """The ``gemdirect.scene`` websocket payloads sent during a test, in order."""
    comfy = pack_module("nodes.comfy")
    seen: list[dict] = []

    def listener(event, data):
        if event == "gemdirect.scene":
            seen.append(data)

    comfy.event_listeners.append(listener)
    yield seen
    comfy.event_listeners.remove(listener)
