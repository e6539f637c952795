"""A render killed mid-way (SIGKILL, no clean-up) leaves the previous film and its telemetry untouched."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

from conftest import REPO_ROOT, pack_module
from render_helpers import load, save_all, start_run, story_dict, write_story

engine = pack_module("nodes.render.engine")
ledger = pack_module("nodes.run.ledger")
validate = pack_module("nodes.run.validate")
atomic = pack_module("nodes.run.atomic")

CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from conftest import pack_module
    comfy = pack_module("nodes.comfy")
    engine = pack_module("nodes.render.engine")
    ledger = pack_module("nodes.run.ledger")
    marker = {marker!r}

    def slow(current, total):  # a long film: each chunk takes a while
        time.sleep(0.05)
        if current >= total // 3 and not os.path.exists(marker):
            open(marker, "w").close()

    comfy.Progress.listeners.append(slow)
    run = ledger.open_run_dir({run_dir!r})
    engine.render_story(run, engine.RenderSettings(interpolation="flow", target_fps=48, chunk_size=2))
    print("finished", flush=True)
""")


def _digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_sigkill_mid_render_keeps_the_previous_film_and_metadata(comfy_home, tmp_path):
    folder = comfy_home / "input" / "gemdirect" / "crash"
    path = write_story(folder, story_dict(("a", "b", "c"), [{"kind": "crossfade", "frames": 4}],
                                          lengths={"a": 33, "b": 33, "c": 33}))
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    engine.render_story(run, engine.RenderSettings())
    kept = [ledger.final_video_path(run), run.metadata_path, run.summary_path, os.path.join(run.final_dir, "post.json"),
            os.path.join(run.root, "latest-run.json")]
    before = {p: _digest(p) for p in kept}

    marker = tmp_path / "half-way"
    script = CHILD.format(tests=str(REPO_ROOT / "tests"), marker=str(marker), run_dir=run.run_dir)
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "GEMDIRECT_HOME": str(comfy_home)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, f"the render ended before it could be killed: {child.communicate()}"
            assert time.monotonic() < deadline, "the render never got a third of the way"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        out, _err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL and "finished" not in out

    assert {p: _digest(p) for p in kept} == before
    assert validate.validate_run(run.run_dir) == []
    # The killed render's half-written film is a temporary that listings skip, never the final file.
    leftovers = [n for n in os.listdir(run.final_dir) if n not in ("post.json", f"{run.story_id}.mp4")]
    assert leftovers and all(atomic.is_temporary(n) for n in leftovers), leftovers
    # And the next render replaces the film normally.
    result = engine.render_story(run, engine.RenderSettings())
    assert result.problems == []
