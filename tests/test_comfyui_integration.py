"""The pack inside a real ComfyUI: start-up, /object_info, prompts run, errors reported.

Runs when ``COMFYUI_PATH`` points at a ComfyUI checkout (the folder with ``main.py``); skipped, saying
so, otherwise. ComfyUI is started with ``COMFYUI_PYTHON`` (default: the Python running pytest) on a
free loopback port, ``--cpu``, with a temporary ``--base-directory`` whose ``custom_nodes/gemdirect``
links to this repository, so the checkout itself is never written to. See docs/comfyui-integration.md.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from comfyui_server import PACK_FOLDER, Server, running_comfyui
from conftest import load_pack, pack_module
from workflow_check import WORKFLOW_DIR, check_workflow, pack_schemas, slot_type, to_api_prompt, workflow_files

pytestmark = pytest.mark.integration

DEMO_STORY = "demo/story.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_comfyui(tmp_path_factory.mktemp("comfyui-base")) as running:
        yield running


@pytest.fixture(scope="module")
def object_info(server):
    """The server's /object_info (asking for it also installs the demo story, as the node list does)."""
    response = server.get("/object_info")
    assert response.status_code == 200, response.text[:500]
    return response.json()


@pytest.fixture(scope="module")
def local_schemas(tmp_path_factory):
    """The pack's node schemas as this process builds them (standalone, in a layout of their own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEMDIRECT_HOME", str(tmp_path_factory.mktemp("standalone-home")))
        pack = load_pack()
        schemas = pack_schemas(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)
    return json.loads(json.dumps(schemas, default=str))  # tuples become lists, as in ComfyUI's JSON


def scene_size(server: Server, scene_index: int) -> tuple[int, int]:
    """(width, height) the pack plans for a scene of the demo story installed in the server's input/."""
    plan = pack_module("nodes.story.plan")
    story = plan.load_and_plan(str(server.base / "input" / "gemdirect" / DEMO_STORY), "from story")
    scene = story.plan.scenes[scene_index - 1]
    return scene.width, scene.height


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def preview_size(server: Server, entry: dict, node_id: str) -> tuple[int, int]:
    """Size of the first image a PreviewImage node of a finished prompt produced."""
    images = entry["outputs"][node_id]["images"]
    assert len(images) == 1
    image = images[0]
    response = server.get("/view", params={"filename": image["filename"], "subfolder": image["subfolder"],
                                           "type": image["type"]})
    assert response.status_code == 200
    return png_size(response.content)


def story_prompt(scene_index: int) -> dict:
    return {
        "1": {"class_type": "GemDirectStoryLoader", "inputs": {"story": DEMO_STORY, "preset": "from story"}},
        "2": {"class_type": "GemDirectSceneSelect", "inputs": {"story": ["1", 0], "scene_index": scene_index}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 10]}},
    }


def test_pack_imports_without_errors(server, record_property):
    # Only start-up: later prompts log tracebacks of their own on purpose (a bad scene_index).
    log = server.log.read_text(encoding="utf-8", errors="replace").split("Starting server", 1)[0]
    times = log.split("Import times for custom nodes:", 1)
    assert len(times) == 2, f"no custom-node import times in the log:\n{server.log_tail()}"
    ours = [m for m in re.finditer(r"^\s*([\d.]+) seconds( \(IMPORT FAILED\))?: (.+)$", times[1], re.MULTILINE)
            if Path(m.group(3).strip()).name == PACK_FOLDER]
    assert len(ours) == 1, f"the pack is not in the import times:\n{times[1][:2000]}"
    assert ours[0].group(2) is None, f"ComfyUI failed to import the pack:\n{log}"
    record_property("comfyui_import_seconds", float(ours[0].group(1)))
    print(f"ComfyUI import time of the pack: {ours[0].group(1)} s")  # shown with pytest -rP
    assert "[gemDirect] disabled nodes" not in log, log
    pack_path = str(server.base / "custom_nodes" / PACK_FOLDER)
    assert f'File "{pack_path}' not in log, f"a traceback passes through the pack:\n{log}"


def test_object_info_lists_every_pack_node_as_the_pack_declares_it(object_info, local_schemas):
    served = {name for name, info in object_info.items() if info.get("python_module") == f"custom_nodes.{PACK_FOLDER}"}
    assert served == set(local_schemas), "nodes ComfyUI loaded differ from the pack's NODE_CLASS_MAPPINGS"
    for name, local in local_schemas.items():
        info = object_info[name]
        for field in ("output", "output_name", "output_node", "display_name", "category"):
            assert info[field] == local[field], f"{name}.{field}"
        for category in ("required", "optional"):
            assert info["input_order"].get(category, []) == local["input_order"].get(category, []), name
            for input_name in local["input_order"].get(category, []):
                theirs, mine = info["input"][category][input_name], local["input"][category][input_name]
                assert slot_type(theirs[0]) == slot_type(mine[0]), f"{name}.{input_name}"
                if len(mine) > 1:
                    assert {k: v for k, v in theirs[1].items() if k != "options"} == \
                        {k: v for k, v in mine[1].items() if k != "options"}, f"{name}.{input_name} options"
    assert object_info["GemDirectStoryLoader"]["input"]["required"]["story"][0] == [DEMO_STORY]


def test_story_prompt_previews_the_scene_keyframe_at_its_size(server, object_info):
    response = server.queue(story_prompt(2))
    assert response.status_code == 200, response.text
    entry = server.wait_for(response.json()["prompt_id"])
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)
    assert preview_size(server, entry, "3") == scene_size(server, 2)


def test_example_workflow_matches_the_live_schemas_and_runs(server, object_info):
    workflow = json.loads((WORKFLOW_DIR / "story_scene_preview.json").read_text(encoding="utf-8"))
    assert check_workflow(workflow, object_info) == []
    prompt = to_api_prompt(workflow, object_info)
    response = server.queue(prompt)
    assert response.status_code == 200, response.text
    entry = server.wait_for(response.json()["prompt_id"])
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)
    preview = next(key for key, value in prompt.items() if value["class_type"] == "PreviewImage")
    assert preview_size(server, entry, preview) == scene_size(server, prompt["2"]["inputs"]["scene_index"])


def test_scene_index_past_the_story_fails_naming_scene_index(server, object_info):
    response = server.queue(story_prompt(99))
    assert response.status_code == 200, response.text
    entry = server.wait_for(response.json()["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    errors = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    assert len(errors) == 1 and errors[0]["node_type"] == "GemDirectSceneSelect"
    assert "scene_index 99" in errors[0]["exception_message"]
    assert "use 1 to 3" in errors[0]["exception_message"]


def test_scene_index_below_one_is_refused_at_queue_time(server, object_info):
    response = server.queue(story_prompt(0))
    assert response.status_code == 400
    errors = response.json()["node_errors"]["2"]["errors"]
    assert [(e["type"], e["extra_info"]["input_name"]) for e in errors] == [("value_smaller_than_min", "scene_index")]


def test_example_workflows_are_served_as_templates(server):
    listed = server.get("/workflow_templates").json().get(PACK_FOLDER, [])
    for path in workflow_files():
        assert path.stem in listed
        served = server.get(f"/api/workflow_templates/{PACK_FOLDER}/{path.name}")
        assert served.status_code == 200 and served.json() == json.loads(path.read_text(encoding="utf-8"))
        thumbnail = server.get(f"/api/workflow_templates/{PACK_FOLDER}/{path.stem}.jpg")
        assert thumbnail.status_code == 200 and thumbnail.content == path.with_suffix(".jpg").read_bytes()
