"""Bad stories get clear errors that name the field, never a traceback from deep inside."""

from __future__ import annotations

import json
import os

import pytest
from conftest import pack_module
from story_helpers import base_story, write_story

load = pack_module("nodes.story.load")
plan = pack_module("nodes.story.plan")


def _set(story: dict, dotted: str, value) -> dict:
    """Set ``scenes.0.cfg``-style paths in a story dict (value DELETE removes the key)."""
    parts = dotted.split(".")
    node = story
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    last = parts[-1]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return story


DELETE = object()

# (case id, change to the base story, text the message must contain, field path the message names)
FIELD_CASES = [
    ("missing-scenes", ("scenes", DELETE), "missing", "scenes"),
    ("empty-scenes", ("scenes", []), "at least 1", "scenes"),
    ("scenes-not-list", ("scenes", {"id": "a"}), "list", "scenes"),
    ("scene-not-object", ("scenes.1", "just a string"), "object", "scenes[1]"),
    ("missing-title", ("title", DELETE), "missing", "title"),
    ("cfg-is-text", ("scenes.0.cfg", "high"), "number", "scenes[0].cfg"),
    ("cfg-50", ("scenes.0.cfg", 50), "above the maximum 20", "scenes[0].cfg"),
    ("cfg-bool", ("scenes.0.cfg", True), "number", "scenes[0].cfg"),
    ("steps-fraction", ("scenes.1.steps", 12.5), "whole number", "scenes[1].steps"),
    ("steps-zero", ("scenes.1.steps", 0), "below the minimum 1", "scenes[1].steps"),
    ("negative-duration", ("scenes.0.duration", -2.0), "must be more than 0", "scenes[0].duration"),
    ("huge-duration", ("scenes.0.duration", 9000), "above the maximum 600", "scenes[0].duration"),
    ("frames-text", ("scenes.1.frames", "49"), "whole number", "scenes[1].frames"),
    ("negative-seed", ("scenes.2.seed", -1), "below the minimum 0", "scenes[2].seed"),
    ("seed-too-big", ("scenes.2.seed", 2**64), "above the maximum", "scenes[2].seed"),
    ("width-too-big", ("defaults.width", 10000), "above the maximum 4096", "defaults.width"),
    ("fps-garbage", ("scenes.0.fps", "fast"), "not a number or a fraction", "scenes[0].fps"),
    ("fps-zero-denominator", ("defaults.fps", "24/0"), "divides by zero", "defaults.fps"),
    ("fps-too-high", ("defaults.fps", 1000), "fps is outside 1 to 240", "defaults.fps"),
    ("empty-prompt", ("scenes.0.prompt", ""), "empty", "scenes[0].prompt"),
    ("blank-prompt", ("scenes.0.prompt", "   \n"), "blank", "scenes[0].prompt"),
    ("missing-prompt", ("scenes.2.prompt", DELETE), "missing", "scenes[2].prompt"),
    ("missing-id", ("scenes.2.id", DELETE), "missing", "scenes[2].id"),
    ("bad-id", ("scenes.0.id", "my scene!"), "not a valid id", "scenes[0].id"),
    ("duplicate-ids", ("scenes.2.id", "a"), "already used", "scenes[2].id"),
    ("ids-differ-only-in-case", ("scenes.2.id", "A"), "ignoring case", "scenes[2].id"),
    ("duration-and-frames", ("scenes.0.frames", 49), "not both", "scenes[0]"),
    ("bad-transition-kind", ("scenes.0.transition", {"kind": "wipe"}), "'cut', 'crossfade' or 'vace'",
     "scenes[0].transition.kind"),
    ("lora-strength-text", ("scenes.0.loras", [{"name": "x.safetensors", "strength": "strong"}]), "number",
     "scenes[0].loras[0].strength"),
    ("lora-without-name", ("scenes.0.loras", [{"strength": 1.0}]), "missing", "scenes[0].loras[0].name"),
    ("control-kind", ("scenes.1.control", {"kind": "normals", "sequence": "c.zip"}), "'pose', 'depth' or 'canny'",
     "scenes[1].control.kind"),
    ("wrong-schema", ("schema", "gemdirect.story/2"), "gemdirect.story/1", "schema"),
    ("unknown-profile", ("defaults.model_profile", "sdxl"), "unknown model profile", "defaults.model_profile"),
    ("keyframe-escapes", ("scenes.0.keyframe", "../../x.png"), "leaves the story's folder", "scenes[0].keyframe"),
    ("keyframe-absolute", ("scenes.0.keyframe", "/etc/passwd.png"), "not a path relative", "scenes[0].keyframe"),
    ("keyframe-windows-drive", ("scenes.0.keyframe", "C:\\frames\\a.png"), "not a path relative",
     "scenes[0].keyframe"),
    ("keyframe-missing", ("scenes.1.keyframe", "kf/nope.png"), "not found", "scenes[1].keyframe"),
    ("keyframe-not-image", ("scenes.1.keyframe", "notes.txt"), "is not one of", "scenes[1].keyframe"),
    ("soundtrack-escapes", ("soundtrack", "../music.wav"), "leaves the story's folder", "soundtrack"),
    ("transition-too-long", ("scenes.0.transition", {"kind": "crossfade", "frames": 60}), "use at most 48",
     "scenes[0].transition.frames"),
    ("unknown-preset", ("defaults.preset", "ultra"), "unknown preset 'ultra'", "defaults.preset"),
]


@pytest.mark.parametrize("case", FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_bad_story_names_the_field(tmp_path, case):
    _, (path, value), expected_text, field = case
    story = _set(base_story(), path, value)
    story_file = write_story(tmp_path / "story", story)
    with pytest.raises(load.StoryError) as caught:
        plan.load_and_plan(story_file)
    message = str(caught.value)
    assert field in message, message
    assert expected_text in message, message
    # One line per problem, no pydantic internals leaking through.
    assert "validation error" not in message and "https://errors.pydantic.dev" not in message, message
    assert any(str(issue).startswith(field) or field in str(issue) for issue in caught.value.issues)


FILE_CASES = [
    ("not-utf8", "story \xe9t\xe9".encode("latin-1"), "not UTF-8"),
    ("empty-file", b"", "empty"),
    ("bad-json", b'{"title": "x", "scenes": [}', "invalid JSON at line 1"),
    ("trailing-comma", b'{"title": "x",\n "scenes": [],\n}', "line 3"),
    ("top-level-list", b'[{"id": "a"}]', "top level is a JSON list"),
    ("nan-cfg", b'{"title": "x", "scenes": [{"id": "a", "prompt": "p", "cfg": NaN}]}', "NaN is not a number"),
    ("duplicate-key", b'{"title": "x", "title": "y", "scenes": []}', "key 'title' appears twice"),
    ("deep-nesting", b"[" * 100000 + b"]" * 100000, "invalid JSON"),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_story_file_is_explained(tmp_path, case):
    _, data, expected = case
    story_file = write_story(tmp_path / "story", data)
    with pytest.raises(load.StoryError) as caught:
        load.load_story(story_file)
    assert expected in str(caught.value)
    assert "story.json" in str(caught.value)


def test_fifty_megabyte_story_is_refused_without_reading_it(tmp_path):
    story_file = write_story(tmp_path / "story", base_story())
    with open(story_file, "ab") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: the loader must refuse by size, not parse 50 MB
    with pytest.raises(load.StoryError) as caught:
        load.load_story(story_file)
    assert "50.0 MB" in str(caught.value) and "at most 5 MB" in str(caught.value)


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(load.StoryError, match="file not found"):
        load.load_story(tmp_path / "nope.json")
    with pytest.raises(load.StoryError, match="is not a file"):
        load.load_story(tmp_path)


def test_symlinked_keyframe_cannot_leave_the_folder(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not really")
    story_dir = tmp_path / "story"
    story = base_story()
    story["scenes"][1]["keyframe"] = "kf/link.png"
    story_file = write_story(story_dir, story)
    os.symlink(outside, story_dir / "kf" / "link.png")
    with pytest.raises(load.StoryError) as caught:
        load.load_story(story_file)
    assert "scenes[1].keyframe" in str(caught.value) and "leaves the story's folder" in str(caught.value)


def test_every_problem_is_listed_at_once(tmp_path):
    story = base_story()
    story["scenes"][0]["cfg"] = 50
    story["scenes"][1]["steps"] = "many"
    story["scenes"][2]["prompt"] = ""
    with pytest.raises(load.StoryError) as caught:
        load.load_story(write_story(tmp_path / "s", story))
    paths = [issue.path for issue in caught.value.issues]
    assert paths == ["scenes[0].cfg", "scenes[1].steps", "scenes[2].prompt"]
    assert "3 problems" in str(caught.value)


def test_typo_in_field_name_warns_and_keeps_it(tmp_path):
    story = base_story()
    story["scenes"][0]["promt"] = "typo"
    loaded = load.load_story(write_story(tmp_path / "s", story))
    assert any("scenes[0].promt" in w and "did you mean 'prompt'" in w for w in loaded.warnings)


def test_missing_schema_is_read_as_version_one_with_a_warning(tmp_path):
    story = base_story()
    del story["schema"]
    loaded = load.load_story(write_story(tmp_path / "s", story))
    assert any(w.startswith("schema: missing") for w in loaded.warnings)


def test_error_messages_are_json_serialisable_lines(tmp_path):
    story = base_story()
    story["scenes"][0]["cfg"] = 50
    with pytest.raises(load.StoryError) as caught:
        load.load_story(write_story(tmp_path / "s", story))
    json.dumps([str(issue) for issue in caught.value.issues])
    assert str(caught.value.issues[0]) == "scenes[0].cfg: 50 is above the maximum 20 (allowed 1 to 20)"
