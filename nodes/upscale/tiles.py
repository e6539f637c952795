"""Tile grids and blend weights for seam-free tiled inference.

Tiles are full-size squares (or the whole axis when the frame is smaller) laid out so neighbours
overlap by at least ``overlap`` input pixels, spread evenly rather than with a sliver at the end.
Each tile's output is weighted by a ramp at its *interior* edges (never at the frame border): zero
over the outer quarter of the overlap (pixels whose receptive field was cut off by the tile edge),
rising linearly to one at half the overlap. Every output pixel therefore comes from tiles that saw at
least ``overlap/4`` pixels of real context around it, and neighbouring tiles cross-fade instead of
meeting at a hard line. When a model's receptive field fits in that context, tiled output equals
untiled output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# A pixel's weight never falls to exactly zero, so a coverage gap could never divide by zero; the
# floor is far below the tolerance of any comparison (a wrong value weighted 1e-4 moves a result by
# at most 1e-4).
WEIGHT_FLOOR = 1e-4


def axis_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets (input px) of the tiles along one axis of ``size`` px; evenly spread.

    One tile when ``size <= tile``. Otherwise neighbours overlap by at least ``overlap`` px and every
    tile is exactly ``tile`` px long (so it meets the model's size rules like the first one).
    """
    if size <= tile:
        return [0]
    stride = tile - overlap
    if stride < 1:
        raise ValueError(f"tile {tile} must be larger than overlap {overlap}")
    gaps = math.ceil((size - tile) / stride)
    return [round(i * (size - tile) / gaps) for i in range(gaps + 1)]


@dataclass(frozen=True)
class Tile:
    """One tile: input rows y0:y1 and columns x0:x1; which sides are interior (blended)."""

    y0: int
    y1: int
    x0: int
    x1: int
    top: bool
    bottom: bool
    left: bool
    right: bool


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles covering a ``height`` x ``width`` frame, row by row."""
    tiles = []
    ys = axis_starts(height, tile, overlap)
    xs = axis_starts(width, tile, overlap)
    for y in ys:
        for x in xs:
            y1, x1 = min(y + tile, height), min(x + tile, width)
            tiles.append(Tile(y, y1, x, x1, top=y > 0, bottom=y1 < height, left=x > 0, right=x1 < width))
    return tiles


def _ramp(length: int, overlap_out: float, start: bool, end: bool) -> Any:
    import torch

    weight = torch.ones(length, dtype=torch.float32)
    if overlap_out <= 0:
        return weight
    lo, hi = overlap_out / 4, overlap_out / 2
    distance = torch.arange(length, dtype=torch.float32) + 0.5
    if start:
        weight = torch.minimum(weight, ((distance - lo) / (hi - lo)).clamp(0, 1))
    if end:
        weight = torch.minimum(weight, ((distance.flip(0) - lo) / (hi - lo)).clamp(0, 1))
    return weight.clamp_(min=WEIGHT_FLOOR)


def blend_weights(tile: Tile, scale: int, overlap: int) -> Any:
    """[h*scale, w*scale] float32 weights of ``tile``'s output (ramps only at interior sides)."""
    rows = _ramp((tile.y1 - tile.y0) * scale, overlap * scale, tile.top, tile.bottom)
    cols = _ramp((tile.x1 - tile.x0) * scale, overlap * scale, tile.left, tile.right)
    return rows[:, None] * cols[None, :]
