"""Give every shipped workflow's Story Render its post-stage loaders (run from the repository root):

    python tests/wire_post_loaders.py [example_workflows/*.json]

For each ``GemDirectStoryRender`` node whose ``rife_model`` / ``upscale_model`` input is not connected,
it adds a RIFE Loader (gemDirect) set to ``none (optical flow)`` / an Upscale Model Loader (gemDirect)
set to ``none (Lanczos)`` beside it and links them in; it also appends the ``scale`` / ``ensemble``
widget values a Story Render saved before those widgets existed. Idempotent: a second run changes
nothing. tests/test_workflows.py checks the result on every workflow, including ones added later.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STORY_RENDER = "GemDirectStoryRender"
LOADERS = {  # Story Render input -> (loader type, its output type, widget values, title)
    "rife_model": ("GemDirectRIFELoader", "GEMDIRECT_RIFE", ["none (optical flow)", "auto"], "rife_model"),
    "upscale_model": ("GemDirectUpscaleModelLoader", "UPSCALE_MODEL", ["none (Lanczos)"], "upscale_model"),
}
LOADER_OUTPUTS = {
    "GemDirectRIFELoader": [("rife_model", "GEMDIRECT_RIFE"), ("description", "STRING")],
    "GemDirectUpscaleModelLoader": [("upscale_model", "UPSCALE_MODEL"), ("description", "STRING")],
}
LOADER_INPUTS = {
    "GemDirectRIFELoader": [("model_name", "COMBO"), ("dtype", "COMBO")],
    "GemDirectUpscaleModelLoader": [("model_name", "COMBO")],
}
RENDER_WIDGETS_BEFORE = 12  # interpolation .. on_stale: the values a Story Render had before scale/ensemble
NEW_WIDGETS = [("scale", "COMBO", "1.0"), ("ensemble", "BOOLEAN", False)]


def _loader_node(node_id: int, kind: str, values: list, pos: list[float]) -> dict:
    return {
        "id": node_id, "type": kind, "pos": pos, "size": [320, 82 + 24 * len(values)], "flags": {}, "order": 0,
        "mode": 0,
        "inputs": [{"localized_name": name, "name": name, "type": type_, "widget": {"name": name}, "link": None}
                   for name, type_ in LOADER_INPUTS[kind]],
        "outputs": [{"localized_name": name, "name": name, "type": type_, "links": []}
                    for name, type_ in LOADER_OUTPUTS[kind]],
        "properties": {"Node name for S&R": kind, "cnr_id": "gemdirect", "ver": "0.1.0"},
        "widgets_values": list(values),
    }


def wire(workflow: dict) -> bool:
    """Add the loaders and widget values to ``workflow`` (UI format) in place; True when it changed."""
    changed = False
    nodes = workflow["nodes"]
    for render in [n for n in nodes if n.get("type") == STORY_RENDER]:
        values = render.setdefault("widgets_values", [])
        if len(values) == RENDER_WIDGETS_BEFORE:
            values += [default for _, _, default in NEW_WIDGETS]
            names = {i.get("name") for i in render.get("inputs", [])}
            for name, type_, _ in NEW_WIDGETS:
                if name not in names and any("widget" in i for i in render.get("inputs", [])):
                    render["inputs"].append({"localized_name": name, "name": name, "type": type_,
                                             "widget": {"name": name}, "link": None})
            changed = True
        for offset, (slot_name, (kind, out_type, loader_values, _title)) in enumerate(LOADERS.items()):
            slot = next((i for i, s in enumerate(render["inputs"]) if s["name"] == slot_name), None)
            if slot is None or render["inputs"][slot].get("link") is not None:
                continue
            node_id = workflow["last_node_id"] = int(workflow["last_node_id"]) + 1
            link_id = workflow["last_link_id"] = int(workflow["last_link_id"]) + 1
            x, y = render["pos"][0] - 360, render["pos"][1] + render.get("size", [0, 520])[1] + 20 + 130 * offset
            loader = _loader_node(node_id, kind, loader_values, [x, y])
            loader["outputs"][0]["links"] = [link_id]
            nodes.append(loader)
            render["inputs"][slot]["link"] = link_id
            workflow["links"].append([link_id, node_id, 0, render["id"], slot, out_type])
            changed = True
    return changed


def main(paths: list[str]) -> None:
    for path in map(Path, paths or sorted(Path("example_workflows").glob("*.json"))):
        workflow = json.loads(path.read_text(encoding="utf-8"))
        if wire(workflow):
            path.write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")
            print(f"wired {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
