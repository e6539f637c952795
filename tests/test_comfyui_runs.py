"""A run is a project, in a real ComfyUI: the demo's three scenes as animatics (no model needed) saved
into one run, the film rendered, the story reordered and rendered again into the same run, then one
scene changed and re-queued: it is replaced, its chained successor is reported stale, Story Render
warns (or stops), and regenerate_order lists the successor only.

Runs when ``COMFYUI_PATH`` points at a ComfyUI checkout (see test_comfyui_integration.py, whose
server fixture this reuses); skipped, saying so, otherwise.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import pack_module
from test_comfyui_integration import DEMO_STORY, Server, object_info, server  # noqa: F401 (fixtures)
from workflow_check import WORKFLOW_DIR, to_api_prompt

pytestmark = pytest.mark.integration

ledger = pack_module("nodes.run.ledger")
events = pack_module("nodes.run.events")
freshness = pack_module("nodes.run.freshness")
plan = pack_module("nodes.story.plan")
STORY_ID = "lighthouse"


def _workflow(name: str) -> dict:
    return json.loads((WORKFLOW_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _node(prompt: dict, class_type: str) -> str:
    return next(key for key, value in prompt.items() if value["class_type"] == class_type)


def scene_prompt(object_info: dict, scene_index: int, amount: float = 0.15) -> dict:  # noqa: F811
    """The animatic preview workflow with the run around it: Run, Chain Start (start and end image into
    the Animatic) and Scene Save instead of the preview video."""
    prompt = to_api_prompt(_workflow("story_animatic_preview"), object_info)
    loader, select = _node(prompt, "GemDirectStoryLoader"), _node(prompt, "GemDirectSceneSelect")
    animatic = _node(prompt, "GemDirectAnimatic")
    for key in [k for k, v in prompt.items() if v["class_type"] in ("CreateVideo", "SaveVideo")]:
        del prompt[key]  # the run keeps the scene; no second copy in output/
    prompt[select]["inputs"]["scene_index"] = scene_index
    prompt["100"] = {"class_type": "GemDirectRun", "inputs": {"story": [loader, 0], "scene": [select, 0],
                                                              "mode": "continue", "run_id": ""}}
    prompt["101"] = {"class_type": "GemDirectChainStart", "inputs": {"run": ["100", 0], "scene": [select, 0],
                                                                     "fit": "crop", "chain": "from story",
                                                                     "end_image": "auto"}}
    prompt[animatic]["inputs"].update(keyframe=["101", 0], end_image=["101", 1], scene=[select, 0], amount=amount)
    prompt["102"] = {"class_type": "GemDirectSceneSave", "inputs": {
        "frames": [animatic, 0], "scene": [select, 0], "run": ["100", 0], "color_match": "off",
        "color_match_strength": 1.0, "fit": "crop", "crf": 19}}
    return prompt


def render_prompt(object_info: dict, on_stale: str = "warn") -> dict:  # noqa: F811
    prompt = to_api_prompt(_workflow("story_render"), object_info)
    render = _node(prompt, "GemDirectStoryRender")
    assert prompt[_node(prompt, "GemDirectRun")]["inputs"]["mode"] == "continue"
    # A quick film: the run's scenes joined as they are (interpolation and upscaling are tested elsewhere).
    prompt[render]["inputs"].update(interpolation="off", upscale="off", on_stale=on_stale)
    return prompt


def run_ok(server: Server, prompt: dict) -> dict:  # noqa: F811
    response = server.queue(prompt)
    assert response.status_code == 200, response.text
    entry = server.wait_for(response.json()["prompt_id"], timeout=600)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:4000]
    return entry


def run_error(server: Server, prompt: dict) -> dict:  # noqa: F811
    response = server.queue(prompt)
    assert response.status_code == 200, response.text
    entry = server.wait_for(response.json()["prompt_id"], timeout=600)
    assert entry["status"]["status_str"] == "error"
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert len(errors) == 1
    return errors[0]


def the_run(server: Server) -> ledger.Run:  # noqa: F811
    runs = ledger.list_runs(STORY_ID, root=str(server.base / "output" / "gemdirect"))
    assert len(runs) == 1, [run.run_id for run in runs]
    return runs[0]


def test_a_run_is_a_project_reorder_rerender_and_stale_scenes(server, object_info):  # noqa: F811
    story_path = server.base / "input" / "gemdirect" / DEMO_STORY
    original = json.loads(story_path.read_text(encoding="utf-8"))
    ids = [scene["id"] for scene in original["scenes"]]
    assert ids == ["dawn", "noon", "dusk"]

    for index in (1, 2, 3):
        run_ok(server, scene_prompt(object_info, index))
    run = the_run(server)
    assert ledger.run_status(run).done == tuple(ids)
    run_ok(server, render_prompt(object_info))
    post = ledger.read_post(run)
    assert post["Extra"]["Scenes"] == ids and post["StaleScenes"] == []

    # Reorder the timeline and render again: the same run, the film in the new order.
    reordered = copy.deepcopy(original)
    reordered["scenes"] = [original["scenes"][2], original["scenes"][0], original["scenes"][1]]
    story_path.write_text(json.dumps(reordered, indent=2), encoding="utf-8")
    run_ok(server, render_prompt(object_info))
    assert the_run(server) == run
    post = ledger.read_post(run)
    assert post["Extra"]["Scenes"] == ["dusk", "dawn", "noon"]
    assert ledger.story_info(run).scene_ids == ("dusk", "dawn", "noon")
    assert {stale["SceneId"] for stale in post["StaleScenes"]} == {"dusk", "dawn", "noon"}  # every chain moved

    # Back to the order the scenes were rendered in: all fresh again.
    story_path.write_text(json.dumps(original, indent=2), encoding="utf-8")
    run_ok(server, render_prompt(object_info))
    assert ledger.read_post(run)["StaleScenes"] == []

    # Change scene 2's seed and re-queue it (amount stands in for the new seed's other pixels: an
    # animatic does not sample, so only its inputs can change its frames).
    changed = copy.deepcopy(original)
    changed["scenes"][1]["seed"] = 4242
    story_path.write_text(json.dumps(changed, indent=2), encoding="utf-8")
    plans = plan.load_and_plan(str(story_path)).plan.scenes
    assert freshness.regenerate_order(freshness.scene_states(run, plans)) == ["noon", "dusk"]
    files = {p.name: p.read_bytes() for p in Path(run.scenes_dir).iterdir()}
    run_ok(server, scene_prompt(object_info, 2, amount=0.3))
    assert the_run(server) == run
    record = ledger.read_scene(run, "noon")
    assert record["Seed"] == 4242 and record["AttemptsRun"] == 2
    after = {p.name: p.read_bytes() for p in Path(run.scenes_dir).iterdir()}
    replaced = {name for name in set(files) | set(after) if files.get(name) != after.get(name)}
    assert {"noon.json", "noon.mp4", "noon_last.png"} <= replaced
    assert all(name.startswith(("noon.", "noon_")) for name in replaced), replaced

    states = freshness.scene_states(run, plans)
    assert [(s.scene, s.state) for s in states] == [("dawn", "fresh"), ("noon", "fresh"), ("dusk", "stale")]
    assert states[2].reasons == ["'noon' changed since: its last frame is not the frame this scene started on"]
    assert freshness.regenerate_order(states) == ["dusk"]
    served = server.get("/gemdirect/run", params={"story": STORY_ID, "run": run.run_id, "name": DEMO_STORY})
    assert served.status_code == 200, served.text[:500]
    assert served.json()["regenerate"] == ["dusk"]  # what the panel's Regenerate stale queues

    seen = len(events.read_events(run.run_dir).events)
    run_ok(server, render_prompt(object_info))
    post = ledger.read_post(run)
    assert [stale["SceneId"] for stale in post["StaleScenes"]] == ["dusk"]
    warned = [e for e in events.read_events(run.run_dir).events[seen:]
              if e["event"] == events.WARNING and "is stale" in e["text"]]
    assert [(e["scene"], e["text"].split(":")[0]) for e in warned] == [("dusk", "scene 'dusk' is stale")]
    error = run_error(server, render_prompt(object_info, on_stale="stop"))
    assert error["node_type"] == "GemDirectStoryRender"
    assert "'dusk' (" in error["exception_message"] and "noon'" not in error["exception_message"].split("(")[0]
    assert "set on_stale to warn" in error["exception_message"]

    # Regenerate: re-queue exactly what regenerate_order lists. A saved workflow's old mode 'auto' passes
    # ComfyUI's validation (Run names mode in VALIDATE_INPUTS) and continues the same run.
    prompt = scene_prompt(object_info, 3)
    prompt["100"]["inputs"]["mode"] = "auto"
    run_ok(server, prompt)
    assert the_run(server) == run
    assert freshness.regenerate_order(freshness.scene_states(run, plans)) == []
    joined = [e for e in events.read_events(run.run_dir).of_kind(events.RUN_JOINED) if e.get("mode_alias")]
    assert [(e["scene"], e["how"], e["mode_alias"]) for e in joined] == [("dusk", "continue", "auto")]
