"""The bundled demo story, drawn by code: three scenes of a lighthouse at sea, with keyframes.

Nothing is downloaded: the keyframes are painted here with Pillow (gradients and shapes), so the
demo is the same on every machine. ``install_demo_story`` writes it into a folder once.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..run.atomic import atomic_path, atomic_write_json

DEMO_FOLDER = "demo"  # under input/gemdirect/
KEYFRAME_SIZE = (832, 480)

DEMO_STORY: dict[str, Any] = {
    "schema": "gemdirect.story/1",
    "id": "lighthouse",
    "title": "The Lighthouse Keeper",
    "logline": "From dawn to dusk, a lighthouse keeper readies the lamp before a storm.",
    "directors_vision": "Slow, painterly, warm against cold; the light is the character.",
    "defaults": {
        "preset": "standard",
        "fps": 16,
        "cfg": 5.2,
        "steps": 16,
        "seed": 20261123,
        "negative": "blurry, low quality, flicker, distorted, text, watermark",
        "transition": {"kind": "crossfade", "frames": 8},
    },
    "scenes": [
        {
            "id": "dawn",
            "title": "Dawn over the sea",
            "prompt": "A white lighthouse on a rocky point at dawn, calm sea, pink and gold sky, "
            "slow push in, cinematic, soft light",
            "duration": 3.0,
            "keyframe": "keyframes/dawn.png",
        },
        {
            "id": "noon",
            "title": "The keeper's rounds",
            "prompt": "The same lighthouse at midday under a deep blue sky, gulls circling, "
            "waves breaking on the rocks, gentle pan right",
            "duration": 3.0,
            "keyframe": "keyframes/noon.png",
            "transition": {"kind": "crossfade", "frames": 12},
        },
        {
            "id": "dusk",
            "title": "The lamp is lit",
            "prompt": "The lighthouse at dusk as its lamp comes on, a beam sweeping over a dark "
            "stormy sea, purple clouds, slow pull out",
            "duration": 3.5,
            "keyframe": "keyframes/dusk.png",
        },
    ],
}

# Palette per scene: sky top, sky horizon, sea, sun (or lamp) colour, sun height (0 = horizon).
_LOOKS = {
    "dawn": ((40, 50, 110), (250, 170, 140), (40, 70, 110), (255, 220, 150), 0.15),
    "noon": ((20, 70, 170), (140, 190, 240), (20, 90, 140), (255, 250, 230), 0.8),
    "dusk": ((25, 15, 50), (140, 70, 120), (15, 25, 50), (255, 230, 120), -0.2),
}


def paint_keyframe(look: str, size: tuple[int, int] = KEYFRAME_SIZE) -> Any:
    """A PIL image of the lighthouse in the ``look`` palette (dawn, noon or dusk)."""
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = size
    top, horizon_colour, sea, sun, sun_height = _LOOKS[look]
    horizon = int(height * 0.62)
    rows = np.linspace(0.0, 1.0, horizon)[:, None]
    sky = (1 - rows) * np.array(top) + rows * np.array(horizon_colour)
    pixels = np.zeros((height, width, 3), dtype=np.float32)
    pixels[:horizon] = sky[:, None, :]
    depth = np.linspace(0.0, 1.0, height - horizon)[:, None]
    waves = 0.08 * np.sin(np.arange(width)[None, :] / 9.0 + depth * 40.0)
    pixels[horizon:] = (np.array(sea) * (0.75 + 0.35 * depth + waves)[..., None]).clip(0, 255)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    sun_x, sun_y, radius = int(width * 0.72), int(horizon - sun_height * horizon * 0.8), int(height * 0.07)
    if sun_height > 0:
        draw.ellipse((sun_x - radius, sun_y - radius, sun_x + radius, sun_y + radius), fill=sun)
    # Rocks, tower, gallery and lamp house.
    draw.polygon([(0, horizon + 40), (width * 0.18, horizon - 10), (width * 0.38, horizon + 50), (0, height)],
                 fill=(45, 40, 38))
    base_x, base_y, tower_h = int(width * 0.2), horizon, int(height * 0.42)
    draw.polygon([(base_x - 26, base_y), (base_x + 26, base_y), (base_x + 16, base_y - tower_h),
                  (base_x - 16, base_y - tower_h)], fill=(235, 232, 225))
    for band in range(1, 4):
        y = base_y - band * tower_h // 4
        draw.rectangle((base_x - 24 + band * 3, y - 9, base_x + 24 - band * 3, y), fill=(180, 40, 40))
    draw.rectangle((base_x - 20, base_y - tower_h - 6, base_x + 20, base_y - tower_h), fill=(30, 30, 30))
    lamp = sun if look == "dusk" else (200, 210, 220)
    draw.rectangle((base_x - 11, base_y - tower_h - 30, base_x + 11, base_y - tower_h - 6), fill=lamp)
    draw.polygon([(base_x - 14, base_y - tower_h - 30), (base_x + 14, base_y - tower_h - 30),
                  (base_x, base_y - tower_h - 46)], fill=(30, 30, 30))
    if look == "dusk":  # the beam
        draw.polygon([(base_x, base_y - tower_h - 18), (width, base_y - tower_h - 70),
                      (width, base_y - tower_h + 30)], fill=(120, 100, 110))
    return image


def install_demo_story(folder: str, overwrite: bool = False) -> str:
    """Write the demo story (story.json + keyframes/) into ``folder``; return the story's path.

    An existing story.json is kept unless ``overwrite``: the user may have edited it.
    """
    story_path = os.path.join(folder, "story.json")
    for scene in DEMO_STORY["scenes"]:
        target = os.path.join(folder, scene["keyframe"])
        if overwrite or not os.path.exists(target):
            with atomic_path(target) as temp:
                paint_keyframe(scene["id"]).save(temp, format="PNG", optimize=True)
    if overwrite or not os.path.exists(story_path):
        atomic_write_json(story_path, json.loads(json.dumps(DEMO_STORY)))
    return story_path
