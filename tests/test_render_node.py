"""The Story Render node as ComfyUI loads and calls it: settings from widgets, preview, report."""

from __future__ import annotations

import os

import pytest
from conftest import pack_module
from render_helpers import FPS, HEIGHT, WIDTH, load, save_all, start_run, story_dict, write_story

video = pack_module("nodes.video")


def _node(pack):
    return pack.NODE_CLASS_MAPPINGS["GemDirectStoryRender"]()


def _run(comfy_home, **story):
    path = write_story(comfy_home / "input" / "gemdirect" / "node", story_dict(("a", "b"), **story))
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    return run, loaded


def test_node_renders_with_widget_settings_and_shows_the_film(pack, comfy_home):
    run, loaded = _run(comfy_home, transitions=[{"kind": "crossfade", "frames": 4}])
    out = _node(pack).render(run, interpolation="target fps", target_fps=24.0, upscale="exact", width=96,
                             height=80, story=loaded, unique_id="7")
    result_run, final_path, report = out["result"]
    assert result_run is run and os.path.isfile(final_path)
    info = video.probe_video(final_path)
    assert (info.width, info.height, info.fps) == (96, 80, 24)
    assert info.frames == (9 + 13 - 4 - 1) * 24 // FPS + 1
    assert out["ui"]["animated"] == (True,)
    preview = out["ui"]["images"][0]
    assert preview["type"] == "output" and preview["filename"] == os.path.basename(final_path)
    assert preview["subfolder"] == os.path.relpath(os.path.dirname(final_path), comfy_home / "output")
    assert "validator: the run keeps the telemetry contract" in report and "flow" in report


def test_from_story_follows_the_preset_and_off_keeps_the_scenes(pack, comfy_home):
    run, _loaded = _run(comfy_home)
    out = _node(pack).render(run, interpolation="off", upscale="off")  # no story input: the run's file
    info = video.probe_video(out["result"][1])
    assert (info.width, info.height, info.fps, info.frames) == (WIDTH, HEIGHT, FPS, 9 + 13)
    # No preset in the story: from story means neither interpolation nor upscale.
    out = _node(pack).render(run)
    assert video.probe_video(out["result"][1]).frames == 22


def test_node_reads_the_upscale_model_file_name_from_the_prompt():
    nodes = pack_module("nodes.render.nodes")
    prompt = {"3": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "RealESRGAN_x2plus.pth"}},
              "9": {"class_type": "GemDirectStoryRender", "inputs": {"upscale_model": ["3", 0]}}}
    assert nodes.upscale_model_file(prompt, "9") == "RealESRGAN_x2plus.pth"
    assert nodes.upscale_model_file(prompt, "4") is None and nodes.upscale_model_file(None, "9") is None


def test_validate_inputs_names_the_bad_choice(pack):
    node_class = pack.NODE_CLASS_MAPPINGS["GemDirectStoryRender"]
    assert node_class.VALIDATE_INPUTS(interpolation="off") is True
    assert "upscale 'huge' is not one of" in node_class.VALIDATE_INPUTS(upscale="huge")
    with pytest.raises(ValueError, match="on_missing 'maybe'"):
        pack_module("nodes.render.nodes").render_settings(None, interpolation="off", target_fps=24,
                                                          rife_connected=False, upscale="off", factor=2,
                                                          long_side=1, width=1, height=1, on_missing="maybe",
                                                          audio="auto", crf=19)


def test_after_the_last_scene_waits_for_every_scene_then_renders(pack, comfy_home):
    """In a per-scene workflow the render node runs on every prompt; it makes the film once, at the end."""
    from render_helpers import save_scene

    path = write_story(comfy_home / "input" / "gemdirect" / "wait", story_dict(("a", "b", "c")))
    loaded = load(path)
    run = start_run(path)
    node = _node(pack)
    for scene, still_missing in zip(loaded.plan.scenes[:2], ("scene(s) b, c", "scene(s) c"), strict=True):
        save_scene(run, scene)
        out = node.render(run, interpolation="off", upscale="off", when="after the last scene")
        assert out["result"][1] == "" and still_missing in out["result"][2]
        assert not any(name.endswith(".mp4") for name in os.listdir(run.final_dir))
    save_scene(run, loaded.plan.scenes[2])
    out = node.render(run, interpolation="off", upscale="off", when="after the last scene")
    assert os.path.isfile(out["result"][1])
    assert video.probe_video(out["result"][1]).frames == sum(s.length for s in loaded.plan.scenes)
