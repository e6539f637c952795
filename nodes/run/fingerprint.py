"""A scene's fingerprint: what made it, kept in its record (``Extra.Fingerprint``) to tell when it is stale.

Two parts:

- ``Plan``: what the story plan decides, so it can be computed again from the story as it is now:
  ``Prompt``, ``NegativePrompt``, ``Seed``, ``CFG``, ``Steps``, ``Width``, ``Height``, ``Frames``,
  ``FPS`` (exact), ``Loras`` [{Name, Strength, and Expert unless "both"}], ``KeyframeSha256``
  (sha256 of the keyframe file's bytes, None without one), ``Chain`` (the story asks this scene
  to start on its predecessor) and ``ControlSha256`` (sha256 of the control zip, None without one;
  records from before it existed are not compared on it); an SVI
  scene adds ``SVI`` {MotionLatentCount, LoraStrength} (absent when SVI is off, so older records keep
  their PlanSha256).
  ``PlanSha256`` is the sha256 of the canonical JSON of ``Plan``.
- ``Render``: what is only known when the prompt ran: ``Models`` (model files the prompt loaded),
  ``StartSource`` (keyframe | previous-scene | none), ``PreviousScene``, ``StartSha256`` and
  ``EndSha256`` (sha256 hex of the uint8 [H,W,3] bytes of the start and end image used; None
  without an end image), ``StartHashBy`` (``chain-start`` when Chain Start reported the hash, else
  ``scene-save``: hashed from the start file at save time), ``FLF2VEnd`` and ``Fit``.

Everything here takes plain values (a ScenePlan-like object, Chain Start's event as a dict).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from ..paths import file_sha256

# Plan keys and the story.json field each one comes from (for reasons a user can act on).
PLAN_FIELDS = {
    "Prompt": "prompt", "NegativePrompt": "negative", "Seed": "seed", "CFG": "cfg", "Steps": "steps",
    "Width": "width", "Height": "height", "Frames": "length (frames)", "FPS": "fps", "Loras": "loras",
    "KeyframeSha256": "keyframe (file content)", "Chain": "chain", "Motion": "motion",
    "ControlSha256": "control sequence (zip content)", "SVI": "svi",
}
OPTIONAL_KEYS = ("SVI",)  # present only when on: a side without it means off, so it is always compared
SHOWN = ("Seed", "CFG", "Steps", "Width", "Height", "Frames", "FPS", "Chain")  # short values shown old -> new
HASH_BY_CHAIN_START, HASH_BY_SCENE_SAVE = "chain-start", "scene-save"


def frame_file_sha256(path: str, width: int, height: int, fit: str = "crop") -> str:
    """:func:`video.images.pixel_sha256` of a PNG frame as a scene of ``width`` x ``height`` would start from it
    (fitted as Chain Start fits it; a frame of that size is taken bit-exact)."""
    from ..chain.start import fit_pixels
    from ..video.images import load_png, pixel_sha256

    return pixel_sha256(fit_pixels(load_png(path, dtype="uint8", as_torch=False), width, height, fit or "crop"))


def starts_on(record: Mapping[str, Any], last_frame: str, width: int, height: int) -> bool | None:
    """Whether the scene of ``record`` started on the frame ``last_frame`` holds now: its fingerprint's
    ``StartSha256`` against that PNG fitted to ``width`` x ``height`` as Chain Start fitted it. None when
    the record kept no start hash. OSError, ValueError or VideoError when the PNG cannot be read.

    The one comparison behind both the join's chain proof and staleness.
    """
    render = ((record.get("Extra") or {}).get("Fingerprint") or {}).get("Render") or {}
    recorded = render.get("StartSha256")
    if not recorded:
        return None
    return frame_file_sha256(last_frame, width, height, render.get("Fit") or "crop") == recorded


def _fps(value: Any) -> str:
    rate = Fraction(value) if not isinstance(value, Fraction) else value
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def lora_entry(name: Any, strength: Any, expert: Any = "both") -> dict[str, Any]:
    """One ``Loras`` entry: ``{Name, Strength}``, plus ``Expert`` when it is not ``both`` (so records made
    before experts existed keep their fingerprint)."""
    entry: dict[str, Any] = {"Name": str(name), "Strength": float(strength)}
    if expert and expert != "both":
        entry["Expert"] = str(expert)
    return entry


def plan_fingerprint(scene: Any) -> dict[str, Any]:
    """The ``Plan`` part from a SCENE (ScenePlan or any object with its attributes)."""
    keyframe = getattr(scene, "keyframe", None)
    control = getattr(scene, "control", None)
    loras = [lora_entry(getattr(lora, "name", ""), getattr(lora, "strength", 1.0), getattr(lora, "expert", "both"))
             for lora in getattr(scene, "loras", ())]
    plan = {
        "Prompt": str(scene.prompt), "NegativePrompt": str(scene.negative), "Seed": int(scene.seed),
        "CFG": float(scene.cfg), "Steps": int(scene.steps), "Width": int(scene.width), "Height": int(scene.height),
        "Frames": int(scene.length), "FPS": _fps(scene.fps), "Loras": loras,
        "KeyframeSha256": file_sha256(keyframe) if keyframe and os.path.isfile(keyframe) else None,
        "Chain": bool(getattr(scene, "chain", False)),
        "ControlSha256": file_sha256(control.sequence) if control is not None and os.path.isfile(control.sequence)
        else None,
    }
    if getattr(scene, "motion", None) is not None:  # SVD only: WAN plans (and their hashes) stay as they were
        plan["Motion"] = int(scene.motion)
    svi = getattr(scene, "svi", None)
    if svi is not None and getattr(svi, "enabled", False):
        plan["SVI"] = svi.fingerprint()
    return plan


def plan_sha256(plan: Mapping[str, Any]) -> str:
    text = json.dumps(plan, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_fingerprint(run_dir: str, scene: Any, start_event: Mapping[str, Any] | None,
                       models: Sequence[str] = ()) -> dict[str, Any]:
    """The ``Render`` part from Chain Start's ``stage_start`` event (``start_event``, None when it did not run).

    Chain Start's ``start_sha256`` / ``end_sha256`` / ``flf2v_end`` are read when present; without
    ``start_sha256`` the start file the event names is hashed now (as the scene would start from it).
    """
    event = dict(start_event or {})
    start_sha, hashed_by = event.get("start_sha256"), HASH_BY_CHAIN_START
    start_file = event.get("start_file")
    if start_sha is None and start_file:
        path = start_file if os.path.isabs(start_file) else os.path.join(run_dir, start_file)
        hashed_by = HASH_BY_SCENE_SAVE
        if os.path.isfile(path):
            try:
                start_sha = frame_file_sha256(path, int(scene.width), int(scene.height), event.get("fit") or "crop")
            except (OSError, ValueError):
                start_sha = None
    return {
        "Models": list(models), "StartSource": event.get("flf2v_source"), "PreviousScene": event.get("previous_scene"),
        "StartSha256": start_sha, "EndSha256": event.get("end_sha256"),
        "StartHashBy": hashed_by if start_sha is not None else None, "FLF2VEnd": event.get("flf2v_end"),
        "Fit": event.get("fit"),
    }


def scene_fingerprint(run_dir: str, scene: Any, start_event: Mapping[str, Any] | None,
                      models: Sequence[str] = ()) -> dict[str, Any]:
    """``{"Plan", "PlanSha256", "Render"}``: what Scene Save keeps in the record's ``Extra.Fingerprint``."""
    plan = plan_fingerprint(scene)
    return {"Plan": plan, "PlanSha256": plan_sha256(plan),
            "Render": render_fingerprint(run_dir, scene, start_event, models)}


def plan_from_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Plan`` part a record holds; for a record from before fingerprints, what its fields tell
    (no keyframe hash, no chain flag: those are then not compared)."""
    fingerprint = (record.get("Extra") or {}).get("Fingerprint") or {}
    if isinstance(fingerprint.get("Plan"), Mapping):
        return dict(fingerprint["Plan"])
    width, _, height = str(record.get("Resolution", "x")).partition("x")
    plan: dict[str, Any] = {
        "Prompt": record.get("Prompt"), "NegativePrompt": record.get("NegativePrompt"), "Seed": record.get("Seed"),
        "CFG": record.get("CFG"), "Steps": record.get("Steps"), "Frames": record.get("FrameCount"),
        "Loras": [lora_entry(lo.get("Name"), lo.get("Strength", 1.0), lo.get("Expert") or "both")
                  for lo in record.get("Loras") or []],
    }
    if width.isdigit() and height.isdigit():
        plan.update(Width=int(width), Height=int(height))
    if record.get("FPSExact"):
        plan["FPS"] = record["FPSExact"]
    return plan


def plan_changes(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Reasons naming each plan field that differs (only keys both sides have are compared)."""
    reasons = []
    for key, name in PLAN_FIELDS.items():
        if key in OPTIONAL_KEYS and (key in recorded or key in now) and recorded.get(key) != now.get(key):
            if recorded.get(key) and now.get(key):
                reasons.append(f"{name} settings changed")
            else:
                reasons.append(f"{name} changed ({'on' if recorded.get(key) else 'off'} -> "
                               f"{'on' if now.get(key) else 'off'})")
            continue
        if key not in recorded or key not in now or recorded[key] == now[key]:
            continue
        if key == "CFG" and recorded[key] is not None and now[key] is not None \
                and abs(float(recorded[key]) - float(now[key])) < 1e-9:
            continue
        if key in SHOWN:
            reasons.append(f"{name} changed ({recorded[key]} -> {now[key]})")
        else:
            reasons.append(f"{name} changed")
    return reasons
