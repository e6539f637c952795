"""Model profiles: what scene planning must know about each WAN 2.2 variant.

Data, not code: a profile says which frame sizes the model accepts, its native frame rate and the
clip length it was trained for. Presets and stories name a profile by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class ModelProfile:
    id: str
    label: str
    size_multiple: int  # width and height must be multiples of this (VAE stride x patch size)
    native_fps: Fraction  # the frame rate the model was trained at
    trained_frames: int  # longer clips loop or degrade: planning warns above this
    default_width: int
    default_height: int


PROFILES: dict[str, ModelProfile] = {
    p.id: p
    for p in (
        # TI2V 5B: VAE stride 16 x patch 2 -> multiples of 32; 24 fps, 121 frames (5 s).
        ModelProfile("wan22-ti2v-5b", "WAN 2.2 TI2V 5B", 32, Fraction(24), 121, 1280, 704),
        # I2V / FLF2V 14B (two experts): VAE stride 8 x patch 2 -> multiples of 16; 16 fps, 81 frames.
        ModelProfile("wan22-i2v-14b", "WAN 2.2 I2V 14B", 16, Fraction(16), 81, 832, 480),
        ModelProfile("wan22-t2v-14b", "WAN 2.2 T2V 14B", 16, Fraction(16), 81, 832, 480),
    )
}

DEFAULT_PROFILE = "wan22-i2v-14b"


def get_profile(profile_id: str) -> ModelProfile:
    """The profile named ``profile_id``; KeyError lists the known ids."""
    try:
        return PROFILES[profile_id]
    except KeyError:
        known = ", ".join(PROFILES)
        raise KeyError(f"unknown model profile '{profile_id}' (known: {known})") from None
