"""Check ComfyUI UI-format workflows (``example_workflows/*.json``) against node schemas.

A node schema is what ComfyUI's ``GET /object_info`` reports for one node type (``input``,
``input_order``, ``output``, ``output_name``, ``output_node``). Core nodes come from
``tests/data/object_info_core.json`` (entries copied from a real ComfyUI), the pack's own nodes from
their ``INPUT_TYPES``/``RETURN_TYPES`` (:func:`pack_schemas`), and the integration test uses a live
server's ``/object_info``.

The workflow layout is the one the ComfyUI frontend (1.27.x) saves:

- ``nodes[]``: ``id``, ``type``, ``mode`` (0 run, 2 muted, 4 bypassed), ``inputs[]`` (every socket
  input, then the widget inputs marked ``widget: {name}``; some saves, e.g. older frontends', list only the
  linked widget inputs), ``outputs[]``
  (``links`` = link ids), ``widgets_values`` (one value per widget input in schema order, linked or
  not, plus the control value after an INT with ``control_after_generate``, or named ``seed`` /
  ``noise_seed`` when the flag is absent, plus the upload widget's value on file-upload inputs).
- ``links[]``: ``[id, from_node, from_slot, to_node, to_slot, type]``; ``from_slot`` indexes the
  source's ``outputs[]`` and ``to_slot`` the target's ``inputs[]``.

Run as a script to rebuild the core schema file from a full ``object_info.json``::

    python tests/workflow_check.py refresh-core ../shared/comfyui/object_info.json
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent
WORKFLOW_DIR = REPO_ROOT / "example_workflows"
CORE_SCHEMAS = TESTS / "data" / "object_info_core.json"

CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
# The frontend gives these INT inputs a control widget even without control_after_generate.
SEED_NAMES = ("seed", "noise_seed")
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# Extra widgets the frontend adds after a file input with an upload button (values it saves there).
UPLOAD_WIDGETS = {"image_upload": 1, "video_upload": 1, "audio_upload": 2}
# Frontend-only node types: never in /object_info, never sent to the server.
NOTE_TYPES = ("Note", "MarkdownNote")
REROUTE = "Reroute"
MAX_THUMBNAIL_BYTES = 100_000  # the template browser loads every thumbnail at once

# Core loaders whose COMBO lists model files the user must download: the value is the file the
# workflow expects (not in any test's model folder), so it is only checked to look like a model file.
MODEL_FILE_COMBOS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "ImageOnlyCheckpointLoader": ("ckpt_name",),
    "UNETLoader": ("unet_name",),
    "UnetLoaderGGUF": ("unet_name",),
    "CLIPLoader": ("clip_name",),
    "CLIPLoaderGGUF": ("clip_name",),
    "DualCLIPLoader": ("clip_name1", "clip_name2"),
    "CLIPVisionLoader": ("clip_name",),
    "VAELoader": ("vae_name",),
    "LoraLoader": ("lora_name",),
    "LoraLoaderModelOnly": ("lora_name",),
    "GemDirectSVILoRALoader": ("lora_name",),  # models/loras/svi/
    "UpscaleModelLoader": ("model_name",),
}
MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf", ".pth", ".pt", ".ckpt", ".bin", ".pkl")


# --------------------------------------------------------------------------- schemas


def schema_from_class(node_class: type, display_name: str | None = None) -> dict[str, Any]:
    """The /object_info entry ComfyUI builds for a V1 node class (the fields the checker reads)."""
    inputs = node_class.INPUT_TYPES()
    return {
        "input": inputs,
        "input_order": {category: list(specs) for category, specs in inputs.items()},
        "output": list(node_class.RETURN_TYPES),
        "output_name": list(getattr(node_class, "RETURN_NAMES", None) or node_class.RETURN_TYPES),
        "output_node": bool(getattr(node_class, "OUTPUT_NODE", False)),
        "display_name": display_name or node_class.__name__,
        "category": getattr(node_class, "CATEGORY", ""),
    }


def pack_schemas(class_mappings: Mapping[str, type], display_names: Mapping[str, str] | None = None) -> dict:
    """Schemas of every node in a pack's NODE_CLASS_MAPPINGS."""
    names = display_names or {}
    return {node_id: schema_from_class(cls, names.get(node_id)) for node_id, cls in class_mappings.items()}


def load_schemas(path: Path = CORE_SCHEMAS) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def input_spec(schema: Mapping, name: str) -> tuple[Any, dict, str] | None:
    """(type, options, category) of input ``name``, or None if the node has no such input."""
    for category in ("required", "optional", "hidden"):
        spec = schema.get("input", {}).get(category, {}).get(name)
        if spec is not None:
            if isinstance(spec, str):  # hidden inputs are bare strings in /object_info
                return spec, {}, category
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            return spec[0], options, category
    return None


def input_names(schema: Mapping) -> list[str]:
    """Required then optional inputs in the order the node declares them."""
    order = schema.get("input_order") or {c: list(schema.get("input", {}).get(c, {})) for c in ("required", "optional")}
    return [name for category in ("required", "optional") for name in order.get(category, [])]


@dataclass(frozen=True)
class Widget:
    """One widget input and the values it owns in ``widgets_values``."""

    name: str
    kind: str  # INT, FLOAT, STRING, BOOLEAN or COMBO
    options: dict
    choices: tuple | None = None  # COMBO only
    extras: tuple[str, ...] = field(default=())  # names of the values saved after it

    @property
    def width(self) -> int:
        return 1 + len(self.extras)


def widget_of(name: str, input_type: Any, options: dict) -> Widget | None:
    """The widget the frontend makes for an input, or None for a plain socket."""
    if isinstance(input_type, (list, tuple)):
        kind, choices = "COMBO", tuple(input_type)
    elif input_type == "COMBO":
        kind, choices = "COMBO", tuple(options.get("options", ()))
    elif input_type in WIDGET_TYPES and not options.get("forceInput"):
        kind, choices = input_type, None
    else:
        return None
    extras: list[str] = []
    if kind == "INT" and options.get("control_after_generate", name in SEED_NAMES):
        extras.append("control_after_generate")
    elif kind == "COMBO" and options.get("control_after_generate"):
        extras.append("control_after_generate (COMBO: not supported by this checker)")
    for flag, count in UPLOAD_WIDGETS.items():
        if options.get(flag):
            extras += ["upload"] * count
    return Widget(name, kind, options, choices, tuple(extras))


def widgets(schema: Mapping) -> list[Widget]:
    """The node's widgets in ``widgets_values`` order."""
    found = []
    for name in input_names(schema):
        input_type, options, _ = input_spec(schema, name)
        widget = widget_of(name, input_type, options)
        if widget is not None:
            found.append(widget)
    return found


def types_match(output_type: Any, input_type: Any) -> bool:
    """Whether a link from an output of ``output_type`` may feed an input of ``input_type``.

    ``*`` matches anything; COMBO inputs (a list of choices, or "COMBO") take a COMBO output;
    comma-separated unions match when they share a type (as ComfyUI's validation does).
    """
    if output_type == "*" or input_type == "*":
        return True
    if isinstance(input_type, (list, tuple)) or input_type == "COMBO":
        return output_type == "COMBO" or isinstance(output_type, (list, tuple))
    if not isinstance(output_type, str) or not isinstance(input_type, str):
        return False
    return bool({t.strip() for t in output_type.split(",")} & {t.strip() for t in input_type.split(",")})


def slot_type(input_type: Any) -> str:
    """How the frontend names an input's type on its socket (COMBO for a list of choices)."""
    return "COMBO" if isinstance(input_type, (list, tuple)) else str(input_type)


# --------------------------------------------------------------------------- checks


def _check_value(widget: Widget, value: Any, node_type: str, exempt: Mapping[str, Iterable[str]]) -> str | None:
    """What is wrong with ``value`` for ``widget``, or None."""
    opts = widget.options
    if widget.kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"= {value!r} is not an integer"
    elif widget.kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"= {value!r} is not a number"
    elif widget.kind == "STRING":
        return None if isinstance(value, str) else f"= {value!r} is not a string"
    elif widget.kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"= {value!r} is not true/false"
    elif widget.kind == "COMBO":
        if widget.name in tuple(exempt.get(node_type, ())):
            if isinstance(value, str) and value.lower().endswith(MODEL_EXTENSIONS):
                return None
            return f"= {value!r} does not name a model file ({', '.join(MODEL_EXTENSIONS)})"
        if value in widget.choices:
            return None
        shown = ", ".join(repr(c) for c in widget.choices[:8]) + (" ..." if len(widget.choices) > 8 else "")
        return f"= {value!r} is not one of the options [{shown}]"
    if "min" in opts and value < opts["min"]:
        return f"= {value!r} is below min {opts['min']}"
    if "max" in opts and value > opts["max"]:
        return f"= {value!r} is above max {opts['max']}"
    return None


def _check_widgets(node: Mapping, schema: Mapping, where: str, exempt: Mapping) -> list[str]:
    expected = widgets(schema)
    values = node.get("widgets_values")
    if values is None:
        values = []
    if not isinstance(values, list):
        return [f"{where}: widgets_values must be a list, got {type(values).__name__}"]
    width = sum(w.width for w in expected)
    if len(values) != width:
        layout = ", ".join(w.name + "".join(f" + {e}" for e in w.extras) for w in expected) or "none"
        return [f"{where}: widgets_values has {len(values)} value(s) but the node has {width} ({layout})"]
    linked = {i.get("widget", {}).get("name") for i in node.get("inputs") or [] if i.get("link") is not None}
    problems = []
    position = 0
    for widget in expected:
        value = values[position]
        if widget.name not in linked:  # a linked widget's stored value is not used
            wrong = _check_value(widget, value, node["type"], exempt)
            if wrong:
                problems.append(f"{where}: widget '{widget.name}' {wrong}")
        for offset, extra in enumerate(widget.extras, start=1):
            extra_value = values[position + offset]
            if extra.startswith("control_after_generate") and extra_value not in CONTROL_VALUES:
                problems.append(f"{where}: '{widget.name}' control value {extra_value!r} is not one of "
                                f"{', '.join(CONTROL_VALUES)}")
            if "not supported" in extra:
                problems.append(f"{where}: '{widget.name}' has a {extra}")
        position += widget.width
    return problems


def _check_sockets(node: Mapping, schema: Mapping, where: str) -> list[str]:
    problems = []
    for slot in node.get("inputs") or []:
        name = slot.get("name")
        spec = input_spec(schema, name)
        if spec is None or spec[2] == "hidden":
            problems.append(f"{where}: input '{name}' is not an input of the node")
            continue
        input_type, options, _ = spec
        if slot.get("type") != slot_type(input_type):
            problems.append(f"{where}: input '{name}' is typed {slot.get('type')!r}, the node says "
                            f"{slot_type(input_type)!r}")
        if "widget" in slot and widget_of(name, input_type, options) is None:
            problems.append(f"{where}: input '{name}' is marked as a widget but is a socket")
    present = {slot.get("name"): slot for slot in node.get("inputs") or []}
    for name in schema.get("input_order", {}).get("required", list(schema.get("input", {}).get("required", {}))):
        input_type, options, _ = input_spec(schema, name)
        if widget_of(name, input_type, options) is not None:
            continue
        if name not in present:
            problems.append(f"{where}: required input '{name}' has no socket in the workflow")
        elif present[name].get("link") is None and node.get("mode", 0) == 0:
            problems.append(f"{where}: required input '{name}' is not connected")
    outputs = node.get("outputs") or []
    declared = schema.get("output", [])
    if len(outputs) != len(declared):
        problems.append(f"{where}: {len(outputs)} output slot(s) but the node has {len(declared)}")
    for index, (slot, output_type) in enumerate(zip(outputs, declared, strict=False)):
        if slot.get("type") != slot_type(output_type):
            problems.append(f"{where}: output {index} '{slot.get('name')}' is typed {slot.get('type')!r}, "
                            f"the node says {slot_type(output_type)!r}")
    return problems


def _node_label(node: Mapping) -> str:
    return f"node {node.get('id')} ({node.get('type')})"


def _origin(link_id: int, links: Mapping[int, list], nodes: Mapping[int, Mapping]) -> tuple[int, int] | None:
    """(node id, output slot) that really feeds ``link_id``, walking back through Reroutes (the pack's rule)."""
    return _pack_workflow()._origin(link_id, links, nodes)


def _pack_workflow():
    """The pack's UI -> API converter (nodes/farm/workflow.py: what the farm sends workers)."""
    from conftest import pack_module  # tests/ is on sys.path (pytest, or run as a script)

    return pack_module("nodes.farm.workflow")


def check_workflow(workflow: Any, schemas: Mapping[str, Mapping],
                   exempt: Mapping[str, Iterable[str]] = MODEL_FILE_COMBOS) -> list[str]:
    """Every problem of a UI-format workflow against ``schemas`` (an empty list: the workflow is sound)."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list) \
            or not isinstance(workflow.get("links"), list):
        return ["not a UI-format workflow: needs 'nodes' and 'links' lists (an API-format prompt is not one)"]
    problems: list[str] = []
    if (workflow.get("definitions") or {}).get("subgraphs"):
        problems.append("subgraphs are not supported by this checker: keep example workflows flat")
    nodes: dict[int, Mapping] = {}
    for node in workflow["nodes"]:
        if node.get("id") in nodes:
            problems.append(f"{_node_label(node)}: duplicate node id")
        nodes[node.get("id")] = node
    links: dict[int, list] = {}
    for link in workflow["links"]:
        if not isinstance(link, list) or len(link) != 6:
            problems.append(f"link {link!r}: must be [id, from_node, from_slot, to_node, to_slot, type]")
            continue
        if link[0] in links:
            problems.append(f"link {link[0]}: duplicate link id")
        links[link[0]] = link
    if nodes and workflow.get("last_node_id", 0) < max(i for i in nodes if isinstance(i, int)):
        problems.append(f"last_node_id {workflow.get('last_node_id')} is below the highest node id")
    if links and workflow.get("last_link_id", 0) < max(links):
        problems.append(f"last_link_id {workflow.get('last_link_id')} is below the highest link id")

    has_output = False
    for node in nodes.values():
        where, node_type = _node_label(node), node.get("type")
        if node.get("mode", 0) not in (0, 2, 4):
            problems.append(f"{where}: mode {node.get('mode')} is not 0 (run), 2 (muted) or 4 (bypassed)")
        if node_type in NOTE_TYPES:
            values = node.get("widgets_values") or []
            if len(values) != 1 or not isinstance(values[0], str):
                problems.append(f"{where}: a note holds exactly one text in widgets_values")
            continue
        if node_type == REROUTE:
            continue
        schema = schemas.get(node_type)
        if schema is None:
            problems.append(f"{where}: unknown node type '{node_type}' (not in the pack and not in "
                            f"{CORE_SCHEMAS.relative_to(REPO_ROOT)}: copy its entry from a real ComfyUI's "
                            "/object_info)")
            continue
        has_output = has_output or (bool(schema.get("output_node")) and node.get("mode", 0) == 0)
        problems += _check_sockets(node, schema, where)
        problems += _check_widgets(node, schema, where, exempt)
    if nodes and not has_output:
        problems.append("no output node runs (e.g. a Preview or Save node): ComfyUI would refuse the prompt")

    for link_id, (_, source_id, from_slot, target_id, to_slot, link_type) in links.items():
        where = f"link {link_id} ({source_id}:{from_slot} -> {target_id}:{to_slot})"
        source, target = nodes.get(source_id), nodes.get(target_id)
        if source is None or target is None:
            problems.append(f"{where}: joins a node that is not in the workflow")
            continue
        outputs, inputs = source.get("outputs") or [], target.get("inputs") or []
        if not 0 <= from_slot < len(outputs) or link_id not in (outputs[from_slot].get("links") or []):
            problems.append(f"{where}: {_node_label(source)} output {from_slot} does not list this link")
            continue
        if not 0 <= to_slot < len(inputs) or inputs[to_slot].get("link") != link_id:
            problems.append(f"{where}: {_node_label(target)} input {to_slot} does not hold this link")
            continue
        if link_type != outputs[from_slot].get("type"):
            problems.append(f"{where}: link typed {link_type!r} but the output is {outputs[from_slot].get('type')!r}")
        if target.get("type") == REROUTE:
            continue  # checked at the real target, from the real origin
        origin = _origin(link_id, links, nodes)
        target_schema = schemas.get(target.get("type"))
        if origin is None or target_schema is None:
            continue
        origin_node = nodes[origin[0]]
        origin_schema = schemas.get(origin_node.get("type"))
        if origin_schema is None or not 0 <= origin[1] < len(origin_schema.get("output", [])):
            continue
        output_type = origin_schema["output"][origin[1]]
        spec = input_spec(target_schema, inputs[to_slot].get("name"))
        if spec is not None and not types_match(output_type, spec[0]):
            problems.append(f"{where}: {_node_label(origin_node)} gives {slot_type(output_type)} but "
                            f"{_node_label(target)} input '{inputs[to_slot].get('name')}' takes "
                            f"{slot_type(spec[0])}")
    return problems


def thumbnail_problems(path: Path) -> list[str]:
    """The same-name .jpg thumbnail the template browser shows: present, a JPEG, small."""
    thumbnail = Path(path).with_suffix(".jpg")
    if not thumbnail.is_file():
        return [f"missing thumbnail {thumbnail.name} (a same-name .jpg beside the workflow)"]
    data = thumbnail.read_bytes()
    if not data.startswith(b"\xff\xd8\xff"):
        return [f"thumbnail {thumbnail.name} is not a JPEG"]
    if len(data) > MAX_THUMBNAIL_BYTES:
        return [f"thumbnail {thumbnail.name} is {len(data) // 1000} KB; keep it under {MAX_THUMBNAIL_BYTES // 1000} KB"]
    return []


def check_workflow_file(path: Path, schemas: Mapping[str, Mapping],
                        exempt: Mapping[str, Iterable[str]] = MODEL_FILE_COMBOS) -> list[str]:
    """Problems of one workflow file, including its thumbnail, each prefixed with the file name."""
    path = Path(path)
    try:
        workflow = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems = [f"cannot be read as JSON: {exc}"]
    else:
        problems = check_workflow(workflow, schemas, exempt)
    problems += thumbnail_problems(path)
    return [f"{path.name}: {problem}" for problem in problems]


# --------------------------------------------------------------------------- conversion


def to_api_prompt(workflow: Mapping, schemas: Mapping[str, Mapping]) -> dict[str, dict]:
    """The API-format prompt the frontend would queue for ``workflow`` (notes and muted nodes left out), made by
    the pack's own converter, so the suite's check against the real frontend's ``graphToPrompt``
    (tests/test_comfyui_workflows.py) covers the code the farm ships. Bypassed nodes: ValueError."""
    return _pack_workflow().to_api_prompt(workflow, schemas)


def workflow_files(folder: Path = WORKFLOW_DIR) -> list[Path]:
    return sorted(Path(folder).glob("*.json"))


def node_types(paths: Iterable[Path]) -> set[str]:
    """Every node type the workflows at ``paths`` use."""
    found = set()
    for path in paths:
        workflow = json.loads(Path(path).read_text(encoding="utf-8"))
        found |= {node["type"] for node in workflow.get("nodes", [])}
    return found


def refresh_core_schemas(object_info: Path, pack_node_types: Iterable[str], out: Path = CORE_SCHEMAS) -> list[str]:
    """Write ``out`` with the entries of ``object_info`` that the example workflows use; return their names."""
    full = load_schemas(object_info)
    wanted = node_types(workflow_files()) - set(pack_node_types) - set(NOTE_TYPES) - {REROUTE}
    missing = sorted(wanted - set(full))
    if missing:
        raise SystemExit(f"not in {object_info}: {', '.join(missing)} (take them from a newer ComfyUI)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({name: full[name] for name in sorted(wanted)}, indent=1, sort_keys=True) + "\n",
                   encoding="utf-8")
    return sorted(wanted)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "refresh-core":
        print(__doc__)
        return 2
    from conftest import load_pack  # tests/ is on sys.path when run as a script

    names = refresh_core_schemas(Path(argv[1]), load_pack().NODE_CLASS_MAPPINGS)
    print(f"wrote {CORE_SCHEMAS} with {len(names)} node(s): {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
