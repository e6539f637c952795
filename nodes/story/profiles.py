"""Model profiles: what scene planning must know about each video model (provider).

Data, not code: a profile says which frame sizes and counts the model accepts, its native frame rate,
the clip length it was trained for, its useful CFG and steps, and what it takes in (a text prompt, a
start image, an end image). Presets and stories name a profile by id. Providers: WAN 2.2 (core WAN
nodes), SVD (core ``SVD_img2vid_Conditioning``) and LTX-Video (core LTXV nodes). docs/providers.md.
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
    provider: str = "wan"  # wan | svd | ltxv | fastvideo: which workflow family renders it
    frame_step: int = 4  # frame counts are frame_step * n + 1 (WAN 4n+1, LTX-Video 8n+1, SVD any count)
    default_cfg: float = 5.2
    default_steps: int = 16
    cfg_warn: float = 6.0  # CFG at or above this warns
    cfg_warn_reason: str = "WAN 2.2 tends to turn frames black there"
    steps_advised: tuple[int, int] = (12, 20)
    text_prompt: bool = True  # False: the model takes no prompt (SVD: motion comes from motion_bucket_id)
    negative_prompt: bool = True  # False: the nodes take no negative prompt (FastVideo's)
    end_image: bool = True  # the model can end on a given frame (FLF2V)
    whole_fps: bool = False  # the model's fps conditioning is a whole number (SVD)
    default_motion: int | None = None  # SVD motion_bucket_id (1..1023); None: the model has no such input

    @property
    def family(self) -> str:
        return {"wan": "WAN", "svd": "SVD", "ltxv": "LTX-Video", "fastvideo": "WAN"}[self.provider]

    @property
    def frame_rule(self) -> str:
        return "any frame count" if self.frame_step == 1 else f"{self.frame_step}n+1 frames"


PROFILES: dict[str, ModelProfile] = {
    p.id: p
    for p in (
        # TI2V 5B: VAE stride 16 x patch 2 -> multiples of 32; 24 fps, 121 frames (5 s).
        ModelProfile("wan22-ti2v-5b", "WAN 2.2 TI2V 5B", 32, Fraction(24), 121, 1280, 704),
        # I2V / FLF2V 14B (two experts): VAE stride 8 x patch 2 -> multiples of 16; 16 fps, 81 frames.
        ModelProfile("wan22-i2v-14b", "WAN 2.2 I2V 14B", 16, Fraction(16), 81, 832, 480),
        ModelProfile("wan22-t2v-14b", "WAN 2.2 T2V 14B", 16, Fraction(16), 81, 832, 480),
        # SVD-XT (image to video, no text): VAE stride 8 x three UNet downsamples -> multiples of 64; trained
        # on 25 frames at 1024x576 with fps conditioning 6 (a whole number); CFG about 2.5, 20-30 steps.
        ModelProfile("svd-xt", "SVD-XT", 64, Fraction(6), 25, 1024, 576, provider="svd", frame_step=1,
                     default_cfg=2.5, default_steps=20, cfg_warn=4.0,
                     cfg_warn_reason="SVD over-saturates and flickers there (2 to 3 is its range)",
                     steps_advised=(15, 30), text_prompt=False, end_image=False, whole_fps=True,
                     default_motion=127),
        # LTX-Video 2B (0.9.x): VAE stride 8 in time, 32 in space (patch 1) -> 8n+1 frames, multiples of 32;
        # 24 fps (frame_rate is conditioned), up to 257 frames; CFG about 3, 20-40 steps.
        ModelProfile("ltxv-2b", "LTX-Video 2B", 32, Fraction(24), 257, 768, 512, provider="ltxv", frame_step=8,
                     default_cfg=3.0, default_steps=30, cfg_warn=5.0,
                     cfg_warn_reason="LTX-Video burns in and loses motion there (about 3 is its range)",
                     steps_advised=(20, 40), end_image=False),
        # WAN 2.1 I2V 14B 480P run by FastVideo (hao-ai-lab's ComfyUI-FastVideo nodes, its own multi-GPU
        # runtime): WAN's rules; FastVideo's preset for it: 832x480, 81 frames, 16 fps, CFG 5, 40 steps.
        # Its InferenceArgs take one start image and no negative prompt.
        ModelProfile("fastvideo-wan21-i2v-480p", "WAN 2.1 I2V 14B 480P (FastVideo)", 16, Fraction(16), 81, 832,
                     480, provider="fastvideo", default_cfg=5.0, default_steps=40,
                     cfg_warn_reason="WAN tends to burn in and turn frames dark there", steps_advised=(20, 50),
                     end_image=False, negative_prompt=False),
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
