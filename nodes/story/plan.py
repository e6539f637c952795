"""Scene planning: from a validated story (+ preset) to the exact values each scene renders with.

Rules (documented in docs/story.md; each provider's in docs/providers.md):
- Frames: WAN takes 4n+1 frames (LTX-Video 8n+1, SVD any count: the profile's ``frame_step``).
  A duration of d seconds at f fps asks for d*f intervals, i.e.
  d*f + 1 frames; a frame count is taken as asked. Either is rounded to the nearest 4n+1 (halves
  round up), at least 5. 3.0 s at 16 fps -> 49; at 24 fps -> 73; 50 frames -> 49.
- Width/height: rounded to the nearest multiple of the model's size multiple (16 for 14B, 32 for
  5B), at least one multiple.
- CFG >= 6 warns (WAN 2.2 turns frames black); steps outside 12..20 warn; a scene longer than the
  model was trained for warns.
- Split step (two-expert WAN 2.2 14B: high-noise expert for steps 0..split, low-noise for the rest):
  the scene's ``split_step``, else the preset's, else the story's default, else half the steps
  (rounded, halves up: 20 -> 10, 15 -> 8). It must lie in 1..steps-1 (an error naming the field
  that set it); with 1 step there is no split and the default is 1 (the low-noise expert gets none).
- Other providers (the model profile's data): CFG and steps defaults and advice per model; SVD's fps
  is rounded to a whole number (its fps conditioning is an integer) and it takes a ``motion``
  (motion_bucket_id, default 127) but no prompt; SVD and LTX-Video start from an image and take no
  end image, so a chained scene's keyframe or a missing start image is warned about.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .load import LoadedFile, StoryError, StoryIssue, load_story, resolve_in_folder
from .model import Scene, Story, parse_fps, story_slug
from .presets import FROM_STORY, NO_PRESET, Preset, load_preset
from .profiles import DEFAULT_PROFILE, ModelProfile, get_profile

MIN_FRAMES = 5  # WAN's; other providers: their frame_step + 1
CFG_WARN = 6.0  # WAN's; each profile carries its own (profiles.py)
STEPS_ADVISED = (12, 20)
DEFAULT_NEGATIVE = (
    "blurry, low quality, jpeg artifacts, distorted, deformed, extra limbs, flicker, static frame, "
    "overexposed, washed out colours, text, watermark, subtitles"
)
DEFAULT_DURATION_FRAMES = 49
DEFAULT_CFG = 5.2
DEFAULT_STEPS = 16
DEFAULT_SHIFT = 8.0


@dataclass(frozen=True)
class LoraPlan:
    name: str
    strength: float
    expert: str = "both"  # high | low | both: which expert of a two-expert model it patches


@dataclass(frozen=True)
class ControlPlan:
    kind: str
    sequence: str  # absolute path of the zip of control frames
    strength: float


@dataclass(frozen=True)
class SviPlan:
    """Stable Video Infinity for one scene: continue from the previous scene's last latents with the SVI LoRAs."""

    enabled: bool
    motion_latent_count: int = 1
    lora_strength: float = 1.0
    source: str = "off"  # where ``enabled`` came from: scene | preset | defaults | off

    def fingerprint(self) -> dict[str, Any]:
        return {"MotionLatentCount": self.motion_latent_count, "LoraStrength": self.lora_strength}


SVI_OFF = SviPlan(False)
SVI_VRAM_GB = 0.6  # the HIGH/LOW rank-128 fp16 LoRA pair in VRAM beside the models (docs/svi.md)
SVI_PROFILES = ("wan22-i2v-14b",)  # the SVI 2.0 Pro LoRAs exist for WAN 2.2 I2V A14B


@dataclass(frozen=True)
class TransitionPlan:
    kind: str  # cut | crossfade | vace
    frames: int  # overlap with the next scene (0 for a cut)
    easing: str


@dataclass(frozen=True)
class ScenePlan:
    """Everything one scene renders with. The SCENE value that flows through the graph."""

    index: int  # 1-based position in play order
    id: str
    title: str
    story_id: str
    prompt: str
    negative: str
    seed: int
    cfg: float
    steps: int
    split_step: int  # two-expert models: high-noise expert for steps [0, split_step), low-noise after
    sampler: str
    scheduler: str
    shift: float
    width: int
    height: int
    length: int  # frames, 4n+1
    fps: Fraction
    duration_seconds: float  # length / fps
    keyframe: str | None  # absolute path inside the story's folder
    loras: tuple[LoraPlan, ...]
    control: ControlPlan | None
    transition: TransitionPlan  # to the next scene; a cut for the last scene
    chain: bool  # start from the previous scene's last frame (FLF2V)
    model_profile: str
    warnings: tuple[str, ...]
    next_scene: str | None = None  # id of the scene after this one in play order (None for the last)
    next_keyframe: str | None = None  # absolute path of the next scene's keyframe, if it has one
    motion: int | None = None  # SVD motion_bucket_id (1..1023); None for models without one
    svi: SviPlan = SVI_OFF  # Stable Video Infinity continuation (docs/svi.md)


@dataclass(frozen=True)
class PostPlan:
    interpolation: bool
    interpolation_method: str
    target_fps: Fraction | None
    upscale: bool
    upscale_factor: float
    upscale_method: str
    svi: bool


@dataclass(frozen=True)
class StoryPlan:
    story_id: str
    title: str
    logline: str
    directors_vision: str
    file: str
    story_dir: str
    preset: str  # preset name, or "none"
    model_profile: str
    scenes: tuple[ScenePlan, ...]
    post: PostPlan
    warnings: tuple[str, ...]  # story-level warnings; each scene carries its own

    @property
    def total_frames(self) -> int:
        """Frames of all scenes back to back (before transitions overlap them)."""
        return sum(scene.length for scene in self.scenes)

    @property
    def duration_seconds(self) -> float:
        return sum(scene.duration_seconds for scene in self.scenes)


@dataclass
class LoadedStory:
    """The STORY value: the validated file, its plan, and the dict as on disk."""

    plan: StoryPlan
    story: Story
    raw: dict[str, Any]
    path: str
    content_hash: str
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- rounding rules


def round_frames(frames: float, step: int = 4) -> int:
    """Nearest frame count step*n+1 (halves up), at least step+1. WAN (step 4): 50 -> 49, 51 -> 53;
    LTX-Video (step 8): 50 -> 49, 53 -> 57; SVD (step 1): any count, at least 2."""
    n = math.floor((frames - 1) / step + 0.5)
    return max(step * n + 1, step + 1)


def frames_for_duration(seconds: float, fps: Fraction | float, step: int = 4) -> int:
    """Frame count for ``seconds`` at ``fps``: WAN 3.0 s at 16 fps -> 49, at 24 fps -> 73."""
    return round_frames(float(seconds) * float(fps) + 1, step)


def round_to_multiple(value: int, multiple: int) -> int:
    """Nearest multiple of ``multiple`` (halves up), at least one multiple. 850 @16 -> 848."""
    return max(multiple, math.floor(value / multiple + 0.5) * multiple)


def stable_seed(story_id: str, scene_id: str) -> int:
    """A seed that depends only on the ids, so reordering scenes keeps each scene's look."""
    return zlib.crc32(f"{story_id}/{scene_id}".encode()) & 0xFFFFFFFF


# --------------------------------------------------------------------------- planning


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def default_split_step(steps: int) -> int:
    """Half the steps, rounded with halves up (20 -> 10, 15 -> 8), at least 1."""
    return max(1, (int(steps) + 1) // 2)


def _plan_svi(index: int, scene: Scene, story: Story, preset: Preset | None, profile: ModelProfile,
              warnings: list[str]) -> tuple[SviPlan, float | None]:
    """The scene's SVI plan and the CFG SVI asks for (None: leave the CFG alone). Layering as everywhere:
    the scene's ``svi``, then the preset's (when the preset turns SVI on), then the story's ``defaults.svi``."""
    where = f"scenes[{index - 1}].svi"
    # A preset turns SVI on (Cinematic); one with it off leaves the story's choice alone, so
    # ``defaults.svi: true`` works under Fast/Standard too.
    preset_svi = preset.svi if preset and preset.svi.enabled else None
    layers = [(scene.svi, "scene"), (preset_svi, "preset"), (story.defaults.svi, "defaults")]

    def pick(name: str) -> tuple[Any, str | None]:
        for layer, source in layers:
            value = getattr(layer, name, None) if layer is not None else None
            if value is not None:
                return value, source
        return None, None

    enabled, source = pick("enabled")
    if not enabled:
        return SVI_OFF, None
    plan = SviPlan(True, int(_first(pick("motion_latent_count")[0], 1)), float(_first(pick("lora_strength")[0], 1.0)),
                   source or "off")
    if profile.id not in SVI_PROFILES:
        warnings.append(f"{where}: the SVI LoRAs are made for WAN 2.2 I2V A14B, not {profile.label}; SVI Continue "
                        "holds the previous latents in the latent instead (continuation by overlap), see docs/svi.md")
    if index == 1:
        warnings.append(f"{where}: the first scene has no previous scene; it starts from its anchor")
    return plan, pick("cfg")[0]


def _plan_scene(
    index: int, scene: Scene, story: Story, preset: Preset | None, profile: ModelProfile, slug: str, story_dir: str
) -> tuple[ScenePlan, list[StoryIssue]]:
    d = story.defaults
    where = f"scenes[{index - 1}]"
    warnings: list[str] = []

    fps = parse_fps(_first(scene.fps, d.fps, profile.native_fps))
    if profile.whole_fps and fps.denominator != 1:
        whole = max(1, math.floor(fps + Fraction(1, 2)))
        fps_field = f"{where}.fps" if scene.fps is not None else "defaults.fps"
        warnings.append(f"{fps_field}: {float(fps):g} fps rounded to {whole} ({profile.label}'s fps conditioning "
                        "is a whole number)")
        fps = Fraction(whole)
    step = profile.frame_step
    if scene.frames is not None:
        asked = f"{scene.frames} frames"
        length = round_frames(scene.frames, step)
    else:
        seconds = _first(scene.duration, d.duration)
        if seconds is not None:
            asked = f"{seconds:g} s at {float(fps):g} fps"
            length = frames_for_duration(seconds, fps, step)
        else:
            frames = preset.frames if preset else DEFAULT_DURATION_FRAMES
            asked = f"{frames} frames (preset default)"
            length = round_frames(frames, step)
    if scene.frames is not None and length != scene.frames:
        warnings.append(f"{where}.frames: {asked} rounded to {length} ({profile.family} needs {profile.frame_rule})")
    if length > profile.trained_frames:
        warnings.append(
            f"{where}: {length} frames is longer than {profile.label} was trained for "
            f"({profile.trained_frames}); long clips loop or degrade, split the scene"
        )

    sizes = {}
    for axis, scene_value, default_value, preset_value, profile_value in (
        ("width", scene.width, d.width, preset.width if preset else None, profile.default_width),
        ("height", scene.height, d.height, preset.height if preset else None, profile.default_height),
    ):
        asked_size = _first(scene_value, preset_value, default_value, profile_value)
        sizes[axis] = round_to_multiple(asked_size, profile.size_multiple)
        if sizes[axis] != asked_size:
            warnings.append(
                f"{where}.{axis}: {asked_size} rounded to {sizes[axis]} "
                f"({profile.label} needs multiples of {profile.size_multiple})"
            )

    svi, svi_cfg = _plan_svi(index, scene, story, preset, profile, warnings)
    cfg = float(_first(scene.cfg, svi_cfg, preset.cfg if preset else None, d.cfg, profile.default_cfg))
    if cfg >= profile.cfg_warn:
        warnings.append(
            f"{where}.cfg = {cfg:g} is {profile.cfg_warn:g} or more; {profile.cfg_warn_reason} "
            f"(about {profile.default_cfg:g} is safe)"
        )
    steps = int(_first(scene.steps, preset.steps if preset else None, d.steps, profile.default_steps))
    low, high = profile.steps_advised
    if not low <= steps <= high:
        warnings.append(
            f"{where}.steps = {steps} is outside {low} to {high}; "
            "fewer looks unfinished, more rarely helps and costs time"
        )
    motion = _first(scene.motion, d.motion, profile.default_motion)
    if motion is not None and profile.default_motion is None:
        warnings.append(f"{where}.motion: {profile.label} has no motion input; motion is ignored "
                        "(it is SVD's motion_bucket_id)")
        motion = None

    issues: list[StoryIssue] = []
    split_step, split_field = _first(
        (scene.split_step, f"{where}.split_step") if scene.split_step is not None else None,
        (preset.split_step, f"presets/{preset.name}.json split_step")
        if preset and preset.split_step is not None else None,
        (d.split_step, "defaults.split_step") if d.split_step is not None else None,
        (default_split_step(steps), None))
    if split_field is not None and not 1 <= split_step <= steps - 1:
        scene_note = "" if split_field.startswith(where) else f" for {where} ('{scene.id}')"
        issues.append(StoryIssue(split_field, (
            f"{split_step} is outside 1..{steps - 1}{scene_note}, which has {steps} steps: the high-noise expert "
            f"runs steps 0 to split_step, the low-noise one the rest; use 1 to {steps - 1}, or leave split_step "
            f"out for half the steps ({default_split_step(steps)})")))
    keyframe = resolve_in_folder(story_dir, scene.keyframe, f"{where}.keyframe") if scene.keyframe else None
    chained = scene.chain and index > 1
    if not profile.end_image and chained and keyframe:
        warnings.append(f"{where}.keyframe: {profile.label} takes no end image; the scene starts on the previous "
                        "scene's last frame and its keyframe is not used (set chain to false to start from it)")
    if profile.provider != "wan" and not chained and not keyframe:
        warnings.append(f"{where}: {profile.label} makes video from a start image, and this scene has no keyframe "
                        "(it would start from mid-grey); give it a keyframe or chain it to the previous scene")
    control = None
    if scene.control:
        control = ControlPlan(
            scene.control.kind,
            resolve_in_folder(story_dir, scene.control.sequence, f"{where}.control.sequence"),
            scene.control.strength,
        )
    transition = _first(scene.transition, preset.transition if preset else None, d.transition)
    if transition is None or index == len(story.scenes):
        planned_transition = TransitionPlan("cut", 0, "linear")
    else:
        default_frames = preset.transition.frames if preset and preset.transition.frames else 8
        frames = 0 if transition.kind == "cut" else _first(transition.frames, default_frames)
        if transition.kind != "cut" and frames < 1:
            issues.append(StoryIssue(f"{where}.transition.frames", f"a {transition.kind} needs at least 1 frame"))
        planned_transition = TransitionPlan(transition.kind, int(frames), transition.easing)

    plan = ScenePlan(
        index=index,
        id=scene.id,
        title=scene.title or scene.id,
        story_id=slug,
        prompt=scene.prompt.strip(),
        negative=_first(scene.negative, d.negative, DEFAULT_NEGATIVE),
        seed=int(_first(scene.seed, d.seed, stable_seed(slug, scene.id))),
        cfg=cfg,
        steps=steps,
        split_step=int(split_step),
        sampler=_first(preset.sampler if preset else None, d.sampler, "euler"),
        scheduler=_first(preset.scheduler if preset else None, d.scheduler, "simple"),
        shift=float(_first(preset.shift if preset else None, d.shift, DEFAULT_SHIFT)),
        width=sizes["width"],
        height=sizes["height"],
        length=length,
        fps=fps,
        duration_seconds=length / float(fps),
        keyframe=keyframe,
        loras=tuple(LoraPlan(lora.name, lora.strength, lora.expert) for lora in scene.loras),
        control=control,
        transition=planned_transition,
        chain=chained,
        model_profile=profile.id,
        warnings=tuple(warnings),
        motion=None if motion is None else int(motion),
        svi=svi,
    )
    return plan, issues


def _check_transitions(scenes: list[ScenePlan]) -> list[StoryIssue]:
    """A transition overlaps two scenes: it cannot be longer than either of them."""
    issues = []
    for current, following in itertools.pairwise(scenes):
        overlap = current.transition.frames
        limit = min(current.length, following.length) - 1
        if overlap > limit:
            issues.append(StoryIssue(
                f"scenes[{current.index - 1}].transition.frames",
                f"{overlap} frames is longer than scene '{current.id}' ({current.length} frames) or "
                f"'{following.id}' ({following.length} frames) allows; use at most {limit}",
            ))
    return issues


def plan_story(loaded: LoadedFile, preset_choice: str = FROM_STORY) -> StoryPlan:
    """Plan every scene of ``loaded`` with the chosen preset ("from story", "none" or a name)."""
    story = loaded.story
    preset_name = story.defaults.preset if preset_choice == FROM_STORY else preset_choice
    preset = None
    if preset_name and preset_name != NO_PRESET:
        try:
            preset = load_preset(preset_name)
        except ValueError as exc:
            where = "defaults.preset" if preset_choice == FROM_STORY else "preset"
            raise StoryError(loaded.path, [StoryIssue(where, str(exc))]) from None
    profile = get_profile(_first(preset.model_profile if preset else None, story.defaults.model_profile,
                                 DEFAULT_PROFILE))
    slug = story_slug(story)
    scenes: list[ScenePlan] = []
    issues: list[StoryIssue] = []
    for index, scene in enumerate(story.scenes, start=1):
        plan, scene_issues = _plan_scene(index, scene, story, preset, profile, slug, loaded.story_dir)
        scenes.append(plan)
        issues.extend(scene_issues)
    issues.extend(_check_transitions(scenes))
    scenes = [dataclasses.replace(scene, next_scene=following.id, next_keyframe=following.keyframe)
              for scene, following in itertools.pairwise(scenes)] + scenes[-1:]
    if issues:
        raise StoryError(loaded.path, issues)
    story_warnings = list(loaded.warnings)
    if not profile.text_prompt:
        story_warnings.append(f"{profile.label} takes no text prompt: the scenes' prompts and negatives are recorded "
                              "but not used; motion comes from the start image and each scene's motion")
    elif not profile.negative_prompt:
        story_warnings.append(f"{profile.label} takes no negative prompt: the scenes' negatives are recorded but "
                              "not used")
    post = PostPlan(
        interpolation=bool(preset and preset.interpolation.enabled),
        interpolation_method=preset.interpolation.method if preset else "flow",
        target_fps=parse_fps(preset.interpolation.target_fps)
        if preset and preset.interpolation.enabled and preset.interpolation.target_fps else None,
        upscale=bool(preset and preset.upscale.enabled),
        upscale_factor=preset.upscale.factor if preset and preset.upscale.enabled else 1.0,
        upscale_method=preset.upscale.method if preset else "lanczos",
        svi=any(scene.svi.enabled for scene in scenes),
    )
    return StoryPlan(
        story_id=slug,
        title=story.title,
        logline=story.logline,
        directors_vision=story.directors_vision,
        file=loaded.path,
        story_dir=loaded.story_dir,
        preset=preset.name if preset else NO_PRESET,
        model_profile=profile.id,
        scenes=tuple(scenes),
        post=post,
        warnings=tuple(story_warnings),
    )


def load_and_plan(path: str | os.PathLike[str], preset_choice: str = FROM_STORY) -> LoadedStory:
    """Read, validate and plan a story file: the STORY value. StoryError names every problem."""
    loaded = load_story(path)
    plan = plan_story(loaded, preset_choice)
    return LoadedStory(
        plan=plan,
        story=loaded.story,
        raw=loaded.raw,
        path=loaded.path,
        content_hash=loaded.content_hash,
        warnings=list(plan.warnings) + [w for s in plan.scenes for w in s.warnings],
    )


def describe_plan(plan: StoryPlan) -> str:
    """The plan as a few readable lines (the loader's text output and the CLI)."""
    lines = [
        f"Story '{plan.title}' ({plan.story_id}): {len(plan.scenes)} scenes, preset {plan.preset}, "
        f"model {plan.model_profile}, {plan.duration_seconds:.2f} s before transitions",
    ]
    for s in plan.scenes:
        transition = s.transition.kind + (f" {s.transition.frames}f" if s.transition.frames else "")
        lines.append(
            f"  {s.index:>2}. {s.id:<16} {s.width}x{s.height} {s.length:>4} frames @ {float(s.fps):g} fps "
            f"({s.duration_seconds:.2f} s) seed={s.seed} cfg={s.cfg:g} steps={s.steps} split={s.split_step} "
            f"keyframe={'yes' if s.keyframe else 'no'} chain={'on' if s.chain else 'off'}"
            + (f" svi=on(m={s.svi.motion_latent_count}, lora={s.svi.lora_strength:g})" if s.svi.enabled else "")
            + f" -> {transition}"
        )
        if s.loras:
            lines.append("      loras: " + ", ".join(
                f"{lo.name} x{lo.strength:g}" + ("" if lo.expert == "both" else f" ({lo.expert})") for lo in s.loras))
        if s.control:
            lines.append(f"      control: {s.control.kind} from {os.path.basename(s.control.sequence)}")
    if plan.post.svi:
        count = sum(s.svi.enabled for s in plan.scenes)
        lines.append(f"  SVI: {count} scene(s) continue in latent space; the HIGH/LOW SVI LoRA pair adds about "
                     f"{SVI_VRAM_GB:g} GB of VRAM (low VRAM: set svi off or use Standard)")
    lines.append("  " + describe_post(plan.post))
    warnings = list(plan.warnings) + [w for s in plan.scenes for w in s.warnings]
    lines.extend(f"  WARNING: {w}" for w in warnings)
    return "\n".join(lines)


def describe_post(post: PostPlan) -> str:
    """The preset's post stages in one line, and which loader they need (Story Render uses them)."""
    interpolation = "off"
    if post.interpolation and post.target_fps:
        need = " (needs a RIFE file in RIFE Loader, else optical flow)" if post.interpolation_method == "rife" else ""
        interpolation = f"{post.interpolation_method} to {float(post.target_fps):g} fps{need}"
    upscale = "off"
    if post.upscale and post.upscale_factor != 1.0:
        need = " (needs a file in Upscale Model Loader, else Lanczos)" if post.upscale_method == "model" else ""
        upscale = f"{post.upscale_method} x{post.upscale_factor:g}{need}"
    return f"post: interpolation {interpolation}; upscale {upscale}"
