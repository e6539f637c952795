"""Helpers for the VACE joiner's tests: a transition recorded in a run as VACE Splice records it."""

from __future__ import annotations

import numpy as np
from conftest import pack_module
from render_helpers import FPS, solid


def record_clip(run, from_id: str, to_id: str, *, context: int = 4, replace: int = 0, new: int = 0,
                chained: bool = False, colour: str = "d", frames: np.ndarray | None = None) -> dict:
    """Record transition ``from_id`` -> ``to_id`` with a clip of solid ``colour`` frames (as many as the layout's
    length) through vace.transitions.record_transition, the function VACE Splice calls."""
    ledger = pack_module("nodes.run.ledger")
    layouts = pack_module("nodes.vace.layout")
    transitions = pack_module("nodes.vace.transitions")
    lengths = [int(ledger.read_scene(run, scene)["FrameCount"]) for scene in (from_id, to_id)]
    layout = layouts.plan_layout(context, replace, new, *lengths, chained)
    clip = solid(colour, layout.length) if frames is None else frames
    return transitions.record_transition(
        run, from_id, to_id, clip, FPS, layout=layout.to_json(),
        settings={"ContextFrames": context, "ReplaceFrames": replace, "NewFrames": new},
        colour={"Method": "off"})
