"""VACE Prep and VACE Splice as ComfyUI runs them: a run's scenes -> control inputs -> transitions/<a>--<b>
(master, preview, record) -> freshness -> Story Render using the clips, falling back when stale, saying so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_pack, pack_module
from render_helpers import LENGTHS, centre_colours, load, nearest_scene, save_all, save_scene, start_run, story_dict
from render_helpers import write_story as write_story_file

engine = pack_module("nodes.render.engine")
ledger = pack_module("nodes.run.ledger")
transitions = pack_module("nodes.vace.transitions")
master = pack_module("nodes.video.master")
video = pack_module("nodes.video")
validate = pack_module("nodes.run.validate")
VACE = {"kind": "vace", "frames": 4}


def node(name: str):
    return load_pack().NODE_CLASS_MAPPINGS[name]()


@pytest.fixture
def run_and_story(comfy_home):
    path = write_story_file(comfy_home / "input" / "gemdirect" / "vace", story_dict(("a", "b", "c"), [VACE, VACE]))
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    return run, loaded


def fake_vace_output(control_video: torch.Tensor, masks: torch.Tensor, colour=(0.9, 0.85, 0.2)) -> torch.Tensor:
    """Stand-in for WanVaceToVideo + sampler + decode: the context kept (slightly brighter, as VACE shifts it), the
    grey frames filled with a colour."""
    filled = control_video.clone()
    filled[masks[:, 0, 0] == 1.0] = torch.tensor(colour)
    return (filled * 1.08).clamp(0, 1)


def make_transition(run, loaded, index: int, **settings):
    prep = node("GemDirectVACEPrep")
    values = {"context_frames": 4, "replace_frames": 0, "new_frames": 0} | settings
    video_in, masks, length, width, height, vace, prompt, negative, report = prep.prepare(
        index, run=run, story=loaded, **values)
    splice = node("GemDirectVACESplice")
    out = splice.splice(vace, fake_vace_output(video_in, masks), "mkl", 0.7,
                        prompt={"1": {"inputs": {"unet_name": "wan2.1_vace_14B_fp16.safetensors"}}})
    return (video_in, masks, length, width, height, vace, prompt, negative, report), out


def test_prep_gives_wan_vace_to_video_its_inputs_from_the_run(run_and_story):
    run, loaded = run_and_story
    prep = node("GemDirectVACEPrep")
    video_in, masks, length, width, height, vace, prompt, _negative, report = prep.prepare(
        2, run=run, story=loaded, context_frames=4, replace_frames=0, new_frames=0)
    assert length == 9 and video_in.shape == (9, 64, 80, 3) and masks.shape == (9, 64, 80)
    assert (width, height) == (80, 64)  # the scenes' 80x64 is already a multiple of 16
    assert prompt == "a c field" and vace.from_id == "b" and vace.to_id == "c"
    b = torch.cat(list(master.iter_source_frames(ledger.scene_paths(run, "b").master)))
    c = torch.cat(list(master.iter_source_frames(ledger.scene_paths(run, "c").master)))
    assert torch.equal(video_in[:4], b[LENGTHS["b"] - 4:]) and torch.equal(video_in[5:], c[:4])
    assert torch.all(video_in[4] == 0.5) and torch.all(masks[4] == 1) and torch.all(masks[:4] == 0)
    assert "'b' -> 'c' (transition 2)" in report


def test_transition_index_out_of_range_names_the_transitions(run_and_story):
    run, loaded = run_and_story
    with pytest.raises(ValueError) as refused:
        node("GemDirectVACEPrep").prepare(3, run=run, story=loaded, context_frames=4, replace_frames=0,
                                          new_frames=0)
    assert "outside 1..2" in str(refused.value) and "1: a -> b, 2: b -> c" in str(refused.value)
    assert "batch count to 2" in str(refused.value)


def test_prep_refuses_clips_too_short_for_the_settings(run_and_story):
    run, loaded = run_and_story
    with pytest.raises(ValueError, match=r"\(8 \+ 8\) \* 2 \+ 1 = 33"):
        node("GemDirectVACEPrep").prepare(1, run=run, story=loaded, context_frames=8, replace_frames=8,
                                          new_frames=0)


def test_splice_records_the_transition_and_story_render_uses_it(run_and_story):
    run, loaded = run_and_story
    for index in (1, 2):
        (_v, _m, length, *_rest), out = make_transition(run, loaded, index)
        _images, clip, report = out["result"]
        assert clip.shape[0] == length == 9
        assert "mean Lab difference" in report and "recorded: transitions/" in report
    record = transitions.read_transition(run, "a", "b")
    assert record["Schema"] == "gemdirect.transition/1" and record["Frames"] == 9
    assert record["Video"] == {"Path": "transitions/a--b.mp4", "Master": "transitions/a--b.mkv"}
    assert record["Layout"]["Tail"] == 4 and record["Layout"]["Head"] == 4 and record["Layout"]["Chained"] is False
    assert record["Settings"]["ColorMatch"] == "mkl" and record["Settings"]["ColorMatchStrength"] == 0.7
    assert record["Models"] == ["wan2.1_vace_14B_fp16.safetensors"]
    assert record["Fingerprint"]["From"]["SceneId"] == "a" and record["Fingerprint"]["To"]["SceneId"] == "b"
    assert record["ColorMatch"]["MeanLabDifferenceAfter"] < record["ColorMatch"]["MeanLabDifferenceBefore"]
    assert master.probe_source(ledger.resolve_in_run(run.run_dir, record["Video"]["Master"])).frames == 9
    assert video.probe_video(ledger.resolve_in_run(run.run_dir, record["Video"]["Path"])).frames == 9
    states = transitions.transition_states(run, loaded.plan.scenes)
    assert [(s.from_scene, s.to_scene, s.state) for s in states] == [("a", "b", "fresh"), ("b", "c", "fresh")]

    result = engine.render_story(run, engine.RenderSettings(audio="off"))
    assert result.problems == [] and validate.validate_run(run.run_dir) == []
    joins = result.post["Joins"]
    assert [(j["Used"], j["Clip"], j["Inserted"], j["Frames"]) for j in joins] == [
        ("vace", "transitions/a--b.mkv", 9, 8), ("vace", "transitions/b--c.mkv", 9, 8)]
    expected = sum(LENGTHS[s] for s in "abc") - 2 * 8 + 2 * 9
    assert result.post["FinalFrames"] == expected == result.film.frames
    assert "a (vace clip 9f) -> b (vace clip 9f) -> c" in result.describe()
    scenes = [nearest_scene(colour) for colour in centre_colours(result.path)]
    # each transition: A's context fading out, the generated (yellow-ish: scene d's colour) frame, B fading in
    assert scenes[:5] == ["a"] * 5 and scenes[-13:] == ["c"] * 13 and "d" in scenes[5:14]
    metadata = json.loads(Path(run.metadata_path).read_text(encoding="utf-8"))
    assert [j["Clip"] for j in metadata["Post"]["Joins"]] == ["transitions/a--b.mkv", "transitions/b--c.mkv"]


def test_a_scene_rendered_again_makes_its_transitions_stale_and_the_render_falls_back_saying_so(run_and_story):
    run, loaded = run_and_story
    for index in (1, 2):
        make_transition(run, loaded, index)
    save_scene(run, loaded.plan.scenes[1])  # b rendered again (attempt 2)
    states = transitions.transition_states(run, loaded.plan.scenes)
    assert [s.state for s in states] == ["stale", "stale"]
    assert all("'b' was rendered again since the transition was made" in s.reasons[0] for s in states)
    assert transitions.regenerate_transitions(states) == [1, 2]

    result = engine.render_story(run, engine.RenderSettings(audio="off"))
    joins = result.post["Joins"]
    assert [(j["Used"], j["Clip"]) for j in joins] == [("vace->crossfade", None)] * 2
    assert all("is stale" in j["Reason"] and "Regenerate stale transitions" in j["Reason"] for j in joins)
    assert sum("vace transition" in w and "is stale" in w for w in result.warnings) == 2
    assert "is stale" in result.describe()
    metadata = json.loads(Path(run.metadata_path).read_text(encoding="utf-8"))
    assert sum("is stale" in w for w in metadata["Warnings"]) == 2

    make_transition(run, loaded, 1)  # only the stale ones again: fresh, and used
    assert [s.state for s in transitions.transition_states(run, loaded.plan.scenes)] == ["fresh", "stale"]
    assert transitions.read_transition(run, "a", "b")["AttemptsRun"] == 2


def test_a_story_change_to_a_scene_makes_the_transition_stale(run_and_story, comfy_home):
    run, loaded = run_and_story
    make_transition(run, loaded, 1)
    story = story_dict(("a", "b", "c"), [VACE, VACE])
    story["scenes"][0]["prompt"] = "a different field"
    loaded_now = load(write_story_file(comfy_home / "input" / "gemdirect" / "vace", story))
    state = transitions.transition_states(run, loaded_now.plan.scenes)[0]
    assert state.state == "stale" and "'a' is stale" in state.reasons


def test_a_generated_clip_of_the_wrong_length_is_refused_and_nothing_is_recorded(run_and_story):
    run, loaded = run_and_story
    video_in, masks, *_rest, vace, _p, _n, _r = node("GemDirectVACEPrep").prepare(
        1, run=run, story=loaded, context_frames=4, replace_frames=0, new_frames=0)
    with pytest.raises(ValueError, match="has 5 frames, fewer than the 9"):
        node("GemDirectVACESplice").splice(vace, fake_vace_output(video_in, masks)[:5], "mkl", 0.7)
    assert transitions.read_transition(run, "a", "b") is None


def test_two_image_clips_join_without_a_run_and_a_chained_pair_drops_the_duplicate_once():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.random((13, 32, 48, 3), dtype=np.float32))
    b = torch.cat([a[-1:], torch.from_numpy(rng.random((12, 32, 48, 3), dtype=np.float32))])
    video_in, masks, length, width, height, vace, prompt, _n, report = node("GemDirectVACEPrep").prepare(
        1, context_frames=4, replace_frames=0, new_frames=0, images_a=a, images_b=b)
    assert vace.layout.chained and "chained pair" in report and length == 9 and (width, height) == (48, 32)
    assert torch.equal(video_in[-4:], b[1:5]) and prompt == ""
    out = node("GemDirectVACESplice").splice(vace, fake_vace_output(video_in, masks), "off", 0.7)
    images, _clip, _report = out["result"]
    assert images.shape[0] == 13 - 4 + 9 + 13 - 5 and torch.equal(images[:9], a[:9])
    assert torch.equal(images[-8:], b[5:])


def test_a_colour_match_that_makes_the_difference_larger_is_a_warning_in_the_run(run_and_story):
    run, loaded = run_and_story
    prep = node("GemDirectVACEPrep")
    video_in, _masks, *_rest, vace, _p, _n, _r = prep.prepare(1, run=run, story=loaded, context_frames=4,
                                                             replace_frames=0, new_frames=0)
    # the model re-rendered the context as noise, the generated frame close to the context's colour
    generated = torch.rand(video_in.shape, generator=torch.Generator().manual_seed(1))
    generated[4] = video_in[:4].mean(0)
    out = node("GemDirectVACESplice").splice(vace, generated, "mkl", 1.0)
    record = transitions.read_transition(run, "a", "b")
    assert record["ColorMatch"]["MeanLabDifferenceAfter"] > record["ColorMatch"]["MeanLabDifferenceBefore"]
    assert any("moved the generated frames further from their context" in w for w in record["Warnings"])
    assert "WARNING: the colour match" in out["result"][2]
    events = Path(run.events_path).read_text(encoding="utf-8")
    assert "moved the generated frames further" in events
