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
from pathlib import Path

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


def test_two_comfyui_workers_render_the_story_together_into_the_one_worker_film(two_workers, local_ray, comfy_home):
    schedule = pack_module("nodes.farm.schedule")
    execute = pack_module("nodes.farm.execute")
    events = pack_module("nodes.run.events")
    ledger = pack_module("nodes.run.ledger")
    master = pack_module("nodes.video.master")
    first, second = two_workers
    story = write_story(comfy_home / "input" / "gemdirect" / "itest-farm")
    prompt = swap_text_encoder(to_api_prompt(json.loads(WORKFLOW.read_text(encoding="utf-8")),
                                             first.get("/object_info").json()))
    nobody = f"http://127.0.0.1:{free_port()}"

    render = to_api_prompt(json.loads(RENDER_WORKFLOW.read_text(encoding="utf-8")), first.get("/object_info").json())
    for node in render.values():
        if node["class_type"] == "GemDirectStoryRender":
            node["inputs"].update(RENDER)

    # first takes scenes and the render (post), second scenes only: the film is rendered on first.
    together = schedule.run_farm(story, workers=[f"{first.url}@scenes+post", f"{second.url}@scenes", nobody],
                                 workflow=prompt, render_workflow=render, timeout_s=PROMPT_TIMEOUT, progress=False)
    assert together.failed == [], together.results
    assert together.results["render"]["worker"] == first.url
    assert together.results["render"]["method"] == f"Story Render prompt on {first.url}"
    left_out = {check.worker.name: check.problems for check in together.checks if not check.ok}
    assert list(left_out) == [nobody] and "not usable" in left_out[nobody][0]
    used = {e["worker"] for e in events.read_events(together.run.run_dir).of_kind(execute.FARM_JOB)
            if e["state"] == "started" and e["kind"] == "scene"}
    assert used == {first.url, second.url}, used  # both instances rendered scenes

    alone = schedule.run_farm(story, workers=[first.url], workflow=prompt, timeout_s=PROMPT_TIMEOUT, progress=False,
                              render=RENDER)  # the film rendered on the coordinator this time
    assert alone.failed == [], alone.results
    assert alone.results["render"]["worker"] == "coordinator"
    for scene in ("s1", "s2", "s3", "s4"):  # CPU sampling is deterministic across the two processes
        paths = [ledger.scene_paths(result.run, scene) for result in (together, alone)]
        a, b = (np.concatenate(list(master.iter_source_frames(p.master, 16, dtype="uint8", as_torch=False)))
                for p in paths)
        np.testing.assert_array_equal(a, b, err_msg=f"scene {scene} differs between the runs")
        record = ledger.read_scene(together.run, scene)
        assert record["Success"] is True and record["FrameCount"] == FRAMES and record["Resolution"] == "128x80"
    chained = ledger.read_scene(together.run, "s2")
    assert chained["Telemetry"]["FLF2VSource"] == "previous-scene"  # started on s1's last frame, uploaded to it
    np.testing.assert_array_equal(frames_of(together.final_path), frames_of(alone.final_path))
    post = ledger.read_post(together.run)
    assert os.path.isfile(together.run.metadata_path)  # the coordinator wrote the telemetry from its ledger
    assert {(j["From"], j["To"]): j["Used"] for j in post["Joins"]}[("s1", "s2")] == "continue"
