"""The story nodes called as ComfyUI calls them, with real files and real tensors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import pack_module
from PIL import Image
from story_helpers import base_story, write_story

story_nodes = pack_module("nodes.story.nodes")
Loader = story_nodes.GemDirectStoryLoader
Select = story_nodes.GemDirectSceneSelect


def test_demo_story_is_installed_and_listed(comfy_home):
    options = Loader.INPUT_TYPES()["required"]["story"][0]
    assert "demo/story.json" in options
    demo = comfy_home / "input" / "gemdirect" / "demo"
    assert sorted(p.name for p in (demo / "keyframes").iterdir()) == ["dawn.png", "dusk.png", "noon.png"]
    story, count, text = Loader().load("demo/story.json", "from story")
    assert count == 3 and "The Lighthouse Keeper" in text
    assert [s.id for s in story.plan.scenes] == ["dawn", "noon", "dusk"]
    assert all(s.keyframe and os.path.isfile(s.keyframe) for s in story.plan.scenes)


def test_user_edits_to_the_demo_are_never_overwritten(comfy_home):
    Loader.INPUT_TYPES()
    path = comfy_home / "input" / "gemdirect" / "demo" / "story.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["title"] = "My own cut"
    path.write_text(json.dumps(raw), encoding="utf-8")
    Loader.INPUT_TYPES()
    assert json.loads(path.read_text(encoding="utf-8"))["title"] == "My own cut"


def test_stories_are_listed_from_subfolders(comfy_home):
    write_story(comfy_home / "input" / "gemdirect" / "boat", base_story())
    options = Loader.INPUT_TYPES()["required"]["story"][0]
    assert "boat/story.json" in options and "demo/story.json" in options


def test_is_changed_follows_the_file_content(comfy_home):
    path = write_story(comfy_home / "input" / "gemdirect" / "boat", base_story())
    first = Loader.IS_CHANGED("boat/story.json", "none")
    assert Loader.IS_CHANGED("boat/story.json", "none") == first
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["scenes"][0]["prompt"] = "a blue boat"
    path.write_text(json.dumps(raw), encoding="utf-8")
    second = Loader.IS_CHANGED("boat/story.json", "none")
    assert second != first
    Image.new("RGB", (80, 60), (0, 0, 255)).save(path.parent / "kf" / "a.png")  # keyframe replaced
    os.utime(path.parent / "kf" / "a.png", ns=(1, 1))
    assert Loader.IS_CHANGED("boat/story.json", "none") != second
    assert Loader.IS_CHANGED("boat/story.json", "fast") != Loader.IS_CHANGED("boat/story.json", "none")


def test_validate_inputs_rejects_paths_outside_the_story_folder(comfy_home):
    Loader.INPUT_TYPES()
    assert Loader.VALIDATE_INPUTS("demo/story.json", "none") is True
    assert "not inside" in Loader.VALIDATE_INPUTS("../../etc/passwd", "none")
    assert "not found" in Loader.VALIDATE_INPUTS("nope/story.json", "none")
    assert "input/gemdirect" in Loader.VALIDATE_INPUTS(story_nodes.NO_STORIES, "none")


def test_loader_stops_on_a_bad_story_naming_the_field(comfy_home):
    story = base_story()
    story["scenes"][1]["cfg"] = 50
    write_story(comfy_home / "input" / "gemdirect" / "bad", story)
    with pytest.raises(ValueError, match=r"scenes\[1\]\.cfg: 50 is above the maximum 20"):
        Loader().load("bad/story.json", "none")


def test_scene_select_outputs_plain_values_and_a_fitted_keyframe(comfy_home):
    story_dir = comfy_home / "input" / "gemdirect" / "boat"
    write_story(story_dir, base_story())
    # A tall keyframe with a green centre and red top/bottom: cover-fit to 832x480 must crop the red.
    image = Image.new("RGB", (400, 900), (255, 0, 0))
    image.paste((0, 255, 0), (0, 200, 400, 700))
    image.save(story_dir / "kf" / "a.png")
    story, _, _ = Loader().load("boat/story.json", "none")
    out = Select().select(story, 1)
    names = Select.RETURN_NAMES
    values = dict(zip(names, out, strict=True))
    assert values["scene"].id == "a"
    assert values["positive"] == "a red boat on a lake"
    assert (values["width"], values["height"], values["length"]) == (832, 480, 49)
    assert values["fps"] == 16.0 and isinstance(values["fps"], float)
    assert isinstance(values["seed"], int) and isinstance(values["cfg"], float)
    assert values["split_step"] == values["scene"].split_step == (values["steps"] + 1) // 2
    keyframe = values["keyframe"]
    assert keyframe.shape == (1, 480, 832, 3) and keyframe.dtype == torch.float32
    assert 0.0 <= keyframe.min() and keyframe.max() <= 1.0
    centre = keyframe[0, 240, 416]
    assert torch.allclose(centre, torch.tensor([0.0, 1.0, 0.0]), atol=0.02)
    # 400x900 covering 832x480 scales by 2.08 -> 1872 tall, cropped to the middle 480: all green.
    assert keyframe[0, :, :, 0].max() < 0.05


def test_scene_without_keyframe_gets_a_grey_frame_of_its_size(comfy_home):
    write_story(comfy_home / "input" / "gemdirect" / "boat", base_story())
    story, _, _ = Loader().load("boat/story.json", "fast")
    out = Select().select(story, 2)
    assert out[0].keyframe is None
    assert out[10].shape == (1, out[7], out[6], 3)
    assert torch.all(out[10] == 0.5)


@pytest.mark.parametrize("index", [0, 4, 99])
def test_scene_index_outside_the_story_says_the_range(comfy_home, index):
    write_story(comfy_home / "input" / "gemdirect" / "boat", base_story())
    story, _, _ = Loader().load("boat/story.json", "none")
    with pytest.raises(ValueError, match="use 1 to 3"):
        Select().select(story, index)


def test_batch_count_walks_every_scene(comfy_home):
    """scene_index 1..N, as 'increment' with batch count N queues them, visits each scene once."""
    Loader.INPUT_TYPES()
    story, count, _ = Loader().load("demo/story.json", "from story")
    seen = [Select().select(story, index)[0].id for index in range(1, count + 1)]
    assert seen == ["dawn", "noon", "dusk"]
