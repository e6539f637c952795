"""The ``gemdirect.story/1`` model: what a story.json may say, checked with pydantic.

Field names are snake_case as they appear in the file. Numbers are strict: ``"cfg": "5"`` or
``"steps": 12.5`` are errors, not guesses. Unknown fields are allowed and kept (read-modify-write
must not lose what another tool wrote), but a likely typo (``"promt"``) is reported as a warning.
Ranges live in one place (the ``Field`` bounds below) and error messages read them back.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..timebase import parse_fps as parse_rate
from .profiles import PROFILES

SCHEMA_ID = "gemdirect.story/1"
MAX_SEED = 0xFFFFFFFFFFFFFFFF  # ComfyUI's KSampler seed range
SCENE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus")

# Shared, bounded field types. The bounds are the hard limits (errors); the soft advice (CFG >= 6,
# steps outside 12..20) is given as warnings by the planner.
Width = Annotated[int, Field(ge=64, le=4096, description="frame width in pixels")]
Height = Annotated[int, Field(ge=64, le=4096, description="frame height in pixels")]
Cfg = Annotated[float, Field(ge=1.0, le=20.0, description="classifier-free guidance; WAN 2.2 likes about 5.2")]
Steps = Annotated[int, Field(ge=1, le=150, description="sampling steps; 12 to 20 is the useful range")]
SplitStep = Annotated[int, Field(ge=1, le=149, description=(
    "two-expert models (WAN 2.2 14B): the step where the high-noise expert hands over to the low-noise one, "
    "1..steps-1; default half the steps"))]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="sampler seed")]
Duration = Annotated[float, Field(gt=0.0, le=600.0, description="seconds")]
Frames = Annotated[int, Field(ge=1, le=4001, description="frame count, rounded to 4n+1")]
Shift = Annotated[float, Field(ge=0.0, le=100.0, description="sampling shift (ModelSamplingSD3)")]
Motion = Annotated[int, Field(ge=1, le=1023, description=(
    "SVD only: motion_bucket_id, how much the picture moves (127 default; higher moves more)"))]
Strength = Annotated[float, Field(ge=-10.0, le=10.0)]
Text = Annotated[str, Field(max_length=20000)]
Prompt = Annotated[str, Field(min_length=1, max_length=20000)]
RelPath = Annotated[str, Field(min_length=1, max_length=1024)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


def parse_fps(value: float | int | str | Fraction) -> Fraction:
    """A story's frame rate as an exact Fraction in 1..240 fps (rule: :func:`nodes.timebase.parse_fps`)."""
    return parse_rate(value, minimum=1.0, maximum=240.0)


def _check_fps(value: Any) -> Any:
    parse_fps(value)
    return value


FpsValue = Annotated[
    float | str,
    AfterValidator(_check_fps),
    Field(description="frames per second: a number or a fraction such as '24000/1001'"),
]


class Lora(_Model):
    name: RelPath = Field(description="file name in ComfyUI's models/loras folder")
    strength: Strength = 1.0
    expert: Literal["high", "low", "both"] = Field(
        default="both", description="two-expert models (WAN 2.2 14B): patch the high-noise, the low-noise or both")


class Control(_Model):
    kind: Literal["pose", "depth", "canny"]
    sequence: RelPath = Field(description="zip of control frames, relative to the story's folder")
    strength: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0


class Transition(_Model):
    kind: Literal["cut", "crossfade", "vace"] = "cut"
    frames: Annotated[int, Field(ge=0, le=240)] | None = None
    easing: Literal["linear", "ease-in", "ease-out", "ease-in-out"] = "ease-in-out"


class Svi(_Model):
    """Stable Video Infinity for a scene (or every scene, in defaults): continue from the previous scene's
    latents with the SVI LoRAs. Unset fields fall back: scene -> preset -> defaults."""

    enabled: bool | None = None
    motion_latent_count: Annotated[int, Field(ge=0, le=8, description=(
        "latent frames of the previous scene carried as motion (SVI uses 1; more freezes motion)"))] | None = None
    lora_strength: Annotated[float, Field(ge=0.0, le=2.0, description="strength of the SVI LoRAs")] | None = None
    cfg: Cfg | None = Field(None, description="CFG for SVI scenes that set no cfg of their own")


def _svi_shorthand(value: Any) -> Any:
    return Svi(enabled=value) if isinstance(value, bool) else value


SviField = Annotated[Svi | None, BeforeValidator(_svi_shorthand)]


class Defaults(_Model):
    preset: str | None = None
    model_profile: str | None = None
    width: Width | None = None
    height: Height | None = None
    fps: FpsValue | None = None
    cfg: Cfg | None = None
    steps: Steps | None = None
    split_step: SplitStep | None = None
    seed: Seed | None = None
    sampler: str | None = None
    scheduler: str | None = None
    shift: Shift | None = None
    motion: Motion | None = None
    negative: Text | None = None
    duration: Duration | None = None
    transition: Transition | None = None
    svi: SviField = None

    @field_validator("model_profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in PROFILES:
            raise ValueError(f"unknown model profile '{value}'; use one of: {', '.join(PROFILES)}")
        return value


class Scene(_Model):
    id: Annotated[str, Field(pattern=SCENE_ID_PATTERN)]
    title: Text = ""
    prompt: Prompt
    negative: Text | None = None
    duration: Duration | None = None
    frames: Frames | None = None
    fps: FpsValue | None = None
    seed: Seed | None = None
    cfg: Cfg | None = None
    steps: Steps | None = None
    split_step: SplitStep | None = None
    width: Width | None = None
    height: Height | None = None
    motion: Motion | None = None
    keyframe: RelPath | None = None
    loras: Annotated[list[Lora], Field(max_length=16)] = []
    control: Control | None = None
    transition: Transition | None = None
    chain: bool = True
    svi: SviField = None  # true/false, or {enabled, motion_latent_count, lora_strength, cfg}

    @field_validator("prompt")
    @classmethod
    def _prompt_has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank; describe what the scene shows")
        return value

    @model_validator(mode="after")
    def _one_length(self) -> Scene:
        if self.duration is not None and self.frames is not None:
            raise ValueError("give either duration (seconds) or frames, not both")
        return self


class Story(_Model):
    schema_: Literal["gemdirect.story/1"] = Field(default=SCHEMA_ID, alias="schema")
    id: Annotated[str, Field(pattern=SCENE_ID_PATTERN)] | None = None
    title: Annotated[str, Field(min_length=1, max_length=500)]
    logline: Text = ""
    directors_vision: Text = ""
    soundtrack: RelPath | None = None
    defaults: Defaults = Defaults()
    scenes: Annotated[list[Scene], Field(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _unique_scene_ids(self) -> Story:
        # Ids name files (scenes/<id>.mp4): "A" and "a" would collide on case-insensitive disks.
        seen: dict[str, int] = {}
        for index, scene in enumerate(self.scenes):
            key = scene.id.lower()
            if key in seen:
                raise ValueError(
                    f"scenes[{index}].id '{scene.id}' is already used by scenes[{seen[key]}] "
                    f"('{self.scenes[seen[key]].id}'); scene ids must be unique, ignoring case"
                )
            seen[key] = index
        return self


def slugify(text: str, fallback: str = "story") -> str:
    """A folder-safe id from ``text``: lowercase letters, digits and dashes, at most 64 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-")
    return slug or fallback


def story_slug(story: Story) -> str:
    """The story's id if it has one (lowercased), else a slug of its title."""
    return slugify(story.id) if story.id else slugify(story.title)
