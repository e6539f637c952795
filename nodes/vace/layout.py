"""VACE transition layout: which frames of two clips go into ``WanVaceToVideo`` and which it replaces.

For clips A (``a_frames``) and B (``b_frames``) and the settings ``context``, ``replace`` and ``new``
(each a multiple of 4), the control video is::

    A[a - replace - context : a - replace]     context frames of A (mask 0: kept)
    grey 0.5 x (2 * replace + new + 1)         to be generated (mask 1)
    B[head - context : head]                   context frames of B (mask 0: kept)

``length = 2 * context + 2 * replace + new + 1``, a 4n+1 count as WAN needs. The generated clip
replaces A's last ``tail = context + replace`` frames and B's first ``head`` frames:
``head = context + replace``, or one more for a chained pair (B's first frame is A's last: that
duplicate is dropped with B's head, so it is counted once). The spliced film of the pair is
``a - tail + length + b - head`` frames long.

Pure arithmetic and torch tensors; no ComfyUI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GREY = 0.5
STEP = 4  # context / replace / new are multiples of this, so length is 4n+1
SIZE_MULTIPLE = 16  # WanVaceToVideo's width/height step


class LayoutError(ValueError):
    """The settings or clips do not give a valid VACE transition; the message names the field and the fix."""


@dataclass(frozen=True)
class TransitionLayout:
    """Frame accounting of one transition (all counts in frames)."""

    context: int
    replace: int
    new: int
    a_frames: int
    b_frames: int
    chained: bool

    @property
    def length(self) -> int:
        """Frames of the control video, the masks and the generated clip: 2c + 2r + new + 1."""
        return 2 * self.context + 2 * self.replace + self.new + 1

    @property
    def generated(self) -> int:
        """Grey frames the model fills: 2r + new + 1."""
        return 2 * self.replace + self.new + 1

    @property
    def tail(self) -> int:
        """Frames of A replaced by the transition (dropped from A): context + replace."""
        return self.context + self.replace

    @property
    def head(self) -> int:
        """Frames of B replaced (dropped from B): context + replace, +1 for a chained pair's duplicate."""
        return self.context + self.replace + (1 if self.chained else 0)

    @property
    def a_context(self) -> slice:
        """A's context frames (kept by the model, mask 0): the ``context`` frames before its replaced tail."""
        return slice(self.a_frames - self.tail, self.a_frames - self.replace)

    @property
    def b_context(self) -> slice:
        """B's context frames: the ``context`` frames after its replaced head."""
        return slice(self.head - self.context, self.head)

    @property
    def spliced_frames(self) -> int:
        """Frames of A, the transition and B spliced: a - tail + length + b - head."""
        return self.a_frames - self.tail + self.length + self.b_frames - self.head

    def to_json(self) -> dict[str, Any]:
        return {"Context": self.context, "Replace": self.replace, "New": self.new, "AFrames": self.a_frames,
                "BFrames": self.b_frames, "Chained": self.chained, "Length": self.length,
                "Generated": self.generated, "Tail": self.tail, "Head": self.head}


def minimum_frames(context: int, replace: int) -> int:
    """The shortest clip a transition accepts: (context + replace) * 2 + 1 (a scene between two
    transitions gives its head to one and its tail to the other and keeps one frame of its own)."""
    return (context + replace) * 2 + 1


def plan_layout(context: int, replace: int, new: int, a_frames: int, b_frames: int,
                chained: bool = False) -> TransitionLayout:
    """The layout for these settings and clip lengths; LayoutError names what is wrong and the fix."""
    for name, value, low in (("context_frames", context, STEP), ("replace_frames", replace, 0),
                             ("new_frames", new, 0)):
        if int(value) != value or value < low:
            raise LayoutError(f"{name} = {value} must be a whole number of at least {low}")
        if value % STEP:
            total = 2 * context + 2 * replace + new + 1
            lower, upper = value - value % STEP, value - value % STEP + STEP
            raise LayoutError(
                f"{name} = {value} is not a multiple of {STEP}: the control video would be 2*{context} + "
                f"2*{replace} + {new} + 1 = {total} frames, not a 4n+1 count WAN can generate; use "
                f"{max(lower, low)} or {upper}")
    shortest = minimum_frames(context, replace)
    for name, frames, extra in (("A", a_frames, 0), ("B", b_frames, 1 if chained else 0)):
        if frames < shortest + extra:
            raise LayoutError(
                f"clip {name} has {frames} frames; context_frames {context} + replace_frames {replace} need at "
                f"least ({context} + {replace}) * 2 + 1 = {shortest}"
                + (" plus 1 for the chained duplicate" if extra else "")
                + " frames; lower context_frames / replace_frames or render longer scenes")
    return TransitionLayout(int(context), int(replace), int(new), int(a_frames), int(b_frames), bool(chained))


def control_size(width: int, height: int) -> tuple[int, int]:
    """The clips' size rounded down to WanVaceToVideo's multiple of 16 (at least 16)."""
    return (max(SIZE_MULTIPLE, width // SIZE_MULTIPLE * SIZE_MULTIPLE),
            max(SIZE_MULTIPLE, height // SIZE_MULTIPLE * SIZE_MULTIPLE))


def control_inputs(layout: TransitionLayout, a_context: Any, b_context: Any) -> tuple[Any, Any]:
    """(control_video [length,H,W,3] float32, control_masks [length,H,W] float32) for ``WanVaceToVideo``.

    a_context / b_context: the context frames of A and B ([context,H,W,3] float 0..1, same size), as
    :attr:`TransitionLayout.a_context` / ``b_context`` select them. Grey frames are exactly 0.5, masks
    exactly 0 on context and 1 on grey.
    """
    import torch

    a_context, b_context = torch.as_tensor(a_context).float(), torch.as_tensor(b_context).float()
    for name, frames in (("A", a_context), ("B", b_context)):
        if frames.ndim != 4 or frames.shape[0] != layout.context or frames.shape[-1] != 3:
            raise LayoutError(f"clip {name}'s context: expected [{layout.context},H,W,3], got {list(frames.shape)}")
    if a_context.shape[1:] != b_context.shape[1:]:
        raise LayoutError(f"clips A and B differ in size ({a_context.shape[2]}x{a_context.shape[1]} and "
                          f"{b_context.shape[2]}x{b_context.shape[1]}); render both scenes at the story's size")
    height, width = a_context.shape[1:3]
    grey = torch.full((layout.generated, height, width, 3), GREY, dtype=torch.float32, device=a_context.device)
    video = torch.cat([a_context, grey, b_context.to(a_context.device)])
    masks = torch.zeros((layout.length, height, width), dtype=torch.float32, device=a_context.device)
    masks[layout.context:layout.context + layout.generated] = 1.0
    return video, masks
