"""The README's first command: the demo runs through the pack's node classes on a fresh home."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT
from story_helpers import base_story, write_story


def _cli(*args, cwd):
    return subprocess.run([sys.executable, str(REPO_ROOT / "gemdirect.py"), *args], capture_output=True, text=True,
                          timeout=180, cwd=str(cwd))


def test_demo_plans_the_bundled_story_in_a_fresh_home(tmp_path):
    result = _cli("demo", "--home", str(tmp_path / "home"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "The Lighthouse Keeper" in result.stdout and "3 scenes" in result.stdout
    assert "scene 3/3 'dusk': start image 1x480x832x3, 57 frames at 16 fps" in result.stdout
    assert (tmp_path / "home" / "input" / "gemdirect" / "demo" / "story.json").is_file()


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
