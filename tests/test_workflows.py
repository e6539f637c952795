"""Example workflows checked against the node definitions, and the checker shown to catch breakage."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from conftest import DATA, load_pack
from workflow_check import (
    MODEL_FILE_COMBOS,
    NOTE_TYPES,
    REROUTE,
    check_workflow,
    check_workflow_file,
    load_schemas,
    node_types,
    pack_schemas,
    to_api_prompt,
    widgets,
    workflow_files,
)

WORKFLOWS = workflow_files()
# Third-party node definitions read from their packs' repositories (facts: names, inputs, outputs).
THIRD_PARTY_SCHEMAS = DATA / "object_info_fastvideo.json"
PREVIEW = next(p for p in WORKFLOWS if p.stem == "story_scene_preview")


def all_schemas():
    """Core schemas from the data file, third-party packs' from theirs, plus the pack's own (INPUT_TYPES
    installs the demo story)."""
    pack = load_pack()
    return {**load_schemas(), **load_schemas(THIRD_PARTY_SCHEMAS),
            **pack_schemas(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory):
    """The schemas, built once in a standalone ComfyUI layout of their own (read-only for the tests)."""
    home = tmp_path_factory.mktemp("comfy-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEMDIRECT_HOME", str(home))
        return all_schemas()


@pytest.fixture
def preview():
    return json.loads(PREVIEW.read_text(encoding="utf-8"))


def node(workflow, node_id):
    return next(n for n in workflow["nodes"] if n["id"] == node_id)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_matches_the_node_definitions(path, schemas):
    assert check_workflow_file(path, schemas) == []


def test_core_schema_file_holds_exactly_the_core_nodes_the_workflows_use():
    pack_types = set(load_pack().NODE_CLASS_MAPPINGS)
    used = node_types(WORKFLOWS) - pack_types - set(NOTE_TYPES) - {REROUTE} - set(load_schemas(THIRD_PARTY_SCHEMAS))
    assert set(load_schemas(DATA / "object_info_core.json")) == used


def test_every_thumbnail_belongs_to_a_workflow():
    thumbnails = {p.stem for p in PREVIEW.parent.glob("*.jpg")}
    assert thumbnails == {p.stem for p in WORKFLOWS}


def test_story_scene_preview_becomes_the_prompt_the_frontend_queues(preview, schemas):
    prompt = to_api_prompt(preview, schemas)
    assert {key: (value["class_type"], value["inputs"]) for key, value in prompt.items()} == {
        "1": ("GemDirectStoryLoader", {"story": "demo/story.json", "preset": "from story"}),
        "2": ("GemDirectSceneSelect", {"story": ["1", 0], "scene_index": 1}),
        "3": ("PreviewImage", {"images": ["2", 10]}),
    }
    scene_select = node(preview, 2)
    assert scene_select["widgets_values"] == [1, "increment"]


def test_story_scene_preview_runs_through_the_pack_nodes(preview, comfy_home):
    """Execute the converted prompt's pack nodes in order, as ComfyUI would; the preview gets the keyframe."""
    classes = load_pack().NODE_CLASS_MAPPINGS
    prompt = to_api_prompt(preview, all_schemas())
    results: dict[str, tuple] = {}
    for key in ("1", "2"):
        entry = prompt[key]
        inputs = {name: results[value[0]][value[1]] if isinstance(value, list) else value
                  for name, value in entry["inputs"].items()}
        node_class = classes[entry["class_type"]]
        results[key] = getattr(node_class(), node_class.FUNCTION)(**inputs)
    source, slot = prompt["3"]["inputs"]["images"]
    keyframe = results[source][slot]
    scene = results["2"][0]
    assert isinstance(keyframe, torch.Tensor) and keyframe.dtype == torch.float32
    assert tuple(keyframe.shape) == (1, scene.height, scene.width, 3)
    assert scene.index == 1 and 0.0 <= float(keyframe.min()) and float(keyframe.max()) <= 1.0


def test_unlinked_widget_sockets_may_be_left_out_as_older_saves_do(preview, schemas):
    assert any("widget" in i and i["link"] is None for n in preview["nodes"] for i in n.get("inputs", []))
    for each in preview["nodes"]:
        each["inputs"] = [i for i in each.get("inputs", []) if not ("widget" in i and i["link"] is None)]
    assert check_workflow(preview, schemas) == []
    node(preview, 2)["inputs"].append({"name": "scene_index", "type": "FLOAT", "widget": {"name": "scene_index"},
                                       "link": None})
    assert "input 'scene_index' is typed 'FLOAT', the node says 'INT'" in problems_of(preview, schemas)


def test_note_explains_walking_the_story_with_batch_count(preview):
    notes = [n for n in preview["nodes"] if n["type"] in NOTE_TYPES]
    assert len(notes) == 1
    text = notes[0]["widgets_values"][0].lower()
    assert "batch count" in text and "increment" in text and "scene_index" in text


# --------------------------------------------------------------------------- the checker catches breakage


def problems_of(workflow, schemas, **kwargs):
    return "\n".join(check_workflow(workflow, schemas, **kwargs))


def test_checker_reports_an_unknown_node_type(preview, schemas):
    node(preview, 3)["type"] = "PreviewImageTypo"
    assert "node 3 (PreviewImageTypo): unknown node type 'PreviewImageTypo'" in problems_of(preview, schemas)


def test_checker_reports_a_link_between_mismatched_types(preview, schemas):
    # Feed the preview from Scene Select's SCENE output instead of its keyframe, bookkeeping kept right.
    select = node(preview, 2)
    select["outputs"][10]["links"], select["outputs"][0]["links"] = None, [2]
    preview["links"][1] = [2, 2, 0, 3, 0, "SCENE"]
    found = check_workflow(preview, schemas)
    assert found == ["link 2 (2:0 -> 3:0): node 2 (GemDirectSceneSelect) gives SCENE but node 3 (PreviewImage) "
                     "input 'images' takes IMAGE"]


def test_checker_reports_a_link_typed_unlike_its_output(preview, schemas):
    preview["links"][0][5] = "IMAGE"
    assert "link 1 (1:0 -> 2:0): link typed 'IMAGE' but the output is 'STORY'" in problems_of(preview, schemas)


def test_checker_reports_links_the_nodes_do_not_know(preview, schemas):
    node(preview, 3)["inputs"][0]["link"] = None
    found = problems_of(preview, schemas)
    assert "node 3 (PreviewImage) input 0 does not hold this link" in found
    assert "node 3 (PreviewImage): required input 'images' is not connected" in found


@pytest.mark.parametrize(("value", "message"), [
    (0, "widget 'scene_index' = 0 is below min 1"),
    (10000, "widget 'scene_index' = 10000 is above max 9999"),
    ("2", "widget 'scene_index' = '2' is not an integer"),
    (1.5, "widget 'scene_index' = 1.5 is not an integer"),
])
def test_checker_reports_bad_int_widgets(preview, schemas, value, message):
    node(preview, 2)["widgets_values"][0] = value
    assert f"node 2 (GemDirectSceneSelect): {message}" in problems_of(preview, schemas)


def test_checker_reports_a_combo_value_not_in_the_options(preview, schemas):
    node(preview, 1)["widgets_values"][1] = "ultra"
    assert "widget 'preset' = 'ultra' is not one of the options ['from story', 'none'" in problems_of(preview, schemas)


def test_checker_reports_a_story_that_is_not_installed(preview, schemas):
    node(preview, 1)["widgets_values"][0] = "missing/story.json"
    assert "widget 'story' = 'missing/story.json' is not one of the options" in problems_of(preview, schemas)


def test_checker_counts_the_control_value_after_scene_index(preview, schemas):
    node(preview, 2)["widgets_values"] = [1]
    assert ("node 2 (GemDirectSceneSelect): widgets_values has 1 value(s) but the node has 2 "
            "(scene_index + control_after_generate)") in problems_of(preview, schemas)
    node(preview, 2)["widgets_values"] = [1, "sometimes"]
    assert "'scene_index' control value 'sometimes' is not one of fixed, increment" in problems_of(preview, schemas)


def test_checker_reports_a_missing_thumbnail(tmp_path, schemas):
    shutil.copy(PREVIEW, tmp_path / PREVIEW.name)
    assert check_workflow_file(tmp_path / PREVIEW.name, schemas) == [
        "story_scene_preview.json: missing thumbnail story_scene_preview.jpg (a same-name .jpg beside the workflow)"
    ]
    (tmp_path / "story_scene_preview.jpg").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert check_workflow_file(tmp_path / PREVIEW.name, schemas) == [
        "story_scene_preview.json: thumbnail story_scene_preview.jpg is not a JPEG"
    ]


def test_checker_reports_a_workflow_without_output_and_an_api_prompt(preview, schemas):
    preview["nodes"] = [n for n in preview["nodes"] if n["id"] != 3]
    node(preview, 2)["outputs"][10]["links"] = None
    preview["links"] = preview["links"][:1]
    assert check_workflow(preview, schemas) == [
        "no output node runs (e.g. a Preview or Save node): ComfyUI would refuse the prompt"
    ]
    api = to_api_prompt(json.loads(PREVIEW.read_text(encoding="utf-8")), schemas)
    assert check_workflow(api, schemas) == [
        "not a UI-format workflow: needs 'nodes' and 'links' lists (an API-format prompt is not one)"
    ]


def test_checker_reports_output_slots_unlike_the_node(preview, schemas):
    node(preview, 1)["outputs"][1]["type"] = "FLOAT"
    node(preview, 2)["outputs"].pop()
    found = problems_of(preview, schemas)
    assert "node 1 (GemDirectStoryLoader): output 1 'scene_count' is typed 'FLOAT', the node says 'INT'" in found
    assert "node 2 (GemDirectSceneSelect): 11 output slot(s) but the node has 12" in found


def test_reroute_is_followed_to_the_real_origin(preview, schemas):
    """A Reroute between Scene Select and the preview: types checked end to end, prompt skips it."""
    preview["nodes"].append({"id": 5, "type": REROUTE, "mode": 0, "inputs": [{"name": "", "type": "*", "link": 2}],
                             "outputs": [{"name": "", "type": "IMAGE", "links": [3]}], "properties": {}})
    node(preview, 3)["inputs"][0]["link"] = 3
    preview["links"] = [preview["links"][0], [2, 2, 10, 5, 0, "IMAGE"], [3, 5, 0, 3, 0, "IMAGE"]]
    preview["last_node_id"], preview["last_link_id"] = 5, 3
    assert check_workflow(preview, schemas) == []
    assert to_api_prompt(preview, schemas)["3"]["inputs"] == {"images": ["2", 10]}
    rerouted = copy.deepcopy(preview)
    preview["links"][1] = [2, 2, 9, 5, 0, "FLOAT"]  # fps through the reroute into images
    node(preview, 2)["outputs"][9]["links"], node(preview, 2)["outputs"][10]["links"] = [2], None
    assert "node 2 (GemDirectSceneSelect) gives FLOAT but node 3 (PreviewImage) input 'images' takes IMAGE" \
        in problems_of(preview, schemas)
    assert check_workflow(rerouted, schemas) == []


# --------------------------------------------------------------------------- seeds and model files

LOADER_AND_SAMPLER = {
    "UnetLoaderGGUF": {"input": {"required": {"unet_name": [[]]}}, "input_order": {"required": ["unet_name"]},
                       "output": ["MODEL"], "output_node": False},
    "SeededSink": {"input": {"required": {"model": ["MODEL"], "seed": ["INT", {"min": 0, "max": 2**32}],
                                          "label": ["STRING", {"forceInput": True}]},
                             "optional": {"strength": ["FLOAT", {"min": 0.0, "max": 1.0}]}},
                   "input_order": {"required": ["model", "seed", "label"], "optional": ["strength"]},
                   "output": [], "output_node": True},
}


def loader_workflow(model_file, sink_values):
    return {
        "last_node_id": 2, "last_link_id": 1, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "UnetLoaderGGUF", "mode": 0, "inputs": [],
             "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}], "widgets_values": [model_file]},
            {"id": 2, "type": "SeededSink", "mode": 0,
             "inputs": [{"name": "model", "type": "MODEL", "link": 1},
                        {"name": "label", "type": "STRING", "link": None}],
             "outputs": [], "widgets_values": sink_values},
        ],
        "links": [[1, 1, 0, 2, 0, "MODEL"]],
    }


def test_a_seed_named_int_carries_a_control_value_even_without_the_flag():
    assert [(w.name, w.extras) for w in widgets(LOADER_AND_SAMPLER["SeededSink"])] == [
        ("seed", ("control_after_generate",)), ("strength", ())]
    assert problems_of(loader_workflow("wan2.2_i2v_high_noise_14B_Q4_K_M.gguf", [7, "fixed", 0.5]),
                       LOADER_AND_SAMPLER) == "node 2 (SeededSink): required input 'label' is not connected"
    assert "has 2 value(s) but the node has 3" in problems_of(loader_workflow("w.gguf", [7, 0.5]), LOADER_AND_SAMPLER)
    assert "widget 'strength' = 1.5 is above max 1.0" in problems_of(
        loader_workflow("w.gguf", [7, "fixed", 1.5]), LOADER_AND_SAMPLER)


def test_model_file_combos_of_core_loaders_are_exempt_but_must_name_a_model():
    assert "UnetLoaderGGUF" in MODEL_FILE_COMBOS
    found = problems_of(loader_workflow("wan.gguf", [7, "fixed", 0.5]), LOADER_AND_SAMPLER)
    assert "unet_name" not in found
    assert "widget 'unet_name' = 'notes.txt' does not name a model file" in problems_of(
        loader_workflow("notes.txt", [7, "fixed", 0.5]), LOADER_AND_SAMPLER)
    # Without the exemption the empty file list rejects any value.
    assert "widget 'unet_name' = 'wan.gguf' is not one of the options []" in problems_of(
        loader_workflow("wan.gguf", [7, "fixed", 0.5]), LOADER_AND_SAMPLER, exempt={})


POST_LOADERS = {"rife_model": ("GemDirectRIFELoader", "none (optical flow)"),
                "upscale_model": ("GemDirectUpscaleModelLoader", "none (Lanczos)")}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_story_render_has_both_post_loaders_wired_with_none_first(path, schemas):
    # Every workflow in example_workflows/ (also those added later) that renders shows its post-stage
    # choices in the graph: a RIFE Loader and an Upscale Model Loader wired into Story Render, shipped
    # on their explicit "none" choice so the workflow loads without the files. tests/wire_post_loaders.py
    # adds them to a workflow that lacks them.
    workflow = json.loads(path.read_text(encoding="utf-8"))
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = {link[0]: link for link in workflow["links"]}
    renders = [node for node in workflow["nodes"] if node.get("type") == "GemDirectStoryRender"]
    for render in renders:
        for slot_name, (loader_type, first) in POST_LOADERS.items():
            slot = next(s for s in render["inputs"] if s["name"] == slot_name)
            assert slot.get("link") is not None, f"{path.name}: Story Render {render['id']} has no {slot_name} " \
                f"loader; run python tests/wire_post_loaders.py {path}"
            source = nodes[links[slot["link"]][1]]
            assert source["type"] == loader_type, f"{path.name}: {slot_name} comes from {source['type']}"
            listed = schemas[loader_type]["input"]["required"]["model_name"][0]
            assert listed[0] == first and source["widgets_values"][0] == first, (path.name, source["widgets_values"])


def test_the_wiring_script_adds_the_loaders_once(tmp_path):
    import wire_post_loaders

    render = json.loads((WORKFLOWS[0].parent / "story_render.json").read_text(encoding="utf-8"))
    for node in render["nodes"]:  # a workflow as shipped before: no loaders, no scale/ensemble values
        if node["type"] == "GemDirectStoryRender":
            node["widgets_values"] = node["widgets_values"][:wire_post_loaders.RENDER_WIDGETS_BEFORE]
            for slot in node["inputs"]:
                if slot["name"] in POST_LOADERS:
                    slot["link"] = None
    render["nodes"] = [n for n in render["nodes"] if n["type"] not in {t for t, _ in POST_LOADERS.values()}]
    assert wire_post_loaders.wire(render)
    assert not wire_post_loaders.wire(render)  # idempotent
    types = [n["type"] for n in render["nodes"]]
    assert types.count("GemDirectRIFELoader") == 1 and types.count("GemDirectUpscaleModelLoader") == 1
    story_render = next(n for n in render["nodes"] if n["type"] == "GemDirectStoryRender")
    assert story_render["widgets_values"][-2:] == ["1.0", False]
