"""Output size modes: what size the upscaled frames end up at."""

from __future__ import annotations

from dataclasses import dataclass

SIZE_MODES = ("model scale", "factor", "long side", "exact")
MAX_SIDE = 16384


def size_inputs(subject: str, selector: str) -> dict[str, tuple]:
    """The ``factor``, ``long_side``, ``width`` and ``height`` widgets of a node that sizes frames.

    subject: what is sized, for the tooltips ("output", "film"); selector: the input that picks the
    mode ("size_mode", "upscale"). One definition, so every node offers the same ranges.
    """
    return {
        "factor": ("FLOAT", {"default": 2.0, "min": 0.25, "max": 8.0, "step": 0.05, "tooltip": (
            f"{subject.capitalize()} size as a multiple of the input ({selector} factor).")}),
        "long_side": ("INT", {"default": 1920, "min": 16, "max": MAX_SIDE, "step": 2, "tooltip": (
            f"Length in px of the {subject}'s longer side ({selector} long side).")}),
        "width": ("INT", {"default": 1920, "min": 16, "max": MAX_SIDE, "step": 2, "tooltip": (
            f"{subject.capitalize()} width in px ({selector} exact).")}),
        "height": ("INT", {"default": 1080, "min": 16, "max": MAX_SIDE, "step": 2, "tooltip": (
            f"{subject.capitalize()} height in px ({selector} exact).")}),
    }


@dataclass(frozen=True)
class OutputSize:
    """How big the result is.

    mode: ``model scale`` (the model's own factor; with no model, ``factor``), ``factor`` (e.g. 2.0
    with a 4x model: the model runs at 4x and a Lanczos resize brings it to 2x), ``long side``
    (the longer side becomes ``long_side`` px, aspect kept), ``exact`` (``width`` x ``height``).
    """

    mode: str = "model scale"
    factor: float = 2.0
    long_side: int = 1920
    width: int = 1920
    height: int = 1080

    def __post_init__(self) -> None:
        if self.mode not in SIZE_MODES:
            raise ValueError(f"size_mode '{self.mode}' is not one of {', '.join(SIZE_MODES)}")

    def resolve(self, width: int, height: int, model_scale: int | None) -> tuple[int, int]:
        """(width, height) in px of the output for a ``width`` x ``height`` input.

        ``model_scale`` is None for the weightless lanczos method.
        """
        if self.mode == "model scale" and model_scale is not None:
            out = (width * model_scale, height * model_scale)
        elif self.mode in ("model scale", "factor"):
            if not 0 < self.factor <= 16:
                raise ValueError(f"factor = {self.factor} must be above 0 and at most 16")
            out = (max(1, round(width * self.factor)), max(1, round(height * self.factor)))
        elif self.mode == "long side":
            if self.long_side < 1:
                raise ValueError(f"long_side = {self.long_side} must be at least 1")
            if width >= height:
                out = (self.long_side, max(1, round(height * self.long_side / width)))
            else:
                out = (max(1, round(width * self.long_side / height)), self.long_side)
        else:
            if self.width < 1 or self.height < 1:
                raise ValueError(f"exact size {self.width}x{self.height} must be at least 1x1")
            out = (self.width, self.height)
        if max(out) > MAX_SIDE:
            raise ValueError(f"output {out[0]}x{out[1]} is larger than {MAX_SIDE} px on a side; "
                             "lower the factor or the target size")
        return out
