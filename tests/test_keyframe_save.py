"""Save Keyframe: the PNG and story.json round-trip (unknown fields kept), and neither a panel save in flight
nor one from another process is lost: both writers share the story's lock."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, pack_module
from PIL import Image
from story_helpers import base_story, write_story

keyframes = pack_module("nodes.control.keyframes")
control_nodes = pack_module("nodes.control.nodes")
load = pack_module("nodes.story.load")
plan_module = pack_module("nodes.story.plan")
engine = pack_module("nodes.panel.engine")
paths = pack_module("nodes.paths")


def story_with_extras(folder: Path) -> Path:
    story = base_story()
    story["x-tool"] = {"kept": [1, 2, 3]}
    story["scenes"][1]["x-notes"] = "unknown scene field"
    story["scenes"][1]["loras"] = [{"name": "style.safetensors", "strength": 0.5, "x-extra": True}]
    return write_story(folder, story)


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x / (width - 1), y / (height - 1), np.full_like(x, 0.25, dtype=float)], -1).astype(np.float32)


def test_save_keyframe_round_trips_through_story_json_keeping_unknown_fields(tmp_path):
    path = story_with_extras(tmp_path / "story")
    before = json.loads(path.read_text(encoding="utf-8"))
    image = gradient()
    saved = keyframes.save_keyframe(str(path), "b", image)
    assert saved.relative == "keyframes/b.png" and saved.previous is None
    after = json.loads(path.read_text(encoding="utf-8"))
    expected = json.loads(json.dumps(before))
    expected["scenes"][1]["keyframe"] = "keyframes/b.png"
    assert after == expected  # only that one field changed; unknown fields, order of scenes, all kept
    pixels = np.asarray(Image.open(tmp_path / "story" / "keyframes" / "b.png"))
    assert np.array_equal(pixels, np.rint(image * 255).astype(np.uint8))  # 8-bit PNG of exactly the image
    plan = plan_module.load_and_plan(str(path), "none").plan  # the story uses it now
    assert plan.scenes[1].keyframe == str((tmp_path / "story" / "keyframes" / "b.png").resolve())
    assert plan.scenes[0].next_keyframe == plan.scenes[1].keyframe  # the previous scene can head for it
    again = keyframes.save_keyframe(str(path), "b", 1.0 - image)
    assert again.previous == "keyframes/b.png"
    assert json.loads(path.read_text(encoding="utf-8")) == expected
    assert [p.name for p in (tmp_path / "story").iterdir() if p.name.startswith((".tmp", "~"))] == []


def test_the_node_saves_the_batch_image_it_is_told_and_reports_it(tmp_path):
    torch = pytest.importorskip("torch")
    path = story_with_extras(tmp_path / "story")
    story = plan_module.load_and_plan(str(path), "none")
    batch = torch.stack([torch.from_numpy(gradient()), torch.from_numpy(1.0 - gradient())])
    out = control_nodes.GemDirectSaveKeyframe().save(batch, story, story.plan.scenes[2], "keyframes/generated", 1)
    image, relative = out["result"]
    assert relative == "keyframes/generated/c.png" and tuple(image.shape) == (1, 48, 64, 3)
    saved = np.asarray(Image.open(tmp_path / "story" / "keyframes" / "generated" / "c.png"), dtype=np.float32) / 255
    assert np.abs(saved - (1.0 - gradient())).max() <= 0.5 / 255 + 1e-6
    assert "keyframes/generated/c.png" in out["ui"]["text"][0]
    with pytest.raises(ValueError, match="index 2 is outside the batch of 2"):
        control_nodes.GemDirectSaveKeyframe().save(batch, story, story.plan.scenes[2], "keyframes", 2)


@pytest.mark.parametrize("folder", ["../out", "/abs", "a/../../b", "", "kf/./x"])
def test_a_folder_outside_the_story_is_refused_and_nothing_is_written(tmp_path, folder):
    path = story_with_extras(tmp_path / "story")
    text = path.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="folder"):
        keyframes.save_keyframe(str(path), "b", gradient(), folder)
    assert path.read_text(encoding="utf-8") == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["story"]


def test_an_unknown_scene_leaves_story_json_and_the_folder_as_they_were(tmp_path):
    path = story_with_extras(tmp_path / "story")
    text = path.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="scene 'zz' is not in"):
        keyframes.save_keyframe(str(path), "zz", gradient())
    assert path.read_text(encoding="utf-8") == text
    assert not (tmp_path / "story" / "keyframes").exists()


def test_a_file_another_scene_uses_is_refused(tmp_path):
    story = base_story()
    story["scenes"][0]["keyframe"] = "keyframes/b.png"  # scene a points at the file scene b's save would write
    folder = tmp_path / "story"
    path = write_story(folder, story)
    (folder / "keyframes").mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "keyframes" / "b.png")
    text = path.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=r"scenes\[0\] \('a'\) uses keyframes/b.png as its keyframe too"):
        keyframes.save_keyframe(str(path), "b", gradient())
    assert path.read_text(encoding="utf-8") == text
    assert np.asarray(Image.open(folder / "keyframes" / "b.png"))[0, 0].tolist() == [1, 2, 3]  # untouched


# --------------------------------------------------------------------------- against the panel's saves


def panel_edit_title(name: str, index: int, title: str) -> None:
    """What the panel does: GET the story, change it, PUT it with the hash it loaded."""
    got = engine.get_story(name)
    raw = json.loads(json.dumps(got["story"]))
    raw["scenes"][index]["title"] = title
    engine.put_story(name, {"story": raw, "base_hash": got["hash"]})


@pytest.fixture
def panel_story(comfy_home):
    folder = comfy_home / "input" / "gemdirect" / "kf-story"
    return "kf-story/story.json", story_with_extras(folder)


def test_a_keyframe_save_waiting_on_the_lock_reads_the_panel_edit_made_meanwhile(panel_story):
    name, path = panel_story
    done = {}
    with load.story_lock(path):  # the panel's save is in flight: it holds the lock
        worker = threading.Thread(target=lambda: done.update(saved=keyframes.save_keyframe(str(path), "c", gradient())))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive(), "the keyframe save did not wait for the lock"
        panel_edit_title(name, 0, "Edited in the panel")  # the same thread: the lock is re-entrant
    worker.join(10)
    after = json.loads(path.read_text(encoding="utf-8"))
    assert after["scenes"][0]["title"] == "Edited in the panel"  # the panel's edit is not lost
    assert after["scenes"][2]["keyframe"] == "keyframes/c.png"  # and the keyframe is there too
    assert after["x-tool"] == {"kept": [1, 2, 3]}


def test_a_panel_put_on_a_copy_older_than_a_keyframe_save_gets_409_not_a_silent_overwrite(panel_story):
    name, path = panel_story
    got = engine.get_story(name)
    keyframes.save_keyframe(str(path), "b", gradient())
    raw = json.loads(json.dumps(got["story"]))
    raw["scenes"][0]["title"] = "stale edit"
    with pytest.raises(engine.PanelError) as refused:
        engine.put_story(name, {"story": raw, "base_hash": got["hash"]})
    assert refused.value.status == 409
    assert json.loads(path.read_text(encoding="utf-8"))["scenes"][1]["keyframe"] == "keyframes/b.png"


CHILD = """
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location({pack!r}, {init!r})
module = importlib.util.module_from_spec(spec); sys.modules[{pack!r}] = module; spec.loader.exec_module(module)
import importlib
load = importlib.import_module({pack!r} + ".nodes.story.load")
path = sys.argv[1]
with load.story_lock(path):
    print("locked", flush=True)
    time.sleep(1.0)
    def change(raw):
        raw["scenes"][0]["title"] = "from the other process"
    load.update_story(path, change)
"""


def test_a_panel_edit_from_another_process_is_not_lost(panel_story, tmp_path):
    _, path = panel_story
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(pack=REPO_ROOT.name, init=str(REPO_ROOT / "__init__.py")), encoding="utf-8")
    child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=str(REPO_ROOT.parent))
    try:
        assert child.stdout.readline().strip() == "locked"
        keyframes.save_keyframe(str(path), "a", gradient())  # blocks on the flock until the child wrote
    finally:
        assert child.wait(30) == 0
    after = json.loads(path.read_text(encoding="utf-8"))
    assert after["scenes"][0]["title"] == "from the other process"
    assert after["scenes"][0]["keyframe"] == "keyframes/a.png"
