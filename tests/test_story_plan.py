"""Scene planning: frame counts, sizes, layering of defaults < preset < scene, warnings."""

from __future__ import annotations

import json
from fractions import Fraction

import jsonschema
import pytest
from conftest import REPO_ROOT, pack_module
from story_helpers import base_story, write_story

plan = pack_module("nodes.story.plan")
load = pack_module("nodes.story.load")
presets = pack_module("nodes.story.presets")
model = pack_module("nodes.story.model")


@pytest.mark.parametrize(
    ("seconds", "fps", "frames"),
    [(3.0, 16, 49), (3.0, 24, 73), (5.0, 16, 81), (5.0, 24, 121), (1.0, 16, 17), (0.1, 16, 5),
     (2.0, Fraction(24000, 1001), 49)],
)
def test_duration_becomes_4n_plus_1_frames(seconds, fps, frames):
    assert plan.frames_for_duration(seconds, fps) == frames
    assert (frames - 1) % 4 == 0


@pytest.mark.parametrize(("asked", "frames"), [(50, 49), (49, 49), (51, 53), (52, 53), (1, 5), (81, 81), (83, 85)])
def test_requested_frames_round_to_nearest_4n_plus_1(asked, frames):
    assert plan.round_frames(asked) == frames


@pytest.mark.parametrize(("value", "multiple", "expected"), [(850, 16, 848), (856, 16, 864), (720, 16, 720),
                                                              (720, 32, 736), (700, 32, 704), (5, 16, 16)])
def test_sizes_round_to_the_model_multiple(value, multiple, expected):
    assert plan.round_to_multiple(value, multiple) == expected


@pytest.mark.parametrize(("text", "fps"), [(16, Fraction(16)), ("24000/1001", Fraction(24000, 1001)),
                                           (23.976, Fraction(24000, 1001)), ("29.97", Fraction(30000, 1001)),
                                           ("12.5", Fraction(25, 2)), (59.94, Fraction(60000, 1001)),
                                           (29.97, Fraction(30000, 1001))])
def test_fps_parses_exactly(text, fps):
    assert model.parse_fps(text) == fps


def _plan(tmp_path, story, preset="none"):
    return plan.plan_story(load.load_story(write_story(tmp_path / "s", story)), preset)


def test_scene_plan_values_from_story_without_preset(tmp_path):
    story = base_story()
    story["defaults"].update({"width": 850, "height": 480, "seed": 7, "negative": "ugly"})
    result = _plan(tmp_path, story)
    a, b, c = result.scenes
    assert (a.length, b.length, c.length) == (49, 49, 33)
    assert a.width == 848 and a.height == 480  # 14B profile: multiples of 16
    assert any("width: 850 rounded to 848" in w for w in a.warnings)
    assert a.fps == 16 and a.duration_seconds == pytest.approx(49 / 16)
    assert a.seed == 7 and a.negative == "ugly"
    assert a.keyframe == str((tmp_path / "s" / "kf" / "a.png").resolve())
    assert b.keyframe is None
    assert [s.index for s in result.scenes] == [1, 2, 3]
    assert not a.chain and b.chain  # the first scene has nothing to chain from
    assert result.preset == "none" and result.story_id == "test-story"


def test_preset_overrides_story_defaults_and_scene_overrides_preset(tmp_path):
    story = base_story()
    story["defaults"].update({"width": 512, "height": 512, "steps": 30, "cfg": 4.0})
    story["scenes"][1]["cfg"] = 3.5
    story["scenes"][1]["width"] = 1024
    result = _plan(tmp_path, story, "cinematic")
    a, b, _ = result.scenes
    assert (a.width, a.height, a.steps, a.cfg) == (1280, 720, 20, 5.2)  # preset beats story defaults
    assert (b.width, b.cfg) == (1024, 3.5)  # the scene beats the preset
    assert a.transition.kind == "vace" and a.transition.frames == 16
    assert result.post.upscale and result.post.upscale_factor == 2.0
    assert result.post.target_fps == 24


def test_from_story_uses_the_preset_the_story_names(tmp_path):
    story = base_story()
    story["defaults"]["preset"] = "fast"
    result = _plan(tmp_path, story, "from story")
    assert result.preset == "fast" and result.model_profile == "wan22-ti2v-5b"
    assert result.scenes[0].width % 32 == 0 and result.scenes[0].sampler == "uni_pc"


def test_frames_default_to_the_preset_when_scene_gives_no_length(tmp_path):
    story = base_story()
    del story["scenes"][2]["duration"]
    assert _plan(tmp_path, story, "standard").scenes[2].length == 81
    assert _plan(tmp_path, story, "none").scenes[2].length == plan.DEFAULT_DURATION_FRAMES


def test_warnings_for_high_cfg_odd_steps_and_long_scenes(tmp_path):
    story = base_story()
    story["scenes"][0]["cfg"] = 6.0
    story["scenes"][1]["steps"] = 40
    story["scenes"][2]["duration"] = 10.0
    a, b, c = _plan(tmp_path, story).scenes
    assert any("cfg = 6 is 6 or more" in w for w in a.warnings)
    assert any("steps = 40 is outside 12 to 20" in w for w in b.warnings)
    assert any("longer than WAN 2.2 I2V 14B was trained for (81)" in w for w in c.warnings)
    assert not any("cfg" in w for w in b.warnings)


def test_last_scene_transition_is_a_cut_and_seeds_are_stable_under_reorder(tmp_path):
    story = base_story()
    story["scenes"][2]["transition"] = {"kind": "crossfade", "frames": 8}
    first = _plan(tmp_path / "one", story)
    assert first.scenes[-1].transition.kind == "cut"
    story["scenes"].reverse()
    second = _plan(tmp_path / "two", story)
    seeds_first = {s.id: s.seed for s in first.scenes}
    seeds_second = {s.id: s.seed for s in second.scenes}
    assert seeds_first == seeds_second  # no seed given: derived from ids, not positions
    assert [s.id for s in second.scenes] == ["c", "b", "a"]


def test_describe_plan_lists_every_scene_and_warning(tmp_path):
    story = base_story()
    story["scenes"][0]["cfg"] = 7.0
    text = plan.describe_plan(_plan(tmp_path, story))
    assert "3 scenes" in text and "49 frames @ 16 fps" in text and "WARNING: scenes[0].cfg = 7" in text
    assert "post: interpolation" in text  # the preset's post stages are part of the plan text


def test_the_plan_text_shows_a_presets_post_stages_and_the_loaders_they_need():
    from fractions import Fraction

    cinematic = plan.PostPlan(True, "rife", Fraction(24), True, 2.0, "model", False)
    assert plan.describe_post(cinematic) == (
        "post: interpolation rife to 24 fps (needs a RIFE file in RIFE Loader, else optical flow); "
        "upscale model x2 (needs a file in Upscale Model Loader, else Lanczos)")
    assert plan.describe_post(plan.PostPlan(False, "flow", None, False, 1.0, "lanczos", False)) == \
        "post: interpolation off; upscale off"


def test_read_modify_write_keeps_unknown_fields(tmp_path):
    story = base_story()
    story["x-editor"] = {"zoom": 2}
    story["defaults"]["x-note"] = "keep me"
    story["scenes"][1]["x-colour"] = "#ff0000"
    path = write_story(tmp_path / "s", story)
    loaded = load.load_story(path)
    raw = loaded.raw
    raw["scenes"][1]["prompt"] = "a new prompt"
    raw["scenes"].insert(0, raw["scenes"].pop(2))
    load.save_story(path, raw)
    again = json.loads(path.read_text(encoding="utf-8"))
    assert again["x-editor"] == {"zoom": 2} and again["defaults"]["x-note"] == "keep me"
    assert [s["id"] for s in again["scenes"]] == ["c", "a", "b"]
    assert again["scenes"][2]["x-colour"] == "#ff0000" and again["scenes"][2]["prompt"] == "a new prompt"
    assert load.load_story(path).story.scenes[2].model_extra == {"x-colour": "#ff0000"}


def test_save_refuses_an_invalid_story_and_leaves_the_file_alone(tmp_path):
    path = write_story(tmp_path / "s", base_story())
    before = path.read_bytes()
    raw = json.loads(before)
    raw["scenes"][0]["cfg"] = 99
    with pytest.raises(load.StoryError, match=r"scenes\[0\].cfg"):
        load.save_story(path, raw)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["kf", "story.json"]  # no temp files left


def test_bundled_presets_match_their_schema():
    schema_file = REPO_ROOT / "presets" / "preset.schema.json"
    committed = json.loads(schema_file.read_text(encoding="utf-8"))
    assert committed == presets.preset_json_schema(), "regenerate presets/preset.schema.json (see docs/presets.md)"
    for name in presets.PRESET_NAMES:
        data = json.loads((REPO_ROOT / "presets" / f"{name}.json").read_text(encoding="utf-8"))
        jsonschema.validate(data, committed)
        loaded = presets.load_preset(name)
        assert loaded.name == name and loaded.vram.min_gb > 0
        if loaded.vram.fallback:
            assert loaded.vram.fallback in presets.PRESET_NAMES
            assert presets.load_preset(loaded.vram.fallback).vram.min_gb < loaded.vram.min_gb


def test_broken_preset_file_names_the_field(tmp_path):
    data = json.loads((REPO_ROOT / "presets" / "fast.json").read_text(encoding="utf-8"))
    data["cfg"] = 40
    (tmp_path / "fast.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(presets.PresetError, match="cfg"):
        presets.load_preset("fast", str(tmp_path))
    with pytest.raises(presets.PresetError, match="unknown preset 'nope'"):
        presets.load_preset("nope", str(tmp_path))


def test_content_hash_is_of_the_bytes_that_were_validated(tmp_path):
    import hashlib

    path = write_story(tmp_path / "s", base_story())
    loaded = plan.load_and_plan(path)
    file_sha256 = pack_module("nodes.paths").file_sha256
    assert loaded.content_hash == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(str(path))


# --------------------------------------------------------------------------- expert split step


@pytest.mark.parametrize(("steps", "split"), [(16, 8), (20, 10), (15, 8), (12, 6), (2, 1), (1, 1)])
def test_split_step_defaults_to_half_the_steps_rounded(tmp_path, steps, split):
    story = base_story()
    story["defaults"]["steps"] = steps
    assert {s.split_step for s in _plan(tmp_path, story).scenes} == {split}


def test_cinematic_20_steps_split_at_10_not_8(tmp_path):
    assert [s.split_step for s in _plan(tmp_path, base_story(), "cinematic").scenes] == [10, 10, 10]


def test_split_step_layers_story_default_preset_scene(tmp_path, monkeypatch):
    story = base_story()
    story["defaults"].update({"steps": 20, "split_step": 6})
    story["scenes"][1]["split_step"] = 14
    a, b, _c = _plan(tmp_path, story).scenes
    assert (a.split_step, b.split_step) == (6, 14)
    data = json.loads((REPO_ROOT / "presets" / "cinematic.json").read_text(encoding="utf-8"))
    data["split_step"] = 12
    (tmp_path / "cinematic.json").write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(plan, "load_preset", lambda name: presets.load_preset(name, str(tmp_path)))
    a, b, _c = _plan(tmp_path, story, "cinematic").scenes
    assert (a.split_step, b.split_step) == (12, 14)  # the preset beats the story, the scene beats both


@pytest.mark.parametrize(("where", "value", "field", "words"), [
    ("scene", 16, "scenes[0].split_step", "16 is outside 1..15, which has 16 steps"),
    ("defaults", 40, "defaults.split_step", "40 is outside 1..15 for scenes[0] ('a'), which has 16 steps"),
])
def test_a_split_step_outside_the_steps_names_the_field(tmp_path, where, value, field, words):
    story = base_story()
    (story["scenes"][0] if where == "scene" else story["defaults"])["split_step"] = value
    with pytest.raises(load.StoryError) as caught:
        _plan(tmp_path, story)
    message = str(caught.value)
    assert f"{field}: {words}" in message and "use 1 to 15, or leave split_step out for half the steps (8)" in message


def test_a_preset_split_step_too_large_for_a_scene_names_the_preset_file(tmp_path, monkeypatch):
    data = json.loads((REPO_ROOT / "presets" / "cinematic.json").read_text(encoding="utf-8"))
    data["split_step"] = 18
    (tmp_path / "cinematic.json").write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(plan, "load_preset", lambda name: presets.load_preset(name, str(tmp_path)))
    story = base_story()
    story["scenes"][2]["steps"] = 12
    with pytest.raises(load.StoryError, match=r"presets/cinematic.json split_step: 18 is outside 1..11 for "
                                              r"scenes\[2\] \('c'\), which has 12 steps"):
        _plan(tmp_path, story, "cinematic")


def test_split_step_zero_or_a_float_is_refused_by_the_model(tmp_path):
    for bad, words in ((0, "0 is below the minimum 1"), (7.5, "7.5 should be a whole number")):
        story = base_story()
        story["scenes"][0]["split_step"] = bad
        with pytest.raises(load.StoryError, match=rf"scenes\[0\]\.split_step.*{words}"):
            _plan(tmp_path, story)


def test_plan_knows_the_next_scene_and_its_keyframe(tmp_path):
    a, b, c = _plan(tmp_path, base_story()).scenes
    assert (a.next_scene, b.next_scene, c.next_scene) == (b.id, c.id, None)
    assert a.next_keyframe == b.keyframe and c.next_keyframe is None
