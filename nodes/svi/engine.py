"""SVI continuation of one scene: its anchor, the previous scene's last latents (from the ledger), an optional
end latent, laid out as :mod:`.layout` says; and what was done, for Scene Save's record and the panel.

The node (nodes.py) VAE-encodes the anchor/end images through ``nodes.comfy``; everything else is here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import comfy
from ..run import events, ledger
from . import latents as ledger_latents
from .layout import SVILayout, svi_layout

ANCHOR_REFERENCE = "story reference"
ANCHOR_KEYFRAME = "scene keyframe"
ANCHOR_CHOICES = (ANCHOR_REFERENCE, ANCHOR_KEYFRAME)
FROM_STORY = -1  # motion_latent_count widget: take the scene's svi.motion_latent_count
SVI_EVENT = "svi_continue"
SOURCE_PREVIOUS, SOURCE_INPUT, SOURCE_ANCHOR = "previous-scene-latents", "latent-input", "anchor-only"


class SVIError(ValueError):
    """Bad input to SVI Continue; the message names the input and the fix."""


@dataclass
class Continuation:
    layout: SVILayout
    source: str  # previous-scene-latents | latent-input | anchor-only
    previous_scene: str | None
    fallback: str | None  # why the scene starts from its anchor alone, when it was meant to continue
    anchor: str  # what the anchor is (story reference file, keyframe, anchor_image input)
    motion_latent_count: int
    end: bool
    notes: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        """The record's ``Extra.SVI`` (and the event's fields, snake_case there)."""
        return {"Source": self.source, "PreviousScene": self.previous_scene, "Fallback": self.fallback,
                "Anchor": self.anchor, "MotionLatentCount": self.motion_latent_count, "EndLatent": self.end,
                "Family": self.layout.family, "Slots": _slot_summary(self.layout.slots), "Notes": list(self.notes)}


def _slot_summary(slots: Sequence[str]) -> str:
    """``anchor, motion x1, pad x19, end`` for a list of per-frame slot names."""
    out: list[str] = []
    for slot in slots:
        if out and out[-1][0] == slot:
            out[-1] = (slot, out[-1][1] + 1)
        else:
            out.append((slot, 1))
    return ", ".join(name if count == 1 else f"{name} x{count}" for name, count in out)


def anchor_pixels(run: ledger.Run, scene: Any, mode: str, fit: str = "crop") -> tuple[np.ndarray, str]:
    """The anchor image ``[H,W,3]`` float32 at the scene's size, and what it is.

    story reference: the first scene's saved first frame in this run (the look the story began with),
    else the scene's keyframe. scene keyframe: the scene's keyframe. SVIError when there is none.
    """
    from ..chain.save import REFERENCE_KEYFRAME, story_reference
    from ..chain.start import check_scene_in_run, keyframe_image

    if mode not in ANCHOR_CHOICES:
        raise SVIError(f"anchor {mode!r} is not one of {', '.join(ANCHOR_CHOICES)}")
    info = check_scene_in_run(run, scene)
    if mode == ANCHOR_REFERENCE:
        image, name = story_reference(run, scene, info, fit)
        if image is not None:
            return np.asarray(image, dtype=np.float32) / (255.0 if image.dtype == np.uint8 else 1.0), \
                (name if name != REFERENCE_KEYFRAME else "scene keyframe")
    image = keyframe_image(scene, fit)
    if image is None:
        raise SVIError(f"anchor: scene '{scene.id}' has no keyframe and no earlier scene of this run was saved, so "
                       "there is no anchor image; give the scene a keyframe, or connect an image to anchor_image")
    return image, "scene keyframe"


def check_image_size(name: str, image: Any, scene: Any) -> None:
    """Refuse an IMAGE ``[B,H,W,3]`` of another size than the scene's output, naming both sizes."""
    height, width = int(image.shape[-3]), int(image.shape[-2])
    if (width, height) != (scene.width, scene.height):
        raise SVIError(f"{name}: the image is {width}x{height} but scene '{scene.id}' renders at "
                       f"{scene.width}x{scene.height}; an SVI anchor must match the output size (resize or crop it "
                       "to the scene's size, or leave the input empty to use the story's anchor)")


def motion_count(scene: Any, widget: int) -> int:
    svi = getattr(scene, "svi", None)
    if widget != FROM_STORY:
        return int(widget)
    return int(svi.motion_latent_count) if svi is not None and svi.enabled else 0


def previous_latents(run: ledger.Run, scene: Any, latent_input: Any, count: int) -> tuple[
        Any | None, str, str | None, str | None]:
    """``(latents [B,C,T,H,W] or None, source, previous scene id, why not)``."""
    if latent_input is not None:
        return ledger_latents.as_samples(latent_input), SOURCE_INPUT, None, None
    svi = getattr(scene, "svi", None)
    if svi is not None and not svi.enabled:
        return None, SOURCE_ANCHOR, None, f"scene '{scene.id}' has svi off in the story: it starts from its anchor"
    if count == 0:
        return None, SOURCE_ANCHOR, None, None
    if scene.index <= 1:
        return None, SOURCE_ANCHOR, None, "the first scene has no previous scene: it starts from its anchor"
    previous_id = ledger.story_info(run).scene_ids[scene.index - 2]
    found = ledger_latents.load_last_latents(run, previous_id)
    if found.samples is None:
        return None, SOURCE_ANCHOR, previous_id, f"{found.why_not}: the scene starts from its anchor"
    return found.samples, SOURCE_PREVIOUS, previous_id, None


def continue_scene(run: ledger.Run, scene: Any, anchor_latent: Any, anchor_name: str, *, motion_latent_count: int,
                   latent_input: Any = None, end_latent: Any = None) -> Continuation:
    """The layout for ``scene`` (its ``length``), from a VAE-encoded anchor ``[B,C,1,H,W]``."""
    count = motion_count(scene, motion_latent_count)
    motion, source, previous_id, why_not = previous_latents(run, scene, latent_input, count)
    try:
        layout = svi_layout(anchor_latent, scene.length, motion, count if motion is not None else 0, end_latent)
    except ValueError as exc:
        raise SVIError(f"scene '{scene.id}': {exc}") from None
    return Continuation(layout, source, previous_id, why_not, anchor_name, count if motion is not None else 0,
                        end_latent is not None, list(layout.notes))


def record_continuation(run: ledger.Run, scene: Any, result: Continuation) -> None:
    """Log what SVI Continue did (Scene Save copies it into the record's ``Extra.SVI``), tell the panel
    (``gemdirect.svi`` event); warn on a fallback."""
    facts = result.facts()
    events.append_event(run.run_dir, SVI_EVENT, scene=scene.id,
                        **{_snake(key): value for key, value in facts.items()})
    warning = fallback_warning(scene, facts)
    if warning:
        ledger.warn(run, warning, scene=scene.id)
    comfy.send_event("gemdirect.svi", {"run": run.run_id, "story": run.story_id, "scene": scene.id,
                                       "warning": warning, **facts})


def fallback_warning(scene: Any, facts: Mapping[str, Any]) -> str | None:
    """The warning for an SVI scene that was meant to continue but starts from its anchor alone (the same
    text in the event log and the record, so the telemetry lists it once)."""
    svi = getattr(scene, "svi", None)
    meant = svi is not None and svi.enabled and getattr(scene, "index", 1) > 1
    if meant and facts.get("Source") == SOURCE_ANCHOR and facts.get("Fallback"):
        return f"SVI: {facts['Fallback']}"
    return None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def continuation_facts(run: ledger.Run, scene_id: str) -> dict[str, Any] | None:
    """The record's ``Extra.SVI`` from SVI Continue's event of the scene's current attempt, or None."""
    found = None
    for event in events.read_events(run.run_dir).events:
        if event.get("scene") != scene_id:
            continue
        if event.get("event") == events.SCENE_RECORDED:
            found = None
        elif event.get("event") == SVI_EVENT:
            found = event
    if found is None:
        return None
    keys = ("Source", "PreviousScene", "Fallback", "Anchor", "MotionLatentCount", "EndLatent", "Family", "Slots",
            "Notes")
    return {key: found.get(_snake(key)) for key in keys}


def set_conditioning(conditioning: Sequence[Any], values: Mapping[str, Any]) -> list[list[Any]]:
    """A copy of a CONDITIONING (``[[tensor, dict], ...]``) with ``values`` set in every entry's dict."""
    return [[entry[0], {**entry[1], **values}] for entry in conditioning]


def describe(scene: Any, result: Continuation, lora_note: str | None = None) -> str:
    layout = result.layout
    lines = [f"SVI scene '{scene.id}' ({scene.index}): {layout.family} layout, {layout.latent.shape[2]} latent frames "
             f"({scene.length} frames {scene.width}x{scene.height}) [{_slot_summary(layout.slots)}]",
             f"Anchor: {result.anchor}",
             "Motion: " + {SOURCE_PREVIOUS: f"{result.motion_latent_count} latent frame(s) of scene "
                                            f"'{result.previous_scene}' (from the run ledger)",
                           SOURCE_INPUT: f"{result.motion_latent_count} latent frame(s) from the latent input",
                           SOURCE_ANCHOR: "none: starts from its anchor"}[result.source]]
    if result.end:
        lines.append("End: the last latent slot is locked to the end image")
    if result.fallback:
        lines.append(f"NOTE: {result.fallback}")
    lines += [f"NOTE: {note}" for note in result.notes]
    if lora_note:
        lines.append(lora_note)
    return "\n".join(lines)
