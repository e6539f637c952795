"""Joins of chained scenes (continue: no stutter, no ghosting) and scene masters, through real nodes and files.

Each scene goes through Run -> Chain Start -> a stand-in sampler with real motion -> Scene Save, one
prompt each, as in ComfyUI; Story Render then reads the run's files back.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from pathlib import Path

import chain_helpers as h
import numpy as np
import pytest
import torch
from conftest import pack_module
from vace_helpers import record_clip

engine = pack_module("nodes.render.engine")
join = pack_module("nodes.render.join")
ledger = pack_module("nodes.run.ledger")
master = pack_module("nodes.video.master")
video = pack_module("nodes.video")
validate = pack_module("nodes.run.validate")

LENGTHS = {"a": 17, "b": 25, "c": 21}
SHIFT = 3  # pixels the picture moves per frame


def moving(start_image, _end_image, count):
    """Stand-in for FLF2V: frame 0 is the start image itself, then the picture pans SHIFT px a frame
    and brightens a little (real motion, every frame different)."""
    start = start_image[0]
    frames = [torch.roll(start, shifts=SHIFT * t, dims=1) * (1.0 - 0.01 * t) + 0.01 * t for t in range(count)]
    frames[0] = start
    return torch.stack(frames).clamp(0, 1).float()


def _story(folder, *, chain: bool, transition: dict | None):
    story = copy.deepcopy(h.STORY)
    for scene in story["scenes"]:
        scene["frames"] = LENGTHS[scene["id"]]
        scene["chain"] = chain
        if transition:
            scene["transition"] = transition
    return h.write_story(folder, story)


def _prompt(story_path, index, *, run_id="", renderer=moving, lossless_master=True):
    """One prompt rendering scene ``index``: fresh nodes and story, as ComfyUI runs it."""
    story = h.load_story(story_path)
    scene, *_values = h.node("GemDirectSceneSelect").select(story, index)
    run, _dir = h.node("GemDirectRun").start(story, scene, "new" if index == 1 and not run_id else "auto",
                                             run_id=run_id)
    start_image, end_image, _source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story")
    frames = renderer(start_image, end_image, scene.length)
    out = h.node("GemDirectSceneSave").save(frames, scene, run, "off", 1.0, lossless_master=lossless_master,
                                            unique_id="7")
    return run, np.rint(frames.numpy() * 255).astype(np.uint8), out["result"][2]


def _render_all(story_path, **options):
    """The three scenes in three prompts; returns the run and each scene's frames as saved (uint8)."""
    run, frames = None, {}
    for index, scene_id in enumerate(("a", "b", "c"), start=1):
        run, frames[scene_id], _report = _prompt(story_path, index, run_id=run.run_id if run else "", **options)
    return run, frames


def _joined(run):
    """The film before the final encode (what the encoder is given), uint8 [T,H,W,3], and its plan."""
    loaded = engine.current_story(run)
    film = join.plan_film(run, loaded.plan.scenes)
    chunks = [np.rint(chunk.numpy() * 255).astype(np.uint8) for chunk in join.joined_frames(film)]
    return np.concatenate(chunks), film


def _step(a, b) -> float:
    """Mean absolute difference of two uint8 frames, in levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture
def folder(comfy_home):
    return comfy_home / "input" / "gemdirect" / "joins"


@pytest.mark.parametrize("asked", ["crossfade", "cut"])
def test_a_chained_story_continues_at_every_join_without_stutter_or_ghosting(folder, asked):
    transition = {"kind": "crossfade", "frames": 8} if asked == "crossfade" else {"kind": "cut"}
    run, frames = _render_all(_story(folder, chain=True, transition=transition))
    film, plan = _joined(run)

    assert len(film) == plan.frames == sum(LENGTHS.values()) - 2  # one dropped frame per join
    # Exactly scene a, then b without its first frame, then c without its first frame.
    assert np.array_equal(film, np.concatenate([frames["a"], frames["b"][1:], frames["c"][1:]]))
    starts = [LENGTHS["a"], LENGTHS["a"] + LENGTHS["b"] - 1]
    for (before, after), start in zip((("a", "b"), ("b", "c")), starts, strict=True):
        assert np.array_equal(frames[after][0], frames[before][-1])  # B really starts on A's last frame
        assert not np.array_equal(film[start - 1], film[start])  # no frame shown twice (no stutter)
        within = max(_step(x, y) for s in (before, after) for x, y in itertools.pairwise(frames[s]))
        assert _step(film[start - 1], film[start]) <= within + 1e-9  # no jump bigger than the motion itself
    assert all(not np.array_equal(x, y) for x, y in itertools.pairwise(film))
    assert plan.cut_lefts == set()  # a continue is not a cut: interpolation may run across it
    assert join.scene_spans(plan) == [{"scene": "a", "start": 0, "end": starts[0]},
                                      {"scene": "b", "start": starts[0], "end": starts[1]},
                                      {"scene": "c", "start": starts[1], "end": len(film)}]

    result = engine.render_story(run, engine.RenderSettings(audio="off"))
    assert video.probe_video(result.path).frames == result.post["FinalFrames"] == len(film)
    assert result.post["TransitionMethod"] == "continue" and result.problems == []
    assert result.post["Joins"] == [
        {"From": "a", "To": "b", "Asked": asked, "Used": "continue", "Frames": 1, "FilmStart": starts[0],
         "Reason": result.post["Joins"][0]["Reason"], "Clip": None, "Inserted": None},
        {"From": "b", "To": "c", "Asked": asked, "Used": "continue", "Frames": 1, "FilmStart": starts[1],
         "Reason": result.post["Joins"][1]["Reason"], "Clip": None, "Inserted": None}]
    why = "ghosting" if asked == "crossfade" else "stutter"
    assert all(why in j["Reason"] and "first frame is dropped" in j["Reason"] for j in result.post["Joins"])
    assert result.post["Extra"]["Joins"][0] == {"From": "a", "To": "b", "Kind": "continue", "Frames": 1}
    # Said in the node's report, the ledger's warnings and the consolidated metadata.
    report = result.describe()
    assert report.count(f"{asked} asked for a chained pair, joined by continue") == 2
    assert "scenes: a (continue) -> b (continue) -> c" in report and "read from: lossless masters" in report
    metadata = json.loads(Path(run.metadata_path).read_text(encoding="utf-8"))
    assert sum("joined by continue" in w for w in metadata["Warnings"]) == 2
    assert validate.validate_run(run.run_dir) == []


def test_chain_off_with_crossfade_8_keeps_the_frame_count_and_the_blend(folder):
    run, frames = _render_all(_story(folder, chain=False, transition={"kind": "crossfade", "frames": 8,
                                                                      "easing": "linear"}))
    film, plan = _joined(run)
    assert len(film) == plan.frames == sum(LENGTHS.values()) - 2 * 8
    weights = join.crossfade_weights(8, "linear")
    a, b = frames["a"].astype(np.float32) / 255, frames["b"].astype(np.float32) / 255
    blended = np.stack([a[len(a) - 8 + k] * (1 - w) + b[k] * w for k, w in enumerate(weights)])
    first = LENGTHS["a"] - 8
    assert np.abs(film[first:first + 8].astype(np.float32) / 255 - blended).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(film[:first], frames["a"][:first])
    result = engine.render_story(run, engine.RenderSettings(audio="off"))
    assert result.post["TransitionMethod"] == "crossfade" and result.post["FinalFrames"] == len(film)
    first = LENGTHS["a"] - 8
    assert [(j["Used"], j["Frames"], j["FilmStart"], j["Reason"]) for j in result.post["Joins"]] == [
        ("crossfade", 8, first, None), ("crossfade", 8, first + LENGTHS["b"] - 8, None)]
    assert not any("continue" in w for w in result.warnings)


def test_a_scene_rendered_again_unproves_the_chain_of_the_next_one(folder):
    story_path = _story(folder, chain=True, transition={"kind": "crossfade", "frames": 4})
    run, _frames = _render_all(story_path)

    def darker(start, end, count):
        return moving(start, end, count) * 0.5

    _prompt(story_path, 1, run_id=run.run_id, renderer=darker)  # a again: its last frame changes
    _film, plan = _joined(run)
    assert [s.join for s in plan.segments[:-1]] == ["crossfade", "continue"]
    assert any("'a' was rendered again after 'b' started on its last frame" in w for w in plan.warnings)
    assert plan.join_records()[0]["Reason"].startswith("not joined as chained: 'a' was rendered again")
    assert plan.frames == sum(LENGTHS.values()) - 4 - 1


def test_a_lost_last_frame_unproves_the_chain_instead_of_stopping_the_render(folder):
    run, _frames = _render_all(_story(folder, chain=True, transition={"kind": "crossfade", "frames": 4}))
    os.remove(ledger.scene_paths(run, "a").last_frame)
    _film, plan = _joined(run)
    assert [s.join for s in plan.segments[:-1]] == ["crossfade", "continue"]
    assert plan.join_records()[0]["Reason"].startswith("not joined as chained: 'a''s last frame")
    assert "missing or unreadable" in plan.join_records()[0]["Reason"]


def test_a_reordered_story_does_not_continue_scenes_that_were_not_chained_to_each_other(folder):
    story_path = _story(folder, chain=True, transition={"kind": "cut"})
    run, frames = _render_all(story_path)
    story = json.loads(story_path.read_text(encoding="utf-8"))
    story["scenes"] = [story["scenes"][2], story["scenes"][0], story["scenes"][1]]  # c, a, b
    story_path.write_text(json.dumps(story), encoding="utf-8")
    film, plan = _joined(run)
    assert [(s.scene_id, s.join) for s in plan.segments] == [("c", "cut"), ("a", "continue"), ("b", "cut")]
    assert np.array_equal(film, np.concatenate([frames["c"], frames["a"], frames["b"][1:]]))
    assert plan.cut_lefts == {LENGTHS["c"] - 1}


def test_render_from_masters_matches_the_frames_and_from_previews_it_does_not(folder, comfy_home, capsys):
    transition = {"kind": "crossfade", "frames": 8}
    run, frames = _render_all(_story(folder, chain=True, transition=transition))
    exact = np.concatenate([frames["a"], frames["b"][1:], frames["c"][1:]]).astype(np.float32) / 255
    from_master, plan = _joined(run)
    master_error = np.abs(from_master.astype(np.float32) / 255 - exact)
    assert all(s.source == "master" for s in plan.segments)
    assert master_error.max() <= 1 / 255

    previews, frames2 = _render_all(_story(comfy_home / "input" / "gemdirect" / "previews", chain=True,
                                           transition=transition), lossless_master=False)
    assert all(np.array_equal(frames[s], frames2[s]) for s in frames)  # the same frames, saved without masters
    from_preview, plan = _joined(previews)
    preview_error = np.abs(from_preview.astype(np.float32) / 255 - exact)
    with capsys.disabled():
        print(f"\njoined film vs the uncompressed frames: masters max {master_error.max() * 255:.2f} / mean "
              f"{master_error.mean() * 255:.3f} levels; H.264 previews max {preview_error.max() * 255:.2f} / mean "
              f"{preview_error.mean() * 255:.3f} levels")
    assert preview_error.max() > 1 / 255 and preview_error.mean() > master_error.mean()
    assert [s.source for s in plan.segments] == ["preview"] * 3
    assert sum("saved without a lossless master" in w for w in plan.warnings) == 3

    # Compared before the final encode: x264 here is not bit-reproducible run to run (the same frames
    # encoded twice differ by up to ~19 levels), so two finished films cannot be compared exactly.
    result = engine.render_story(previews, engine.RenderSettings(audio="off"))
    assert "H.264 previews for a, b, c" in result.describe()
    assert result.post["Extra"]["Sources"] == {"a": "preview", "b": "preview", "c": "preview"}
    metadata = json.loads(Path(previews.metadata_path).read_text(encoding="utf-8"))
    assert sum("saved without a lossless master" in w for w in metadata["Warnings"]) == 3
    assert all(scene["Video"]["Master"] is None for scene in metadata["Scenes"])


def test_scene_save_replaces_or_removes_its_master_and_says_so(folder):
    story_path = _story(folder, chain=True, transition=None)
    run, _frames, report = _prompt(story_path, 1)
    paths = ledger.scene_paths(run, "a")
    assert "Master: scenes/a.mkv (ffv1, 17 frames" in report and ledger.read_scene(run, "a")["Video"]["Master"]
    _run, _frames, report = _prompt(story_path, 1, run_id=run.run_id, lossless_master=False)
    assert "Master: off (Story Render will read the H.264 preview and warn); the earlier master was removed" in report
    assert ledger.read_scene(run, "a")["Video"]["Master"] is None
    assert not any(Path(p).exists() for p in (paths.master, paths.master_frames))


def test_without_ffv1_the_master_is_png_frames_and_renders_exactly(folder, monkeypatch):
    monkeypatch.setattr(master, "ffv1_available", lambda: False)
    run, frames = _render_all(_story(folder, chain=True, transition={"kind": "cut"}))
    record = ledger.read_scene(run, "b")
    assert record["Video"]["Master"] == "scenes/b_frames" and record["Video"]["Path"] == "scenes/b.mp4"
    film, _plan = _joined(run)
    assert np.array_equal(film, np.concatenate([frames["a"], frames["b"][1:], frames["c"][1:]]))
    assert master.probe_source(ledger.scene_paths(run, "c").master_frames).frames == LENGTHS["c"]


def test_a_chained_pair_with_a_vace_clip_keeps_the_clip(folder):
    run, frames = _render_all(_story(folder, chain=True, transition={"kind": "vace", "frames": 4}))
    record = record_clip(run, "a", "b", context=4, replace=4, chained=True,
                         frames=np.full((17, h.HEIGHT, h.WIDTH, 3), 200, np.uint8))
    assert record["Layout"]["Tail"] == 8 and record["Layout"]["Head"] == 9  # B's duplicate first frame once
    film, plan = _joined(run)
    tail = LENGTHS["a"] - 8
    assert np.array_equal(film[:tail], frames["a"][:tail])
    assert np.abs(film[tail:tail + 17].astype(int) - 200).max() <= 0  # the lossless clip, not a blend
    assert np.array_equal(film[tail + 17:tail + 17 + 5], frames["b"][9:14])
    assert [s.join for s in plan.segments[:-1]] == ["vace", "continue"]
    assert plan.frames == sum(LENGTHS.values()) - 8 - 9 + 17 - 1
    assert any("vace asked for a chained pair, joined by continue" in w and "not made in run" in w
               for w in plan.warnings)  # b -> c has no clip


def test_a_transition_made_for_an_unchained_pair_is_not_used_for_a_chained_one(folder):
    run, _frames = _render_all(_story(folder, chain=True, transition={"kind": "vace", "frames": 4}))
    record_clip(run, "a", "b", context=4, chained=False)
    _film, plan = _joined(run)
    assert plan.segments[0].join == "continue"
    assert "was made for an unchained pair" in plan.segments[0].reason


@pytest.mark.parametrize("chain", [True, False])
def test_interpolation_runs_across_a_continue_but_never_across_a_cut(folder, chain):
    run, _frames = _render_all(_story(folder, chain=chain, transition={"kind": "cut"}))
    _film, plan = _joined(run)
    joined = sum(LENGTHS.values()) - (2 if chain else 0)
    # The frames the interpolator is told never to blend: none for continues, the last frame before each cut.
    assert plan.cut_lefts == (set() if chain else {LENGTHS["a"] - 1, LENGTHS["a"] + LENGTHS["b"] - 1})
    result = engine.render_story(run, engine.RenderSettings(interpolation="flow", target_fps=24, audio="off"))
    assert result.post["Extra"]["JoinedFrames"] == joined
    assert result.post["FinalFrames"] == (joined - 1) * 24 // 16 + 1
    if chain:
        assert result.post["Extra"]["FramesHeldAtSceneCuts"] == 0  # a continue is motion: interpolated
