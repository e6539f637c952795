"""Staleness: which scenes of a run still show what the story asks for, and which must be rendered again.

Each scene of the story (in play order) is in one state:

- ``missing``: no record in the run (not rendered yet), or its video file is gone;
- ``failed``: recorded, but its render failed;
- ``stale``: rendered, but not from what the story asks for now:
  - its inputs changed since (prompt, negative, seed, cfg, steps, size, length, fps, LoRAs, keyframe
    file content, chain: the reasons name the fields), compared through the record's fingerprint
    (fingerprint.py);
  - it is chained and its start frame no longer matches its predecessor: the predecessor now is a
    different scene (a reorder), its saved last frame differs from the one this scene started on
    (recorded ``StartSha256``), or the scene fell back to its keyframe because the predecessor was
    not there then;
  - it is chained and its predecessor is itself stale, missing or failed (transitively);
- ``fresh``: none of the above.

:func:`regenerate_order` lists what to queue again: exactly the stale, missing and failed scenes,
in play order (a predecessor always before the scenes chained to it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..video.errors import VideoError
from . import fingerprint, ledger

FRESH, STALE, MISSING, FAILED = "fresh", "stale", "missing", "failed"
STATES = (FRESH, STALE, MISSING, FAILED)
SOURCE_PREVIOUS = "previous-scene"  # chain/start.py's FLF2VSource for a chained start


@dataclass(frozen=True)
class SceneState:
    """One scene's state in a run, and why (empty reasons for a fresh scene)."""

    scene: str
    state: str  # fresh | stale | missing | failed
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"scene": self.scene, "state": self.state, "reasons": list(self.reasons)}


def recorded_plans(run: ledger.Run) -> tuple[Any, ...]:
    """The run's story.json as recorded, planned again (with the run's preset and story folder)."""
    from ..story.load import StoryError, validate_story_dict
    from ..story.plan import plan_story

    info = ledger.story_info(run)
    try:
        raw = ledger._read_json(run.story_path)
        loaded = validate_story_dict(raw, info.file or run.story_path, info.story_dir or run.run_dir)
        return plan_story(loaded, info.preset or "none").scenes
    except (OSError, ValueError, StoryError) as exc:
        raise ledger.RunError(f"the story recorded in run {run.run_id} ({run.story_path}) cannot be planned again "
                              f"({exc}); pass the current story's scene plans instead") from exc


def _chain_facts(record: dict[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    """(start source, previous scene, Render fingerprint) of a record."""
    extra = record.get("Extra") or {}
    render = (extra.get("Fingerprint") or {}).get("Render") or {}
    source = render.get("StartSource") or (record.get("Telemetry") or {}).get("FLF2VSource")
    previous = render.get("PreviousScene") or (extra.get("Chain") or {}).get("PreviousScene")
    return source, previous, render


def _start_reasons(run: ledger.Run, plan: Any, record: dict[str, Any], previous: Any | None) -> list[str]:
    """Why a chained scene's start frame no longer matches its predecessor (empty when it does)."""
    _source, recorded_previous, _render = _chain_facts(record)
    if previous is None:
        return [f"started on the last frame of '{recorded_previous or 'its predecessor'}', but plays first now"]
    if recorded_previous is not None and recorded_previous != previous.id:
        return [f"started on the last frame of '{recorded_previous}', but '{previous.id}' plays before it now"]
    last_frame = ledger.scene_paths(run, previous.id).last_frame
    if not os.path.isfile(last_frame):
        return []  # the predecessor is missing: reported through its state
    try:
        same = fingerprint.starts_on(record, last_frame, plan.width, plan.height)
    except (OSError, ValueError, VideoError) as exc:
        return [f"the last frame of '{previous.id}' cannot be read ({exc})"]
    if same is False:
        return [f"'{previous.id}' changed since: its last frame is not the frame this scene started on"]
    if same:
        return []
    # A record from before start hashes were kept: a predecessor re-saved after this scene is a change.
    updated = (record.get("Video") or {}).get("UpdatedAt")
    previous_record = ledger.read_scene(run, previous.id) or {}
    previous_updated = (previous_record.get("Video") or {}).get("UpdatedAt")
    if updated and previous_updated and previous_updated > updated:
        return [f"'{previous.id}' was rendered again after this scene (no start hash recorded to compare)"]
    return []


def _state(run: ledger.Run, plan: Any, previous: Any | None, previous_state: SceneState | None) -> SceneState:
    record = ledger.read_scene(run, plan.id)
    if record is None:
        return SceneState(plan.id, MISSING, [f"not rendered in run {run.run_id}"])
    if record.get("Success") is not True:
        errors = "; ".join(str(e) for e in record.get("Errors") or []) or "no error recorded"
        return SceneState(plan.id, FAILED, [f"its render failed: {errors}"])
    video = (record.get("Video") or {}).get("Path")
    if not video or not os.path.isfile(ledger.resolve_in_run(run.run_dir, video)):
        return SceneState(plan.id, MISSING, [f"its video {video or '(none recorded)'} is gone"])

    now = fingerprint.plan_fingerprint(plan)
    reasons = fingerprint.plan_changes(fingerprint.plan_from_record(record), now)
    chain_changed = any(reason.startswith("chain ") for reason in reasons)
    source = _chain_facts(record)[0]
    fallback = (record.get("Telemetry") or {}).get("FLF2VFallback")
    if source == SOURCE_PREVIOUS:  # it started on its predecessor's last frame
        chained = previous is not None
        if not chain_changed:
            reasons += _start_reasons(run, plan, record, previous)
    elif plan.chain and previous is not None and fallback:  # chaining was asked for but fell back
        chained = True
        if not chain_changed:
            reasons.append(f"chained to '{previous.id}' but rendered from its {source or 'unknown'} start "
                           f"({fallback})")
    else:  # not chained (by the story, or Chain Start's chain set to off): its predecessor does not matter
        chained = False
    if chained and previous_state is not None and previous_state.state != FRESH:
        reasons.append(f"chained to '{previous.id}', which is {previous_state.state}")
    return SceneState(plan.id, STALE if reasons else FRESH, reasons)


def scene_states(run: ledger.Run, plans: Iterable[Any] | None = None) -> list[SceneState]:
    """Every scene's state in ``run``, in play order.

    plans: the current ScenePlans (``LoadedStory.plan.scenes``), in play order; None: the run's
    story.json as recorded, planned again (:func:`recorded_plans`).
    """
    plans = list(recorded_plans(run) if plans is None else plans)
    states: list[SceneState] = []
    for position, plan in enumerate(plans):
        previous = plans[position - 1] if position > 0 else None
        states.append(_state(run, plan, previous, states[-1] if states else None))
    return states


def regenerate_order(states: Sequence[SceneState]) -> list[str]:
    """Scene ids to queue again: exactly the stale, missing and failed scenes, in play order."""
    return [state.scene for state in states if state.state != FRESH]


def stale_warning(state: SceneState) -> str:
    """The warning for one stale scene (report, telemetry, UI)."""
    return (f"scene '{state.scene}' is stale: {'; '.join(state.reasons)}; re-render it (the panel's Regenerate "
            "stale) to bring the film up to date")


def describe(states: Sequence[SceneState]) -> str:
    """One line: ``a fresh, b stale, c missing``."""
    return ", ".join(f"{state.scene} {state.state}" for state in states)
