"""What a scene's provider-specific core nodes take, checked against the provider the workflow renders with.

SVD's ``SVD_img2vid_Conditioning`` takes a whole-number ``fps`` and a ``motion_bucket_id``; LTX-Video's
``LTXVConditioning`` a float ``frame_rate``. The scene was planned for one model profile (its frame
counts and sizes follow that model's rules), so a workflow for another provider is refused with the
fix, instead of feeding SVD a WAN plan (4n+1 frames, multiples of 16) or the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .profiles import PROFILES, get_profile

PROVIDERS = ("svd", "ltxv", "wan")


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
        preset = {"svd": "svd", "ltxv": "ltxv"}.get(provider)
        raise ValueError(
            f"scene '{scene.id}' was planned for {profile.label} (model profile {profile.id}), but this workflow "
            f"renders with {provider}: set defaults.model_profile to '{fitting[0]}' in story.json"
            + (f" or choose the preset '{preset}' in Story Loader" if preset else "")
            + ", so frames and sizes follow this model's rules")
    fps = float(scene.fps)
    return ProviderValues(fps=max(1, int(fps + 0.5)), motion_bucket_id=int(scene.motion or 0), frame_rate=fps)
