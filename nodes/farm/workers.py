"""Workers: who takes which stages, and whether a ComfyUI worker can run the farm's workflow at all.

A worker spec is ``URL`` (takes every stage) or ``URL@stage+stage`` (``http://big:8188@scenes+transitions``,
``http://small:8188@post``). Without ``--workers`` the farm runs ``local-1`` .. ``local-N``: slots of
the headless executor in this machine's Ray.

Before dispatch each ComfyUI worker is checked (:func:`check_worker`): it answers, runs this pack at
this version (``/gemdirect/health``), knows every node type of the workflow and lists every model
file the workflow names (``/object_info``). A worker with a problem is reported and left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..chain.save import MODEL_INPUT
from .graph import STAGES

LOCAL = "local"
MODEL_WIDGET = re.compile(MODEL_INPUT.pattern.replace("lora_name", "lora_name|model_name"))


class WorkerSpecError(ValueError):
    """A --workers entry that is not ``URL`` or ``URL@stage+stage``; the message names it and the fix."""


@dataclass(frozen=True)
class WorkerSpec:
    """One worker: ``name`` (its URL, or ``local-N``), ``url`` (None for a local slot), the stages it takes."""

    name: str
    url: str | None
    stages: tuple[str, ...] = STAGES

    def takes(self, stage: str) -> bool:
        return stage in self.stages

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "stages": list(self.stages)}


@dataclass
class WorkerCheck:
    """What :func:`check_worker` found: problems (empty: the worker is usable) and what it reported."""

    worker: WorkerSpec
    problems: list[str] = field(default_factory=list)
    version: str | None = None
    object_info: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_workers(text: str | Sequence[str] | None, local: int = 1) -> list[WorkerSpec]:
    """Worker specs from ``--workers`` (comma-separated ``URL[@stage+stage]``); ``local`` headless slots
    (``local-1`` ...) when none are given."""
    items = [part.strip() for part in (text.split(",") if isinstance(text, str) else text or []) if part.strip()]
    if not items:
        if local < 1:
            raise WorkerSpecError(f"--local {local}: give at least 1 local worker")
        return [WorkerSpec(f"{LOCAL}-{n}", None) for n in range(1, local + 1)]
    specs = []
    for item in items:
        url, _, stages_text = item.partition("@")
        if not re.match(r"^https?://[^/\s]+$", url.rstrip("/")):
            raise WorkerSpecError(f"--workers entry {item!r}: {url!r} is not a ComfyUI address such as "
                                  "http://127.0.0.1:8188 (scheme, host and port, no path)")
        stages = tuple(s for s in stages_text.split("+") if s) if stages_text else STAGES
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise WorkerSpecError(f"--workers entry {item!r}: unknown stage(s) {', '.join(unknown)}; use "
                                  f"{' + '.join(STAGES)} (e.g. {url}@scenes+transitions)")
        specs.append(WorkerSpec(url.rstrip("/"), url.rstrip("/"), stages))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise WorkerSpecError(f"--workers names a worker twice: {', '.join(names)}")
    return specs


def prompt_models(prompt: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(node id, input name, file name)`` of every model file a prompt's widgets name (not the pack loaders'
    explicit no-model choices, ``none (optical flow)`` / ``none (Lanczos)``: no file to look for)."""
    found = []
    for node_id, node in prompt.items():
        for name, value in (node.get("inputs") or {}).items():
            if MODEL_WIDGET.match(name) and isinstance(value, str) and value and not value.startswith("none ("):
                found.append((str(node_id), name, value))
    return found


def _choices(spec: Any) -> list[Any] | None:
    """The values a combo input lists in ``/object_info`` (old ``[[...], {}]`` or new ``["COMBO", {options}]``)."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    if isinstance(spec[0], (list, tuple)):
        return list(spec[0])
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return list(spec[1].get("options") or [])
    return None


def workflow_problems(prompt: Mapping[str, Any], object_info: Mapping[str, Any]) -> list[str]:
    """Node types the worker does not know and model files it does not list, one line each."""
    problems = []
    missing = sorted({node["class_type"] for node in prompt.values() if node["class_type"] not in object_info})
    if missing:
        problems.append(f"node types missing: {', '.join(missing)} (install the custom node packs that have them)")
    for node_id, name, value in prompt_models(prompt):
        node_type = prompt[node_id]["class_type"]
        schema = object_info.get(node_type)
        if schema is None:
            continue
        inputs = schema.get("input") or {}
        spec = (inputs.get("required") or {}).get(name) or (inputs.get("optional") or {}).get(name)
        choices = _choices(spec)
        if choices is not None and value not in choices:
            problems.append(f"model file missing: node {node_id} ({node_type}) {name} = {value!r} is not in the "
                            "worker's models folder (copy it there)")
    return problems


def check_worker(worker: WorkerSpec, prompts: Sequence[Mapping[str, Any]], version: str, client: Any) -> WorkerCheck:
    """Check ``worker`` (through ``client``, a ComfyClient) against the prompts it may get."""
    from .client import PromptFailed, WorkerLost

    check = WorkerCheck(worker)
    try:
        health = client.get_json("/gemdirect/health")
        check.version = (health.get("pack") or {}).get("version")
        check.object_info = client.object_info()
    except (WorkerLost, PromptFailed, ValueError) as exc:
        check.problems.append(f"not usable: {exc} (is ComfyUI running there, with the gemDirect pack?)")
        return check
    if check.version != version:
        check.problems.append(f"runs gemDirect {check.version or 'without a version (older than the farm)'}, "
                              f"this coordinator {version}: install the same version on every worker")
    for prompt in prompts:
        for problem in workflow_problems(prompt, check.object_info):
            if problem not in check.problems:
                check.problems.append(problem)
    return check
