"""The VACE joiner's two steps, as VACE Prep and VACE Splice run them (no ComfyUI here).

:func:`prepare`: two scenes of a run (by transition index) or two IMAGE clips -> the layout, the
control video and masks for core ``WanVaceToVideo``, and a :class:`Prepared` that VACE Splice takes.
:func:`finish`: the decoded VACE output -> the transition clip (colour-matched, context cross-faded),
the spliced pair, and (for a run) ``transitions/<a>--<b>`` in the ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .. import comfy
from ..run import ledger
from . import layout as layouts
from . import splice as splicing
from . import transitions

log = logging.getLogger("gemdirect")
DEFAULT_FPS = Fraction(16)  # WAN's rate, for two IMAGE clips (no run to say)


@dataclass
class Prepared:
    """What VACE Prep hands to VACE Splice (the GEMDIRECT_VACE value)."""

    layout: layouts.TransitionLayout
    a: Any  # [a_frames,H,W,3] float32
    b: Any
    width: int  # the scenes' size (the control size may be rounded down to 16)
    height: int
    fps: Fraction
    run: ledger.Run | None = None
    from_id: str | None = None
    to_id: str | None = None
    index: int | None = None
    prompt: str = ""
    negative: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def control_size(self) -> tuple[int, int]:
        return layouts.control_size(self.width, self.height)

    def settings(self) -> dict[str, Any]:
        return {"ContextFrames": self.layout.context, "ReplaceFrames": self.layout.replace,
                "NewFrames": self.layout.new}


def _same_frame(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.equal((a * 255).round(), (b * 255).round()))


def prepare(*, context: int, replace: int, new: int, run: ledger.Run | None = None, plans: Any = None,
            transition_index: int = 1, images_a: Any = None, images_b: Any = None) -> tuple[Prepared, Any, Any]:
    """(Prepared, control_video [length,H,W,3], control_masks [length,H,W]).

    With ``images_a`` and ``images_b`` (IMAGE [T,H,W,3]) those clips are joined (chained when A's last
    frame equals B's first, to 8 bits); else scenes of ``run`` (``plans``: the story's ScenePlans now)
    by ``transition_index`` among the story's vace transitions. TransitionError / LayoutError name
    the problem and the fix.
    """
    import torch

    notes: list[str] = []
    if (images_a is None) != (images_b is None):
        raise transitions.TransitionError("images_a / images_b: connect both clips, or neither to join scenes of "
                                          "the run")
    if images_a is not None:
        a, b = torch.as_tensor(images_a).float(), torch.as_tensor(images_b).float()
        chained = _same_frame(a[-1], b[0])
        fps, from_id, to_id, index, prompt, negative = DEFAULT_FPS, None, None, None, "", ""
        if chained:
            notes.append("A's last frame is B's first: joined as a chained pair (the duplicate dropped once)")
    else:
        if run is None or plans is None:
            raise transitions.TransitionError("run: connect Run (gemDirect) to join scenes of a run, or connect "
                                              "images_a and images_b")
        scene_a, scene_b = transitions.pick_pair(plans, transition_index)
        from_id, to_id, index = scene_a.id, scene_b.id, int(transition_index)
        a, fps, source_a = transitions.scene_frames(run, from_id)
        b, fps_b, source_b = transitions.scene_frames(run, to_id)
        if Fraction(fps) != Fraction(fps_b):
            raise transitions.TransitionError(f"scenes '{from_id}' ({float(fps):g} fps) and '{to_id}' "
                                              f"({float(fps_b):g} fps) differ in rate; render both at the story's fps")
        notes += [f"scene '{sid}' read from its H.264 preview (no lossless master)"
                  for sid, src in ((from_id, source_a), (to_id, source_b)) if src != "master"]
        chained, not_proven = transitions.chained_pair(run, from_id, to_id)
        if not_proven:
            notes.append(f"not joined as chained: {not_proven}")
        prompt, negative = scene_b.prompt, scene_b.negative
    if a.ndim != 4 or b.ndim != 4 or a.shape[-1] != 3 or b.shape[-1] != 3:
        raise transitions.TransitionError(f"the clips must be IMAGE batches [T,H,W,3], got {list(a.shape)} and "
                                          f"{list(b.shape)}")
    if a.shape[1:] != b.shape[1:]:
        raise transitions.TransitionError(f"the clips differ in size ({a.shape[2]}x{a.shape[1]} and "
                                          f"{b.shape[2]}x{b.shape[1]}); render both at the story's size")
    layout = layouts.plan_layout(context, replace, new, int(a.shape[0]), int(b.shape[0]), chained)
    height, width = int(a.shape[1]), int(a.shape[2])
    video, masks = layouts.control_inputs(layout, a[layout.a_context], b[layout.b_context])
    prepared = Prepared(layout, a, b, width, height, Fraction(fps), run, from_id, to_id, index, prompt, negative,
                        notes)
    control_width, control_height = prepared.control_size
    if (control_width, control_height) != (width, height):
        notes.append(f"the scenes are {width}x{height}; WanVaceToVideo works in multiples of 16, so it generates "
                     f"{control_width}x{control_height} and Splice resizes back")
    return prepared, video, masks


def describe_prep(prepared: Prepared) -> str:
    lay = prepared.layout
    pair = f"'{prepared.from_id}' -> '{prepared.to_id}' (transition {prepared.index})" if prepared.from_id \
        else "images_a -> images_b"
    lines = [f"VACE transition {pair}: {lay.length} frames = 2*{lay.context} context + {lay.generated} generated "
             f"(2*{lay.replace} + {lay.new} + 1); A {lay.a_frames} frames loses its last {lay.tail}, B "
             f"{lay.b_frames} its first {lay.head}" + (" (chained: the duplicate first frame once)" if lay.chained
                                                       else ""),
             f"spliced pair: {lay.spliced_frames} frames; control {prepared.control_size[0]}x"
             f"{prepared.control_size[1]}"]
    return "\n".join(lines + [f"NOTE: {note}" for note in prepared.notes])


@dataclass
class Finished:
    spliced: Any
    clip: Any
    colour: splicing.ColourReport
    record: dict[str, Any] | None
    report: str
    warnings: list[str]


def finish(prepared: Prepared, generated: Any, *, method: str = splicing.DEFAULT_METHOD,
           strength: float = splicing.DEFAULT_STRENGTH, models: Any = (), progress: Any = None) -> Finished:
    """The transition clip and the spliced pair from the decoded VACE output; recorded in the run when the
    transition came from one. LayoutError when the generated clip is not ``layout.length`` frames."""
    lay = prepared.layout
    frames, resized = splicing.check_generated(lay, generated, prepared.width, prepared.height)
    frames = frames.to(prepared.a.device)
    clip, colour = splicing.transition_clip(lay, prepared.a[lay.a_context], prepared.b[lay.b_context], frames,
                                            method=method, strength=strength)
    spliced = splicing.splice(lay, prepared.a, prepared.b, clip)
    warnings = list(prepared.notes) + ([resized] if resized else [])
    if colour.after > colour.before + 1e-6:  # the generated frames share little with their context (say it)
        warnings.append(f"the colour match ({method} at {float(strength):g}) moved the generated frames further from "
                        f"their context (mean Lab difference {colour.before:.2f} -> {colour.after:.2f}): the model "
                        "changed the content, not only the colour; check the transition, or set color_match to off")
    record = None
    if prepared.run is not None and prepared.from_id and prepared.to_id:
        record = transitions.record_transition(
            prepared.run, prepared.from_id, prepared.to_id, clip, prepared.fps, layout=lay.to_json(),
            settings={**prepared.settings(), "ColorMatch": method, "ColorMatchStrength": float(strength)},
            colour=colour.to_json(), models=list(models), warnings=warnings, index=prepared.index,
            progress=progress)
        for text in warnings:  # never silent: the run's telemetry and the UI say it too
            ledger.warn(prepared.run, f"transition '{prepared.from_id}' -> '{prepared.to_id}': {text}")
        comfy.send_event(transitions.EVENT, {"state": "done", "run_id": prepared.run.run_id,
                                             "story_id": prepared.run.story_id, "from": prepared.from_id,
                                             "to": prepared.to_id, "index": prepared.index,
                                             "frames": record["Frames"], "video": record["Video"]["Path"],
                                             "warnings": warnings})
    lines = [f"transition clip: {lay.length} frames; spliced pair {int(spliced.shape[0])} frames",
             f"colour: {method} at {float(strength):g}: mean Lab difference of the generated frames to their "
             f"context {colour.before:.2f} -> {colour.after:.2f} ({colour.reduction * 100:.0f} % less)"]
    if record is not None:
        lines.append(f"recorded: {record['Video']['Master']} (+ {record['Video']['Path']}), attempt "
                     f"{record['AttemptsRun']}")
    lines += [f"WARNING: {text}" for text in warnings]
    return Finished(spliced, clip, colour, record, "\n".join(lines), warnings)
