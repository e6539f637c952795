"""A scene's LoRAs: which of them patch this model, and where their files are.

A story.json scene lists ``loras: [{name, strength, expert}]``. ``expert`` (high | low | both) says
which expert of a two-expert model (WAN 2.2 14B: high-noise and low-noise) a LoRA patches. The
Scene LoRAs node is told which model it patches (:data:`MODEL_ROLES`) and picks the LoRAs for it
(:func:`pick_loras`); the files are found in ComfyUI's ``loras`` folder (:func:`lora_file`), a
missing one named with the folders searched and the closest names there. The patching itself is
ComfyUI's (``nodes/comfy.py`` :func:`apply_lora_file`), on clones, so the next scene starts clean.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import comfy

LORA_FOLDER = "loras"
SINGLE, HIGH, LOW = "single model", "high-noise expert", "low-noise expert"
MODEL_ROLES = (SINGLE, HIGH, LOW)
_EXPERT_OF_ROLE = {HIGH: "high", LOW: "low"}


class LoraFileError(FileNotFoundError):
    """A scene names a LoRA file that is not in ComfyUI's loras folder."""


@dataclass(frozen=True)
class PickedLora:
    name: str
    strength: float
    expert: str  # high | low | both, as the story says


@dataclass
class LoraPick:
    """The scene's LoRAs sorted for one model: applied, left for the other expert, and notes to show."""

    apply: list[PickedLora] = field(default_factory=list)
    skipped: list[tuple[PickedLora, str]] = field(default_factory=list)  # (lora, why)
    warnings: list[str] = field(default_factory=list)


def pick_loras(loras: Sequence[Any], role: str, scene_id: str = "") -> LoraPick:
    """Which of a scene's ``loras`` (objects with name, strength, expert) patch the model in ``role``.

    High-noise expert: LoRAs for ``high`` or ``both``; low-noise: ``low`` or ``both``. A single model takes
    every LoRA; one meant for one expert only is applied anyway and warned about (the story was written for
    a two-expert model). Strength 0 is not applied (as ComfyUI's LoraLoader does).
    """
    if role not in MODEL_ROLES:
        raise ValueError(f"model role {role!r} is not one of: {', '.join(MODEL_ROLES)}")
    where = f"scene '{scene_id}': " if scene_id else ""
    pick = LoraPick()
    for lora in loras:
        item = PickedLora(str(lora.name), float(lora.strength), str(getattr(lora, "expert", "both") or "both"))
        wanted = _EXPERT_OF_ROLE.get(role)
        if wanted is not None and item.expert not in (wanted, "both"):
            pick.skipped.append((item, f"for the {item.expert}-noise expert"))
            continue
        if item.strength == 0:
            pick.skipped.append((item, "strength 0"))
            continue
        if wanted is None and item.expert != "both":
            pick.warnings.append(
                f"{where}LoRA '{item.name}' is marked expert '{item.expert}' (two-expert WAN 2.2 14B) but this is a "
                "single model: applied to it; set expert to both, or use two Scene LoRAs nodes on the two experts")
        pick.apply.append(item)
    return pick


def lora_file(name: str) -> str:
    """Absolute path of LoRA ``name`` in ComfyUI's loras folder(s).

    LoraFileError names the folders searched and up to three close matches among the files there.
    """
    try:
        return comfy.model_path(LORA_FOLDER, name)
    except FileNotFoundError:
        pass
    searched = ", ".join(comfy.model_folder_paths(LORA_FOLDER)) or f"models/{LORA_FOLDER}"
    known = comfy.model_files(LORA_FOLDER)
    by_base = {os.path.basename(k).lower(): k for k in known}
    close = difflib.get_close_matches(os.path.basename(name).lower(), list(by_base), n=3, cutoff=0.5)
    hint = (f"; did you mean {', '.join(repr(by_base[c]) for c in close)}?" if close
            else f"; the folder has {len(known)} LoRA file(s)" if known else "; the folder has no LoRA files")
    raise LoraFileError(
        f"LoRA '{name}' not found in {searched}{hint} Put the file there (or fix the name in story.json "
        "loras[].name) and refresh with R")


def describe_pick(scene_id: str, role: str, pick: LoraPick, patched_clip: bool) -> str:
    """The node's report: one line per LoRA, applied or skipped and why, then the warnings."""
    lines = [f"Scene '{scene_id}' ({role}): {len(pick.apply)} LoRA(s) applied"
             + (" to MODEL and CLIP" if patched_clip and pick.apply else " to MODEL" if pick.apply else "")]
    lines += [f"  + {lo.name} x{lo.strength:g} (expert {lo.expert})" for lo in pick.apply]
    lines += [f"  - {lo.name} x{lo.strength:g} not applied: {why}" for lo, why in pick.skipped]
    lines += [f"  WARNING: {text}" for text in pick.warnings]
    return "\n".join(lines)
