"""The farm across real ComfyUI workers: two ComfyUI instances on loopback (each its own base directory and
port, tiny WAN models, the pack linked in) render one story together through ComfyUI's HTTP/websocket
API, and the film equals the one the first instance renders alone, frame for frame.

The story: 4 scenes at 128x80, 9 frames, 2 steps, two chains (s1 -> s2, s3 -> s4) so both workers have
work at once; the shipped story_wan22_14b_flf2v.json with the text encoder swapped for the seeded test
conditioning, as tests/test_comfyui_workflows.py runs it. The first instance also takes the ``post``
stage and renders the film with story_render.json (the one-instance run renders it on the coordinator:
the same film). A third address where nothing listens is reported by the worker check and left out.
Runs when COMFYUI_PATH is set (see docs/comfyui-integration.md).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tiny_models
from comfyui_server import TEST_NODES, free_port, running_comfyui
from conftest import REPO_ROOT, load_pack, pack_module
from workflow_check import load_schemas, pack_schemas, to_api_prompt
from workflow_run import models_wanted, swap_text_encoder

pytestmark = pytest.mark.integration
ray = pytest.importorskip("ray", reason="the farm needs ray (requirements-scale.txt)")

WORKFLOW = REPO_ROOT / "example_workflows" / "story_wan22_14b_flf2v.json"
RENDER_WORKFLOW = REPO_ROOT / "example_workflows" / "story_render.json"
RENDER = {"interpolation": "off", "upscale": "off"}
SIZE, FRAMES, STEPS = (128, 80), 9, 2
PROMPT_TIMEOUT = 900.0


def write_story(folder: Path) -> Path:
    demo = pack_module("nodes.story.demo")
    (folder / "keyframes").mkdir(parents=True, exist_ok=True)
    scenes = []
    for index, look in enumerate(("dawn", "noon", "dusk", "noon"), start=1):
        demo.paint_keyframe(look, SIZE).save(folder / "keyframes" / f"k{index}.png")
        scenes.append({"id": f"s{index}", "prompt": f"the lighthouse at {look}", "frames": FRAMES, "steps": STEPS,
                       "width": SIZE[0], "height": SIZE[1],  # a scene's size beats the preset's, the defaults' do not
                       "keyframe": f"keyframes/k{index}.png", "chain": index in (2, 4)})
    story = {"schema": "gemdirect.story/1", "id": "itest-farm", "title": "Farm integration test",
             "defaults": {"preset": "standard", "cfg": 5.0, "seed": 7,
                          "transition": {"kind": "cut", "frames": 0}},
             "scenes": scenes}
    path = folder / "story.json"
    path.write_text(json.dumps(story, indent=1), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_cache(request) -> Path:
    override = os.environ.get("GEMDIRECT_TINY_MODELS")
    return Path(override) if override else Path(request.config.cache.mkdir("gemdirect-tiny-models"))


def install_models(base: Path, cache: Path) -> None:
    pack = load_pack()
    schemas = load_schemas() | pack_schemas(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)
    prompt = to_api_prompt(json.loads(WORKFLOW.read_text(encoding="utf-8")), json.loads(json.dumps(schemas,
                                                                                                   default=str)))
    for folder, name, kind in models_wanted(prompt):
        tiny_models.install(tiny_models.build(kind, cache), base / "models", folder, name)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, model_cache):
    from comfyui_server import comfyui_checkout

    comfyui_checkout()
    bases = [tmp_path_factory.mktemp(f"farm-worker-{n}") for n in (1, 2)]
    for base in bases:
        install_models(base, model_cache)
    nodes = {"gemdirect_test_conditioning": TEST_NODES / "gemdirect_test_conditioning"}
    with running_comfyui(bases[0], nodes) as first, running_comfyui(bases[1], nodes) as second:
        yield first, second


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, resources={"gemdirect_slots": 2}, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def frames_of(path: str) -> np.ndarray:
    decode = pack_module("nodes.video.decode")
    return np.concatenate(list(decode.iter_frames(path, 16, dtype="uint8", as_torch=False)))


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory):
    """The coordinator's own folders (its run ledger), as GEMDIRECT_HOME for the module."""
    home = tmp_path_factory.mktemp("farm-coordinator")
    for sub in ("input", "output", "temp", "user", "models"):
        (home / sub).mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEMDIRECT_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def farm_runs(two_workers, local_ray, coordinator):
    """The story farmed by both instances (the film rendered on the first), then by the first alone (the film
    rendered on the coordinator)."""
    schedule = pack_module("nodes.farm.schedule")
    first, second = two_workers
    story = write_story(coordinator / "input" / "gemdirect" / "itest-farm")
    object_info = first.get("/object_info").json()
    prompt = swap_text_encoder(to_api_prompt(json.loads(WORKFLOW.read_text(encoding="utf-8")), object_info))
    render = to_api_prompt(json.loads(RENDER_WORKFLOW.read_text(encoding="utf-8")), object_info)
    for node in render.values():
        if node["class_type"] == "GemDirectStoryRender":
            node["inputs"].update(RENDER)
    nobody = f"http://127.0.0.1:{free_port()}"
    # first takes scenes and the render (post), second scenes only: the film is rendered on first.
    together = schedule.run_farm(story, workers=[f"{first.url}@scenes+post", f"{second.url}@scenes", nobody],
                                 workflow=prompt, render_workflow=render, timeout_s=PROMPT_TIMEOUT, progress=False)
    alone = schedule.run_farm(story, workers=[first.url], workflow=prompt, timeout_s=PROMPT_TIMEOUT, progress=False,
                              render=RENDER)
    return SimpleNamespace(story=story, prompt=prompt, nobody=nobody, together=together, alone=alone)


def master_frames(run, scene: str) -> np.ndarray:
    ledger = pack_module("nodes.run.ledger")
    master = pack_module("nodes.video.master")
    path = ledger.scene_paths(run, scene).master
    return np.concatenate(list(master.iter_source_frames(path, 16, dtype="uint8", as_torch=False)))


def test_two_comfyui_workers_render_the_story_together_into_the_one_worker_film(two_workers, farm_runs):
    execute = pack_module("nodes.farm.execute")
    events = pack_module("nodes.run.events")
    ledger = pack_module("nodes.run.ledger")
    first, second = two_workers
    together, alone = farm_runs.together, farm_runs.alone
    assert together.failed == [], together.results
    assert together.results["render"]["worker"] == first.url
    assert together.results["render"]["method"] == f"Story Render prompt on {first.url}"
    left_out = {check.worker.name: check.problems for check in together.checks if not check.ok}
    assert list(left_out) == [farm_runs.nobody] and "not usable" in left_out[farm_runs.nobody][0]
    used = {e["worker"] for e in events.read_events(together.run.run_dir).of_kind(execute.FARM_JOB)
            if e["state"] == "started" and e["kind"] == "scene"}
    assert used == {first.url, second.url}, used  # both instances rendered scenes
    assert alone.failed == [], alone.results
    assert alone.results["render"]["worker"] == "coordinator"
    for scene in ("s1", "s2", "s3", "s4"):  # CPU sampling is deterministic across the two processes
        np.testing.assert_array_equal(master_frames(together.run, scene), master_frames(alone.run, scene),
                                      err_msg=f"scene {scene} differs between the runs")
        record = ledger.read_scene(together.run, scene)
        assert record["Success"] is True and record["FrameCount"] == FRAMES and record["Resolution"] == "128x80"
    chained = ledger.read_scene(together.run, "s2")
    assert chained["Telemetry"]["FLF2VSource"] == "previous-scene"  # started on s1's last frame, uploaded to it
    np.testing.assert_array_equal(frames_of(together.final_path), frames_of(alone.final_path))
    post = ledger.read_post(together.run)
    assert os.path.isfile(together.run.metadata_path)  # the coordinator wrote the telemetry from its ledger
    assert {(j["From"], j["To"]): j["Used"] for j in post["Joins"]}[("s1", "s2")] == "continue"


def test_a_comfyui_worker_killed_mid_prompt_has_its_scene_rendered_by_the_other(two_workers, farm_runs, coordinator):
    """Runs last: it kills the second instance."""
    schedule = pack_module("nodes.farm.schedule")
    execute = pack_module("nodes.farm.execute")
    events = pack_module("nodes.run.events")
    ledger = pack_module("nodes.run.ledger")
    first, second = two_workers
    folder = coordinator / "input" / "gemdirect" / "itest-farm-kill"
    story = json.loads(farm_runs.story.read_text(encoding="utf-8"))
    story["id"] = "itest-farm-kill"
    story["scenes"] = [dict(scene, chain=False) for scene in story["scenes"] if scene["id"] in ("s1", "s3")]
    (folder / "keyframes").mkdir(parents=True)
    for name in ("k1.png", "k3.png"):
        (folder / "keyframes" / name).write_bytes((farm_runs.story.parent / "keyframes" / name).read_bytes())
    (folder / "story.json").write_text(json.dumps(story), encoding="utf-8")
    killed = []

    def killer():
        root = coordinator / "output" / "gemdirect" / "itest-farm-kill"
        while not killed and second.process.poll() is None:
            for log in root.glob("*/events.jsonl"):
                if any(e.get("state") == "started" and e.get("worker") == second.url
                       for e in events.read_events(log.parent).of_kind(execute.FARM_JOB)):
                    time.sleep(3)  # the prompt is queued and running there by now
                    second.process.kill()
                    killed.append(second.url)
                    return
            time.sleep(0.2)

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    result = schedule.run_farm(folder / "story.json", workers=[first.url, second.url], workflow=farm_runs.prompt,
                               timeout_s=PROMPT_TIMEOUT, progress=False, render=RENDER)
    watcher.join(5)
    assert killed, "the second instance never got a job"
    assert result.failed == [], result.results
    jobs = events.read_events(result.run.run_dir).of_kind(execute.FARM_JOB)
    lost = [e for e in jobs if e["state"] == "lost"]
    assert len(lost) == 1 and lost[0]["worker"] == second.url
    again = [e for e in jobs if e["job"] == lost[0]["job"] and e["state"] == "done"]
    assert [e["worker"] for e in again] == [first.url] and again[0]["attempt"] == 2
    assert any("left out" in warning for warning in result.warnings)
    for scene in ("s1", "s3"):  # nothing lost, and each scene as the one-instance run made it
        assert ledger.read_scene(result.run, scene)["Success"] is True
        np.testing.assert_array_equal(master_frames(result.run, scene), master_frames(farm_runs.alone.run, scene))
    (join,) = ledger.read_post(result.run)["Joins"]  # the preset's transition between the two (a crossfade)
    assert frames_of(result.final_path).shape[0] == 2 * FRAMES - join["Frames"]
