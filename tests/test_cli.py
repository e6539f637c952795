"""The README's first command: the demo runs through the pack's node classes on a fresh home."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT
from story_helpers import base_story, write_story


def _cli(*args, cwd):
    return subprocess.run([sys.executable, str(REPO_ROOT / "gemdirect.py"), *args], capture_output=True, text=True,
                          timeout=180, cwd=str(cwd))


def test_demo_renders_the_bundled_story_end_to_end_in_a_fresh_home(tmp_path):
    """The README's demo, shortened (--small: 256x144, 1 s scenes): scenes saved, film rendered, telemetry valid."""
    import json

    from conftest import pack_module

    result = _cli("demo", "--home", str(tmp_path / "home"), "--small", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The Lighthouse Keeper" in result.stdout and "3 scenes" in result.stdout
    assert "scene 3/3 'dusk': 17 frames 256x144 at 16 fps, started from previous-scene" in result.stdout
    assert "validator: the run keeps the telemetry contract" in result.stdout
    film = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("film: "))
    run_dir = film.rsplit("/final/", 1)[0]
    info = pack_module("nodes.video").probe_video(film)
    # 3 chained scenes of 17 frames: the story's crossfades become continues (one frame dropped each):
    # 49 frames at 16 fps -> floor(48 * 24/16) + 1 at 24 fps.
    assert (info.frames, info.fps, info.width, info.height) == (73, 24, 384, 216)
    with open(f"{run_dir}/artifact-metadata.json", encoding="utf-8") as handle:
        metadata = json.load(handle)
    assert [scene["SceneId"] for scene in metadata["Scenes"]] == ["dawn", "noon", "dusk"]
    post = metadata["Post"]
    assert (post["InterpolationMethod"], post["UpscaleMethod"], post["TransitionMethod"]) == (
        "flow", "lanczos", "continue")
    assert [(j["Asked"], j["Used"], j["Frames"]) for j in post["Joins"]] == [("crossfade", "continue", 1)] * 2
    assert pack_module("nodes.run.validate").validate_run(run_dir) == []
    assert (tmp_path / "home" / "input" / "gemdirect" / "demo" / "story.json").is_file()


def test_demo_refuses_an_unreadable_upscale_model(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a model")
    result = _cli("demo", "--home", str(tmp_path / "home"), "--small", "--upscale-model", str(bad), cwd=tmp_path)
    assert result.returncode == 1 and "--upscale-model" in result.stderr and "Lanczos" in result.stderr


def test_plan_command_prints_errors_and_fails_on_a_bad_story(tmp_path):
    story = base_story()
    story["scenes"][0]["cfg"] = 50
    path = write_story(tmp_path / "s", story)
    result = _cli("plan", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "scenes[0].cfg: 50 is above the maximum 20" in result.stderr
    good = write_story(tmp_path / "g", base_story())
    result = _cli("plan", str(good), "--preset", "fast", cwd=tmp_path)
    assert result.returncode == 0 and "preset fast" in result.stdout
