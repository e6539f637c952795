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
    scene, *_values, keyframe, _split_step = h.node("GemDirectSceneSelect").select(story, index)
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


def _started(run):
    return [e for e in events.read_events(run.run_dir).events if e["event"] == "stage_start"][-1]


def _warnings(run):
    return [e["text"] for e in events.read_events(run.run_dir).events if e["event"] == "warning"]


def test_scene_1_starts_at_its_keyframe_cropped_to_size_and_gets_no_end_image_under_auto(story_path, scene_events):
    _story, scene, run, keyframe = _prompt(story_path, 1)
    start_image, end_image, source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story")
    assert source == "keyframe"
    assert start_image.shape == (1, h.HEIGHT, h.WIDTH, 3) and start_image.dtype == torch.float32
    assert torch.equal(start_image, keyframe)
    assert end_image is None  # the keyframe is the start: an end there would loop the clip back
    assert [e["state"] for e in scene_events] == ["queued", "rendering"]
    assert scene_events[-1]["source"] == "keyframe" and scene_events[-1]["scene"] == "a"
    assert scene_events[-1]["flf2v_end"] == "none" and "keyframe is the start image" in scene_events[-1]["end_note"]
    assert "End image (auto): none" in scene_events[-1]["report"]
    started = _started(run)
    assert started["stage"] == "scene" and started["scene"] == "a"
    assert started["flf2v_source"] == "keyframe" and started["flf2v_end"] == "none"
    assert started.get("end_sha256") is None and started["end_mode"] == "auto"
    assert started["start_sha256"] == start.image_sha256(start_image)
    assert _warnings(run) == []  # auto chose none as documented: a note, not a warning


def test_image_sha256_hashes_the_8bit_bytes_of_the_image_at_its_size():
    import hashlib

    pixels = np.random.default_rng(3).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    expected = hashlib.sha256(pixels.tobytes()).hexdigest()
    assert start.image_sha256(pixels) == expected
    assert start.image_sha256(pixels.astype(np.float32) / 255) == expected  # float 0..1 on the same grid
    assert start.image_sha256(torch.from_numpy(pixels.astype(np.float32) / 255).unsqueeze(0)) == expected
    assert start.image_sha256(np.asfortranarray(pixels)) == expected  # layout does not matter, values do
    changed = pixels.copy()
    changed[0, 0, 0] ^= 1
    assert start.image_sha256(changed) != expected
    with pytest.raises(ValueError, match=r"one RGB image \[H,W,3\]"):
        start.image_sha256(pixels[..., :2])


def test_scene_1_asked_for_the_next_keyframe_heads_for_scene_2s_keyframe(story_path):
    _story, scene, run, _keyframe = _prompt(story_path, 1)
    start_image, end_image, _source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story",
                                                                         "next scene's keyframe")
    assert scene.next_scene == "b" and scene.next_keyframe.endswith("kf/b.png")
    expected = torch.tensor([40, 90, 200], dtype=torch.float32) / 255  # kf/b.png is flat (40, 90, 200)
    assert end_image.shape == start_image.shape and torch.allclose(end_image[0], expected.expand_as(end_image[0]))
    started = _started(run)
    assert started["flf2v_end"] == "next-keyframe" and started["end_sha256"] == start.image_sha256(end_image)
    assert started.get("end_note") is None and _warnings(run) == []


def test_keyframe_asked_for_when_it_is_the_start_is_used_but_warned_about(story_path):
    _story, scene, run, keyframe = _prompt(story_path, 1)
    start_image, end_image, _source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story",
                                                                         "keyframe")
    assert torch.equal(end_image, keyframe) and torch.equal(end_image, start_image)
    assert _started(run)["flf2v_end"] == "keyframe"
    assert any("is the start image (equal within 1/255): used as asked" in text for text in _warnings(run))


def test_an_end_image_within_1_of_255_of_the_start_counts_as_the_same(story_path):
    _story, scene, _run, _ = _prompt(story_path, 1)
    start_px = np.full((h.HEIGHT, h.WIDTH, 3), 100 / 255, np.float32)
    near = start_px.copy()
    near[3, 4, 1] = 101 / 255
    far = start_px.copy()
    far[3, 4, 1] = 102 / 255
    assert start.end_image(scene, start_px, near, "auto")[:2] == (None, "none")
    end, used, note, warning = start.end_image(scene, start_px, far, "auto")
    assert used == "keyframe" and end is far and note is None and warning is None


def test_end_none_gives_no_end_image_even_with_a_keyframe_that_differs(story_path):
    _story, _scene, run, _ = _prompt(story_path, 1)
    _record_previous(run, "a", 1, last_frame=np.zeros((h.HEIGHT, h.WIDTH, 3), np.float32))
    _story, scene, run, _keyframe = _prompt(story_path, 2)
    node = h.node("GemDirectChainStart")
    assert node.start(run, scene, "crop", "from story", "none")[1] is None
    assert _started(run)["flf2v_end"] == "none" and _started(run)["end_note"] == "end_image is 'none': image-to-video"
    assert _warnings(run) == []


@pytest.mark.parametrize(("index", "mode", "why"), [
    (3, "keyframe", "end_image 'keyframe' asked for, but the scene has no keyframe"),
    (3, "next scene's keyframe", "end_image 'next scene's keyframe' asked for, but it is the last scene"),
    (2, "next scene's keyframe", "end_image 'next scene's keyframe' asked for, but the next scene 'c' has no keyframe"),
])
def test_an_asked_end_image_that_does_not_exist_gives_none_with_a_warning(story_path, index, mode, why):
    _story, _scene, run, _ = _prompt(story_path, 1)
    _story, scene, run, _ = _prompt(story_path, index)
    _start, end_image, _source = h.node("GemDirectChainStart").start(run, scene, "crop", "off", mode)
    assert end_image is None
    started = _started(run)
    assert started["flf2v_end"] == "none" and started.get("end_sha256") is None
    assert started["end_warning"].startswith(why) and started["end_warning"].endswith("no end image (image-to-video)")
    assert any(text.startswith(why) for text in _warnings(run))


def test_a_next_keyframe_deleted_after_loading_is_a_clear_error(story_path):
    _story, scene, run, _ = _prompt(story_path, 1)
    os.remove(scene.next_keyframe)
    with pytest.raises(start.ChainError, match=r"scene 'a': the next scene's keyframe .*kf/b.png is missing .* "
                                               "set end_image to another mode"):
        h.node("GemDirectChainStart").start(run, scene, "crop", "from story", "next scene's keyframe")


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
    assert torch.equal(end_image, keyframe)  # FLF2V under auto: end where the story wants to be
    started = _started(run2)
    assert started["flf2v_end"] == "keyframe" and started["end_sha256"] == start.image_sha256(keyframe)
    assert started["start_sha256"] == start.image_sha256(saved)  # H4's fingerprints compare this with the PNG


def test_a_chained_scene_without_keyframe_gets_no_end_image_not_its_start(story_path):
    _story, _scene, run, _ = _prompt(story_path, 1)
    _record_previous(run, "a", 1, last_frame=np.full((h.HEIGHT, h.WIDTH, 3), 0.25, np.float32))
    _record_previous(run, "b", 2, last_frame=np.full((h.HEIGHT, h.WIDTH, 3), 0.75, np.float32))
    _story, scene, run, _ = _prompt(story_path, 3)
    start_image, end_image, source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story")
    assert source == "previous-scene" and end_image is None
    assert start_image.mean().item() == pytest.approx(191 / 255)
    assert "the scene has no keyframe" in _started(run)["end_note"]


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
    assert source == "none" and torch.all(start_image == 0.5) and end_image is None


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


def test_unknown_fit_chain_and_end_image_values_are_named():
    with pytest.raises(start.ChainError, match="end_image 'start' is not one of auto, keyframe, next scene's "
                                               "keyframe, none"):
        start.chain_start(None, None, end_mode="start")
    with pytest.raises(start.ChainError, match="chain 'sometimes' is not one of from story, on, off"):
        start.chain_start(None, None, chain="sometimes")
    with pytest.raises(start.ChainError, match="fit 'stretch' is not one of crop, pad"):
        start.chain_start(None, None, fit="stretch")
