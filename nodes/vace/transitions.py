"""VACE transitions in the run ledger: which pairs a story joins by VACE, their files, records and freshness.

A transition between scenes A and B lives in ``transitions/`` of the run, named by both ids::

    transitions/<a>--<b>.mkv         the lossless master Story Render reads (or <a>--<b>_frames/ PNGs)
    transitions/<a>--<b>.mp4         the H.264 preview people watch
    transitions/<a>--<b>.json        the record (``gemdirect.transition/1``): layout, settings, colour
                                     report, models, and a fingerprint of each scene as it was used

``transition_index`` (VACE Prep) counts the story's ``vace`` transitions in play order (1-based),
so ComfyUI's batch count with the index on ``increment`` makes every one of them.

A transition is ``fresh`` when both scenes are fresh (freshness.py) and each is still the render it
was made from (its record's attempt, update time and the boundary frame's hash: A's last, B's first
frame); ``stale`` otherwise, with reasons; ``missing`` without a record or master.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..paths import file_sha256
from ..run import events, freshness, ledger
from ..run.atomic import atomic_write_json
from ..run.lock import run_lock

SCHEMA = "gemdirect.transition/1"
VACE = "vace"
EVENT = "gemdirect.transition"  # websocket event: one per recorded transition
TRANSITION_RECORDED = "transition_recorded"  # events.jsonl
FRESH, STALE, MISSING = "fresh", "stale", "missing"


class TransitionError(ValueError):
    """A transition cannot be prepared or recorded; the message names the field and the fix."""


@dataclass(frozen=True)
class TransitionPaths:
    record: str
    video: str
    master: str
    master_frames: str


@dataclass(frozen=True)
class TransitionState:
    """One VACE transition's state in a run, and why (empty reasons when fresh)."""

    index: int  # its transition_index (1-based among the story's vace transitions)
    from_scene: str
    to_scene: str
    state: str  # fresh | stale | missing
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "from": self.from_scene, "to": self.to_scene, "state": self.state,
                "reasons": list(self.reasons)}


def transition_paths(run: ledger.Run, from_id: str, to_id: str) -> TransitionPaths:
    preview = ledger.transition_path(run, from_id, to_id)
    stem = preview[: -len(".mp4")]
    return TransitionPaths(f"{stem}.json", preview, f"{stem}.mkv", f"{stem}_frames")


def vace_pairs(plans: Sequence[Any]) -> list[tuple[Any, Any]]:
    """(A, B) ScenePlans of every ``vace`` transition in play order (the last scene's transition is a cut)."""
    return [(a, b) for a, b in itertools.pairwise(plans) if a.transition.kind == VACE]


def pick_pair(plans: Sequence[Any], transition_index: int) -> tuple[Any, Any]:
    """The ``transition_index``-th (1-based) VACE pair; TransitionError says the valid range otherwise."""
    pairs = vace_pairs(plans)
    if not pairs:
        raise TransitionError(
            "transition_index: the story has no vace transition; set a scene's transition to "
            '{"kind": "vace", "frames": 8} in story.json (it joins that scene to the next)')
    if not 1 <= int(transition_index) <= len(pairs):
        listed = ", ".join(f"{i}: {a.id} -> {b.id}" for i, (a, b) in enumerate(pairs, 1))
        raise TransitionError(
            f"transition_index {transition_index} is outside 1..{len(pairs)} (the story's vace transitions: "
            f"{listed}); with 'increment', set the batch count to {len(pairs)}")
    return pairs[int(transition_index) - 1]


# --------------------------------------------------------------------------- scene fingerprints


def scene_fingerprint(run: ledger.Run, scene_id: str, side: str) -> dict[str, Any]:
    """What identifies scene ``scene_id``'s render as a transition used it (``side``: ``from`` or ``to``).

    ``PlanSha256`` (its plan fingerprint), ``AttemptsRun`` and ``UpdatedAt`` (which render), and the
    sha256 of the boundary frame file (A's ``_last.png``, B's ``_first.png``).
    """
    record = ledger.read_scene(run, scene_id) or {}
    paths = ledger.scene_paths(run, scene_id)
    frame = paths.last_frame if side == "from" else paths.first_frame
    fingerprint = (record.get("Extra") or {}).get("Fingerprint") or {}
    return {"SceneId": scene_id, "PlanSha256": fingerprint.get("PlanSha256"),
            "AttemptsRun": record.get("AttemptsRun"), "UpdatedAt": (record.get("Video") or {}).get("UpdatedAt"),
            "FrameSha256": file_sha256(frame) if os.path.isfile(frame) else None}


# --------------------------------------------------------------------------- reading the scenes


def scene_frames(run: ledger.Run, scene_id: str) -> tuple[Any, Any, str]:
    """Scene ``scene_id``'s frames [T,H,W,3] float32 torch (from its master, else its preview), its fps and
    where they came from; TransitionError when the scene is not usable."""
    import torch

    from ..render.join import _scene_source
    from ..video.master import iter_source_frames, probe_source

    _record, path, source, problem = _scene_source(run, scene_id)
    if problem:
        raise TransitionError(f"scene '{scene_id}' is {problem}; render it first (scenes before transitions)")
    info = probe_source(path)
    frames = torch.cat(list(iter_source_frames(path, 16)))
    return frames, info.fps, source


def chained_pair(run: ledger.Run, from_id: str, to_id: str) -> tuple[bool, str | None]:
    """Whether B started on A's saved last frame as it is now (the render's chain proof)."""
    from ..render.join import chain_proof

    record = ledger.read_scene(run, to_id)
    return chain_proof(run, from_id, record) if record else (False, None)


# --------------------------------------------------------------------------- records


def read_transition(run: ledger.Run, from_id: str, to_id: str) -> dict[str, Any] | None:
    path = transition_paths(run, from_id, to_id).record
    try:
        value = ledger._read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ledger.RunError(f"{path} cannot be read ({exc}); make the transition again") from exc
    return value if isinstance(value, dict) else None


def record_transition(run: ledger.Run, from_id: str, to_id: str, clip: Any, fps: Any, *,
                      layout: Mapping[str, Any], settings: Mapping[str, Any], colour: Mapping[str, Any],
                      models: Sequence[str] = (), warnings: Sequence[str] = (), index: int | None = None,
                      progress: Any = None) -> dict[str, Any]:
    """Write transition A -> B: master (lossless), preview MP4 and record; returns the record.

    clip: the transition clip [length,H,W,3] float 0..1 (splice.transition_clip). layout: the
    TransitionLayout's JSON; settings: the Prep/Splice widgets; colour: the ColourReport's JSON.
    Each file is written atomically; the record last, under the run's lock, so a reader sees either
    the previous transition or this one.
    """
    from ..chain.save import keep_master
    from ..video.encode import encode_video

    known = ledger.story_info(run).scene_ids
    for scene_id in (from_id, to_id):
        if scene_id not in known:
            raise TransitionError(f"scene '{scene_id}' is not in the story of run {run.run_id}")
    paths = transition_paths(run, from_id, to_id)
    os.makedirs(run.transitions_dir, exist_ok=True)
    video = encode_video(paths.video, clip, fps)
    master_paths = ledger.ScenePaths(paths.record, paths.video, "", "", paths.master, paths.master_frames)
    master, _note = keep_master(run, master_paths, clip, fps, True, progress=progress)
    previous = read_transition(run, from_id, to_id) or {}
    record = {
        "Schema": SCHEMA, "From": from_id, "To": to_id, "TransitionIndex": index,
        "Frames": int(video.frames), "FPS": str(video.fps), "Resolution": f"{video.width}x{video.height}",
        "Video": {"Path": ledger.relative_path(run, paths.video), "Master": master},
        "Layout": dict(layout), "Settings": dict(settings), "ColorMatch": dict(colour),
        "Models": list(models), "Warnings": list(warnings),
        "Fingerprint": {"From": scene_fingerprint(run, from_id, "from"), "To": scene_fingerprint(run, to_id, "to")},
        "AttemptsRun": int(previous.get("AttemptsRun") or 0) + 1, "UpdatedAt": events.utc_now(),
    }
    with run_lock(run.run_dir):
        atomic_write_json(paths.record, record)
        events.append_event(run.run_dir, TRANSITION_RECORDED, transition=f"{from_id}--{to_id}",
                            frames=record["Frames"], master=master)
    return record


# --------------------------------------------------------------------------- freshness


def _fingerprint_reasons(run: ledger.Run, record: Mapping[str, Any]) -> list[str]:
    reasons = []
    recorded = record.get("Fingerprint") or {}
    for side in ("from", "to"):
        then = recorded.get(side.title()) or {}
        scene_id = then.get("SceneId") or record.get(side.title())
        now = scene_fingerprint(run, scene_id, side)
        keys = ("PlanSha256", "AttemptsRun", "UpdatedAt", "FrameSha256")
        changed = [key for key in keys if then.get(key) != now[key]]
        if changed:
            frame = "last" if side == "from" else "first"
            reasons.append(f"'{scene_id}' was rendered again since the transition was made "
                           f"({'its ' + frame + ' frame changed' if 'FrameSha256' in changed else ', '.join(changed)})")
    return reasons


def transition_state(run: ledger.Run, index: int, a: Any, b: Any,
                     scenes: Mapping[str, freshness.SceneState]) -> TransitionState:
    """The state of transition ``a`` -> ``b`` (ScenePlans); ``scenes``: the run's SceneStates by id."""
    record = read_transition(run, a.id, b.id)
    paths = transition_paths(run, a.id, b.id)
    if record is None:
        return TransitionState(index, a.id, b.id, MISSING, [f"not made in run {run.run_id}"])
    master = (record.get("Video") or {}).get("Master")
    if not master or not os.path.exists(ledger.resolve_in_run(run.run_dir, master)):
        return TransitionState(index, a.id, b.id, MISSING,
                               [f"its master {master or ledger.relative_path(run, paths.master)} is gone"])
    reasons = [f"'{scene}' is {scenes[scene].state}" for scene in (a.id, b.id)
               if scene in scenes and scenes[scene].state != freshness.FRESH]
    reasons += _fingerprint_reasons(run, record)
    return TransitionState(index, a.id, b.id, STALE if reasons else FRESH, reasons)


def transition_states(run: ledger.Run, plans: Iterable[Any] | None = None,
                      scenes: Sequence[freshness.SceneState] | None = None) -> list[TransitionState]:
    """Every VACE transition's state in ``run``, in play order (plans: the story's ScenePlans now; None: the
    run's recorded story). ``scenes``: the SceneStates when already computed."""
    plans = list(freshness.recorded_plans(run) if plans is None else plans)
    by_id = {state.scene: state for state in (scenes if scenes is not None else freshness.scene_states(run, plans))}
    return [transition_state(run, index, a, b, by_id) for index, (a, b) in enumerate(vace_pairs(plans), 1)]


def regenerate_transitions(states: Sequence[TransitionState]) -> list[int]:
    """transition_index values to queue again: exactly the stale and missing transitions, in play order."""
    return [state.index for state in states if state.state != FRESH]
