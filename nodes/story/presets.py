"""Presets: named bundles of generation settings (``presets/<name>.json``).

Layering, lowest first (a later layer wins for every field it sets):

1. the model profile's own defaults (size, fps),
2. the story's ``defaults``,
3. the preset chosen in the loader ("from story" = the one the story's ``defaults.preset`` names),
4. each scene's own values.

So a preset overrides a story's defaults, and a scene always has the last word. Choose the preset
"none" to let the story's defaults rule.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .load import field_path
from .model import Cfg, Frames, Height, Shift, SplitStep, Steps, Transition, Width
from .profiles import PROFILES

PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "presets")
PRESET_SCHEMA_FILE = os.path.join(PRESET_DIR, "preset.schema.json")
PRESET_NAMES = ("fast", "standard", "cinematic")
FROM_STORY = "from story"
NO_PRESET = "none"

VramGB = Annotated[float, Field(ge=0.0, le=192.0, description="extra VRAM this feature needs, in GB")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Interpolation(_Strict):
    enabled: bool
    method: Literal["rife", "flow"] = "rife"
    target_fps: Annotated[float, Field(ge=1.0, le=240.0)] | None = None
    vram_gb: VramGB = 0.0


class Upscale(_Strict):
    enabled: bool
    factor: Annotated[float, Field(ge=1.0, le=8.0)] = 1.0
    method: Literal["model", "lanczos"] = "model"
    vram_gb: VramGB = 0.0


class Feature(_Strict):
    enabled: bool
    vram_gb: VramGB = 0.0


class SviFeature(Feature):
    motion_latent_count: Annotated[int, Field(ge=0, le=8)] = 1
    lora_strength: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    cfg: Cfg | None = Field(None, description="CFG of SVI scenes that set none (SVI runs at a lower CFG)")


class Vram(_Strict):
    min_gb: Annotated[float, Field(ge=0.0, le=192.0, description="smallest card this preset is meant for")]
    fallback: str | None = Field(None, description="preset to use on smaller cards")
    hint: str = Field("", description="shown when VRAM is short, e.g. 'low VRAM: use Standard'")


class Preset(_Strict):
    schema_ref: str | None = Field(None, alias="$schema")
    name: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")]
    label: str
    description: str
    model_profile: str
    width: Width
    height: Height
    frames: Frames = Field(description="scene length when a scene gives neither duration nor frames")
    steps: Steps
    split_step: SplitStep | None = None
    cfg: Cfg
    sampler: str
    scheduler: str
    shift: Shift
    transition: Transition
    interpolation: Interpolation
    upscale: Upscale
    svi: SviFeature
    vram: Vram

    @field_validator("model_profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown model profile '{value}'; use one of: {', '.join(PROFILES)}")
        return value


class PresetError(ValueError):
    pass


def preset_json_schema() -> dict:
    """The JSON Schema of a preset file (committed as presets/preset.schema.json)."""
    schema = Preset.model_json_schema(by_alias=True)
    schema["$id"] = "gemdirect.preset/1"
    schema["title"] = "gemDirect preset"
    return schema


def load_preset(name: str, folder: str = PRESET_DIR) -> Preset:
    """Preset ``name`` from ``folder``; PresetError names the file and field on any problem."""
    if name not in available_presets(folder):
        raise PresetError(f"unknown preset '{name}'; available: {', '.join(available_presets(folder)) or 'none'}")
    path = os.path.join(folder, f"{name}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            preset = Preset.model_validate(json.load(handle))
    except (OSError, json.JSONDecodeError) as exc:
        raise PresetError(f"preset file {path} cannot be read: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{field_path(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise PresetError(f"preset file {path} is invalid: {problems}") from None
    if preset.name != name:
        raise PresetError(f"preset file {path} says name '{preset.name}'; rename one of them to match")
    return preset


def available_presets(folder: str = PRESET_DIR) -> list[str]:
    """Preset names found in ``folder``: the standard three first, then any others, sorted."""
    try:
        names = {f[:-5] for f in os.listdir(folder) if f.endswith(".json") and not f.endswith(".schema.json")}
    except OSError:
        return []
    return [n for n in PRESET_NAMES if n in names] + sorted(names - set(PRESET_NAMES))
