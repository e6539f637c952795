"""A UI-format workflow (what the frontend saves, what example_workflows/ ships) as the API prompt a
worker is sent, the way the frontend's ``graphToPrompt`` makes it: widget values become inputs in the
order the node's ``/object_info`` declares its widgets (a seed's ``control_after_generate`` and an
upload button hold a value of their own), links become ``[node id, slot]`` (through Reroutes),
notes and muted nodes are left out. The suite checks this against the real frontend's conversion
(tests/workflow_check.py uses it, and the integration suite compares that with the frontend's output on
every shipped workflow).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WORKFLOW_DIR = Path(__file__).resolve().parents[2] / "example_workflows"
SEED_NAMES = ("seed", "noise_seed")
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
UPLOAD_WIDGETS = {"image_upload": 1, "video_upload": 1, "audio_upload": 2}
NOTE_TYPES = ("Note", "MarkdownNote")
REROUTE = "Reroute"
MUTED, BYPASSED = 2, 4


class WorkflowError(ValueError):
    """The workflow cannot be sent (unknown file, bypassed node, a node type the worker lacks)."""


def _widget_widths(schema: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(widget name, how many ``widgets_values`` it holds) in the node's widget order."""
    inputs = schema.get("input") or {}
    order = schema.get("input_order") or {c: list(inputs.get(c) or {}) for c in ("required", "optional")}
    found = []
    for category in ("required", "optional"):
        for name in order.get(category) or []:
            spec = (inputs.get(category) or {}).get(name)
            if not isinstance(spec, (list, tuple)) or not spec:
                continue
            kind, options = spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(kind, (list, tuple)) or kind == "COMBO":
                width = 1 + bool(options.get("control_after_generate"))
            elif kind in WIDGET_TYPES and not options.get("forceInput"):
                width = 1 + bool(kind == "INT" and options.get("control_after_generate", name in SEED_NAMES))
            else:
                continue
            width += sum(count for flag, count in UPLOAD_WIDGETS.items() if options.get(flag))
            found.append((name, width))
    return found


def _origin(link_id: int, links: Mapping[int, list], nodes: Mapping[int, Mapping]) -> tuple[int, int] | None:
    seen = set()
    while link_id in links and link_id not in seen:
        seen.add(link_id)
        _, source, slot, *_ = links[link_id]
        node = nodes.get(source)
        if node is None or node.get("type") != REROUTE:
            return source, slot
        inputs = node.get("inputs") or []
        if not inputs or inputs[0].get("link") is None:
            return None
        link_id = inputs[0]["link"]
    return None


def to_api_prompt(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, dict]:
    """The API prompt of a UI-format ``workflow`` for a ComfyUI whose node schemas are ``object_info``."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = {link[0]: link for link in workflow.get("links") or []}
    prompt: dict[str, dict] = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in NOTE_TYPES or kind == REROUTE or node.get("mode", 0) == MUTED:
            continue
        if node.get("mode", 0) == BYPASSED:
            raise WorkflowError(f"node {node['id']} ({kind}) is bypassed; un-bypass or delete it before farming")
        schema = object_info.get(kind)
        if schema is None:
            raise WorkflowError(f"node {node['id']} ({kind}) is not a node type the worker knows; install its pack")
        linked = {i["widget"]["name"] for i in node.get("inputs") or [] if "widget" in i and i.get("link") is not None}
        values = node.get("widgets_values") or []
        inputs: dict[str, Any] = {}
        position = 0
        for name, width in _widget_widths(schema):
            if name not in linked and position < len(values):
                inputs[name] = values[position]
            position += width
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            origin = _origin(slot["link"], links, nodes)
            if origin is not None and nodes[origin[0]].get("mode", 0) != MUTED:
                inputs[slot["name"]] = [str(origin[0]), origin[1]]
        title = node.get("title") or schema.get("display_name") or kind
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs, "_meta": {"title": title}}
    return prompt


def workflow_path(name: str | os.PathLike[str]) -> Path:
    """``name`` as a file: a path, or the name of a shipped example workflow (``story_wan22_14b_flf2v``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = WORKFLOW_DIR / (path.name if path.suffix == ".json" else f"{path.name}.json")
    if shipped.is_file():
        return shipped
    known = ", ".join(p.stem for p in sorted(WORKFLOW_DIR.glob("*.json")))
    raise WorkflowError(f"--workflow {name}: no such file, and not a shipped workflow ({known})")


def load_workflow_prompt(name: str | os.PathLike[str], object_info: Mapping[str, Any]) -> dict[str, dict]:
    """The API prompt of workflow ``name`` (see :func:`workflow_path`); an API-format file is taken as it is."""
    value = json.loads(workflow_path(name).read_text(encoding="utf-8"))
    if "nodes" in value:
        return to_api_prompt(value, object_info)
    if all(isinstance(node, dict) and "class_type" in node for node in value.values()):
        return value
    raise WorkflowError(f"--workflow {name}: neither a UI workflow (nodes, links) nor an API prompt")
