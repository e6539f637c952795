"""Chain Start: where a scene starts (keyframe or the previous scene's last frame), fallbacks, bad input."""

from __future__ import annotations

import dataclasses
import os

import chain_helpers as h
import numpy as np
import pytest
import torch
from conftest import pack_module

start = pack_module("nodes.chain.start")
ledger = pack_module("nodes.run.ledger")
events = pack_module("nodes.run.events")
comfy = pack_module("nodes.comfy")
records = pack_module("nodes.run.records")
save_png = pack_module("nodes.video.images").save_png
scene_events = h.scene_events  # fixture


@pytest.fixture
def story_path(comfy_home):
    return h.write_story(comfy_home / "input" / "gemdirect" / "chain")


def _prompt(story_path, index, mode="auto"):
    story = h.load_story(story_path)
    scene, *_values, keyframe = h.node("GemDirectSceneSelect").select(story, index)
    run, _ = h.node("GemDirectRun").start(story, scene, mode)
    return story, scene, run, keyframe


def _record_previous(run, scene_id, index, last_frame=None, success=True):
    """Scene ``scene_id`` as a finished (or failed) scene of ``run`` with a last-frame PNG."""
    paths = ledger.scene_paths(run, scene_id)
    if last_frame is not None:
        save_png(paths.last_frame, last_frame)
    plan = type("Plan", (), dict(id=scene_id, title=scene_id, prompt="p", negative="n", keyframe=None, seed=1, cfg=5.2,
                                 steps=16, sampler="euler", loras=(), length=5, fps=16, width=h.WIDTH,
                                 height=h.HEIGHT, index=index, warnings=()))
    stage = pack_module("nodes.run.measure").StageMeasurement(
        stage="scene", scene=scene_id, before=pack_module("nodes.run.measure").memory_snapshot(),
        started_at=events.utc_now(), ended_at=events.utc_now())
    ledger.record_scene(run, records.scene_record(
        **records.scene_plan_fields(plan), video_path=f"scenes/{scene_id}.mp4", success=success,
        video_status="ready" if success else "error", errors=() if success else ("out of memory",),
        telemetry=records.run_telemetry(stage, flf2v_source="keyframe")))


def test_scene_1_starts_and_ends_at_its_keyframe_cropped_to_size(story_path, scene_events):
    _story, scene, run, keyframe = _prompt(story_path, 1)
    start_image, end_image, source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story")
    assert source == "keyframe"
    assert start_image.shape == (1, h.HEIGHT, h.WIDTH, 3) and start_image.dtype == torch.float32
    assert torch.equal(start_image, keyframe) and torch.equal(end_image, keyframe)
    assert [e["state"] for e in scene_events] == ["queued", "rendering"]
    assert scene_events[-1]["source"] == "keyframe" and scene_events[-1]["scene"] == "a"
    started = [e for e in events.read_events(run.run_dir).events if e["event"] == "stage_start"]
    assert started[-1]["stage"] == "scene" and started[-1]["scene"] == "a"
    assert started[-1]["flf2v_source"] == "keyframe"


def test_pad_fits_a_wide_keyframe_inside_black_bars_without_stretching(story_path):
    _story, scene, run, _keyframe = _prompt(story_path, 1)
    start_image, _end, _source = h.node("GemDirectChainStart").start(run, scene, "pad", "from story")
    frame = start_image[0].numpy()
    # 120x64 into 80x64: scaled by 2/3 to 80x43, centred: 10 black rows above, 11 below
    assert frame.shape == (h.HEIGHT, h.WIDTH, 3)
    assert np.all(frame[:10] == 0) and np.all(frame[-11:] == 0)
    assert frame[10:-11].mean() > 0.1


def test_scene_2_starts_exactly_on_scene_1s_saved_last_frame(story_path):
    _story, _scene, run, _ = _prompt(story_path, 1)
    last = np.random.default_rng(0).random((h.HEIGHT, h.WIDTH, 3)).astype(np.float32)
    _record_previous(run, "a", 1, last_frame=last)
    _story, scene, run2, keyframe = _prompt(story_path, 2)
    assert run2 == run
    start_image, end_image, source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story")
    saved = pack_module("nodes.video.images").load_png(ledger.scene_paths(run, "a").last_frame)
    assert source == "previous-scene"
    assert torch.equal(start_image[0], saved)
    assert torch.equal(end_image, keyframe)  # FLF2V: end where the story wants to be


def test_a_scene_without_keyframe_ends_where_it_starts(story_path):
    _story, _scene, run, _ = _prompt(story_path, 1)
    _record_previous(run, "a", 1, last_frame=np.full((h.HEIGHT, h.WIDTH, 3), 0.25, np.float32))
    _record_previous(run, "b", 2, last_frame=np.full((h.HEIGHT, h.WIDTH, 3), 0.75, np.float32))
    _story, scene, run, _ = _prompt(story_path, 3)
    start_image, end_image, source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story")
    assert source == "previous-scene" and torch.equal(start_image, end_image)
    assert start_image.mean().item() == pytest.approx(191 / 255)


@pytest.mark.parametrize("case", ["not rendered", "failed", "last frame missing"])
def test_a_missing_or_failed_previous_scene_falls_back_to_the_keyframe_and_says_why(story_path, case):
    _story, _scene, run, _ = _prompt(story_path, 1)
    if case == "failed":
        _record_previous(run, "a", 1, success=False)
    elif case == "last frame missing":
        _record_previous(run, "a", 1)
    _story, scene, run, keyframe = _prompt(story_path, 2)
    start_image, _end, source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story")
    assert source == "keyframe" and torch.equal(start_image, keyframe)
    event = [e for e in events.read_events(run.run_dir).events if e["event"] == "stage_start"][-1]
    expected = {"not rendered": "has not been rendered", "failed": "failed in run",
                "last frame missing": "has no saved last frame"}[case]
    assert expected in event["flf2v_fallback"] and "previous scene 'a'" in event["flf2v_fallback"]
    assert event["flf2v_fallback"].endswith("started from the keyframe")
    warnings = [e["text"] for e in events.read_events(run.run_dir).events if e["event"] == "warning"]
    assert any(expected in text for text in warnings)
    if case == "failed":
        assert "out of memory" in event["flf2v_fallback"]


def test_chain_off_starts_from_the_keyframe_and_on_chains_a_scene_the_story_does_not(story_path):
    _story, _scene, run, _ = _prompt(story_path, 1)
    _record_previous(run, "a", 1, last_frame=np.zeros((h.HEIGHT, h.WIDTH, 3), np.float32))
    _story, scene, run, _keyframe = _prompt(story_path, 2)
    node = h.node("GemDirectChainStart")
    assert node.start(run, scene, "crop", "off")[2] == "keyframe"
    unchained = dataclasses.replace(scene, chain=False)
    assert node.start(run, unchained, "crop", "from story")[2] == "keyframe"
    assert node.start(run, unchained, "crop", "on")[2] == "previous-scene"


def test_a_scene_with_neither_keyframe_nor_chain_starts_from_mid_grey(story_path):
    _story, scene, run, _ = _prompt(story_path, 3)
    start_image, end_image, source = h.node("GemDirectChainStart").start(run, scene, "crop", "off")
    assert source == "none" and torch.all(start_image == 0.5) and torch.equal(start_image, end_image)


# --------------------------------------------------------------------------- bad input


def test_scene_index_past_the_end_is_refused_by_scene_select_and_by_chain_start(story_path, scene_events):
    story, scene, run, _ = _prompt(story_path, 1)
    with pytest.raises(ValueError, match="scene_index 4 is outside the story 'Chain Story', which has 3 scene"):
        h.node("GemDirectSceneSelect").select(story, 4)
    beyond = dataclasses.replace(scene, index=4)
    with pytest.raises(start.ChainError, match=r"scene index 4 is past the end of story 'chain-story' in run .*"
                                               r"which has 3 scene\(s\): use 1 to 3"):
        h.node("GemDirectChainStart").start(run, beyond, "crop", "from story")
    assert scene_events[-1]["state"] == "failed" and "past the end" in scene_events[-1]["error"]


def test_a_keyframe_deleted_after_loading_is_a_clear_error_at_chain_start(story_path):
    _story, scene, run, _ = _prompt(story_path, 1)
    os.remove(scene.keyframe)
    with pytest.raises(start.ChainError) as caught:
        h.node("GemDirectChainStart").start(run, scene, "crop", "from story")
    message = str(caught.value)
    assert f"keyframe file {scene.keyframe} is missing" in message
    assert "put it back, or remove scenes[0].keyframe" in message


def test_a_run_of_another_story_is_refused(story_path, comfy_home):
    other_path = h.write_story(comfy_home / "input" / "gemdirect" / "other", h.story_dict(id="other-story"))
    _story, _scene, other_run, _ = _prompt(other_path, 1)
    _story, scene, _run, _ = _prompt(story_path, 1)
    with pytest.raises(start.ChainError, match=r"the RUN is run .* of story 'other-story', but the SCENE is from "
                                               r"story 'chain-story'; feed Run and Scene Select from the same"):
        h.node("GemDirectChainStart").start(other_run, scene, "crop", "from story")


def test_a_scene_that_moved_in_the_story_is_refused(story_path):
    _story, scene, run, _ = _prompt(story_path, 2)
    moved = dataclasses.replace(scene, id="c")
    with pytest.raises(start.ChainError, match=r"is number 2 in the SCENE, but run .* has 'b' there"):
        start.chain_start(run, moved)


def test_unknown_fit_and_chain_values_are_named():
    with pytest.raises(start.ChainError, match="chain 'sometimes' is not one of from story, on, off"):
        start.chain_start(None, None, chain="sometimes")
    with pytest.raises(start.ChainError, match="fit 'stretch' is not one of crop, pad"):
        start.chain_start(None, None, fit="stretch")
