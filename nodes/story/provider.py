"""What a scene's provider-specific core nodes take, checked against the provider the workflow renders with.

SVD's ``SVD_img2vid_Conditioning`` takes a whole-number ``fps`` and a ``motion_bucket_id``; LTX-Video's
``LTXVConditioning`` a float ``frame_rate``. The scene was planned for one model profile (its frame
counts and sizes follow that model's rules), so a workflow for another provider is refused with the
fix, instead of feeding SVD a WAN plan (4n+1 frames, multiples of 16) or the other way round.

FastVideo's ComfyUI nodes pass files, not tensors: ``InferenceArgs`` takes the start image as a path
and ``VideoGenerator`` returns the path of the MP4 it wrote. :func:`start_image_file` writes Chain
Start's image as a PNG into ComfyUI's temp folder; :func:`video_file_frames` reads a video back as
IMAGE frames, only from ComfyUI's input, output, temp or user folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .profiles import PROFILES, get_profile

PROVIDERS = ("svd", "ltxv", "fastvideo", "wan")
START_IMAGE_FOLDER = "gemdirect-provider"  # under ComfyUI's temp folder


@dataclass(frozen=True)
class ProviderValues:
    fps: int  # whole frames per second (SVD's fps conditioning); the scene's fps rounded
    motion_bucket_id: int  # SVD's motion; 0 for models without one
    frame_rate: float  # the scene's exact fps as a float (LTXVConditioning)


def provider_values(scene: Any, provider: str) -> ProviderValues:
    """The values for ``provider``'s core nodes from a SCENE; ValueError when the scene was planned for another."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider '{provider}' is not one of {', '.join(PROVIDERS)}")
    profile = get_profile(scene.model_profile)
    if profile.provider != provider:
        fitting = [p.id for p in PROFILES.values() if p.provider == provider]
        preset = {"svd": "svd", "ltxv": "ltxv", "fastvideo": "fastvideo"}.get(provider)
        raise ValueError(
            f"scene '{scene.id}' was planned for {profile.label} (model profile {profile.id}), but this workflow "
            f"renders with {provider}: set defaults.model_profile to '{fitting[0]}' in story.json"
            + (f" or choose the preset '{preset}' in Story Loader" if preset else "")
            + ", so frames and sizes follow this model's rules")
    fps = float(scene.fps)
    return ProviderValues(fps=max(1, int(fps + 0.5)), motion_bucket_id=int(scene.motion or 0), frame_rate=fps)


def start_image_file(image: Any, scene: Any, temp_dir: str) -> str:
    """Write ``image`` (IMAGE [B,H,W,3], the first frame is used) as a PNG for ``scene`` under ``temp_dir``; the
    absolute path. Named by story and scene id, so a re-run replaces its own file (written atomically)."""
    from ..video.images import save_png

    frame = image[0] if getattr(image, "ndim", 0) == 4 else image
    name = f"{scene.story_id}--{scene.id}--start.png"
    return save_png(os.path.join(temp_dir, START_IMAGE_FOLDER, name), frame)


def video_file_frames(path: str, roots: list[str]) -> Any:
    """The frames of the video at ``path`` as IMAGE [T,H,W,3] float32; ValueError when ``path`` is empty or lies
    outside ``roots`` (ComfyUI's folders), VideoError when it cannot be read."""
    from ..paths import is_inside
    from ..video.decode import read_frames

    if not path or not str(path).strip():
        raise ValueError("video_path is empty: connect the path output of the node that wrote the video "
                         "(FastVideo's Video Generator)")
    full = os.path.abspath(os.path.expanduser(str(path)))
    if not any(is_inside(full, root) for root in roots):
        raise ValueError(f"video_path {full} is outside ComfyUI's folders ({', '.join(roots)}); let the video be "
                         "written there (FastVideo: set Video Generator's output_path to a folder inside "
                         "ComfyUI's output folder)")
    if not os.path.isfile(full):
        raise ValueError(f"video_path {full} does not exist; the node that should have written it did not")
    return read_frames(full)
