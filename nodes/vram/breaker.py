"""The run's circuit breaker: repeated failed scenes stop further attempts for a while.

gemDirect1's queue health rules (TELEMETRY.md, "Queue health"): 3 consecutive failures open the
circuit; it closes after 30 s or a reset. States, from the count of consecutive failures:

- ``healthy``: no failure since the last success (or reset);
- ``degraded``: 1 or 2 consecutive failures;
- ``circuit-open``: 3 or more, and the last of them less than 30 s ago: the guard stops the prompt;
- ``failing``: 3 or more, but the 30 s have passed: the circuit is closed again and one attempt may
  run; a success makes it ``healthy``, another failure opens it again at once.

The state lives in the run folder as ``breaker.json`` (written atomically); every change is also an
event in ``events.jsonl``. Each change reads the file, changes it and writes it back while holding
the run's lock (run/lock.py), so two processes counting failures at once lose none. Time is passed
in (``now``: seconds since the epoch), so the state machine is tested without sleeping.

How failures are known: the guard counts its own blocks at once. When it lets a scene pass it
*arms* the breaker with the prompt id; the next guard call from another prompt *settles* it from
ComfyUI's history (the prompt's error or success), or, when ComfyUI has forgotten it, from the
ledger (``scene_recorded`` events after the attempt). Interrupted prompts count neither way.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..run.atomic import atomic_write_json
from ..run.events import append_event, read_events, utc_now
from ..run.lock import run_lock

BREAKER_FILE = "breaker.json"
SCHEMA = "gemdirect.breaker/1"
FAILURE_THRESHOLD = 3
COOLDOWN_S = 30.0

HEALTHY, DEGRADED, FAILING, CIRCUIT_OPEN = "healthy", "degraded", "failing", "circuit-open"
STATES = (HEALTHY, DEGRADED, FAILING, CIRCUIT_OPEN)

# events.jsonl kinds
EVENT_FAILURE = "breaker_failure"
EVENT_SUCCESS = "breaker_success"
EVENT_OPENED = "breaker_opened"
EVENT_RESET = "breaker_reset"


@dataclass(frozen=True)
class Breaker:
    """The breaker of one run. Times are seconds since the epoch."""

    consecutive_failures: int = 0
    opened_at: float | None = None  # when the circuit last opened
    last_failure: str = ""  # what failed last, for the message
    last_failure_at: float | None = None
    last_success_at: float | None = None
    pending_scene: str | None = None  # an attempt the guard let pass and whose outcome is not known yet
    pending_prompt: str | None = None
    pending_since: float | None = None
    threshold: int = FAILURE_THRESHOLD
    cooldown_s: float = COOLDOWN_S

    def state(self, now: float) -> str:
        if self.consecutive_failures <= 0:
            return HEALTHY
        if self.consecutive_failures < self.threshold:
            return DEGRADED
        if self.opened_at is not None and now - self.opened_at < self.cooldown_s:
            return CIRCUIT_OPEN
        return FAILING

    def retry_in_s(self, now: float) -> float:
        """Seconds until an open circuit closes (0 when it is not open)."""
        if self.state(now) != CIRCUIT_OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (now - self.opened_at))

    def failure(self, what: str, now: float) -> Breaker:
        count = self.consecutive_failures + 1
        opened = now if count >= self.threshold else self.opened_at
        return replace(self, consecutive_failures=count, opened_at=opened, last_failure=what, last_failure_at=now,
                       pending_scene=None, pending_prompt=None, pending_since=None)

    def success(self, now: float) -> Breaker:
        return replace(self, consecutive_failures=0, opened_at=None, last_success_at=now,
                       pending_scene=None, pending_prompt=None, pending_since=None)

    def reset(self) -> Breaker:
        return Breaker(threshold=self.threshold, cooldown_s=self.cooldown_s)

    def arm(self, scene: str | None, prompt_id: str | None, now: float) -> Breaker:
        return replace(self, pending_scene=scene, pending_prompt=prompt_id, pending_since=now)

    def describe(self, now: float) -> dict[str, Any]:
        """The breaker as JSON for the health route and the panel."""
        return {"state": self.state(now), "consecutive_failures": self.consecutive_failures,
                "threshold": self.threshold, "cooldown_s": self.cooldown_s,
                "retry_in_s": round(self.retry_in_s(now), 1), "last_failure": self.last_failure or None,
                "opened_at": _iso(self.opened_at), "last_failure_at": _iso(self.last_failure_at),
                "last_success_at": _iso(self.last_success_at)}

    def message(self, now: float) -> str:
        """Why an open circuit stops the prompt, and what to do."""
        return (f"circuit breaker open: {self.consecutive_failures} consecutive failed scenes in this run "
                f"(last: {self.last_failure or 'unknown'}); it closes in {self.retry_in_s(now):.0f} s, "
                "or reset it (reset_breaker on the VRAM Guard, or the panel) after fixing the cause")


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# --------------------------------------------------------------------------- on disk


def breaker_path(run_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(run_dir), BREAKER_FILE)


def load(run_dir: str | os.PathLike[str]) -> Breaker:
    """The run's breaker; a missing or unreadable file reads as healthy (a reset, in effect)."""
    try:
        with open(breaker_path(run_dir), encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError):
        return Breaker()
    if not isinstance(value, dict):
        return Breaker()
    known = {key: value[key] for key in Breaker.__dataclass_fields__ if key in value}
    try:
        return Breaker(**known)
    except TypeError:
        return Breaker()


def _under_run_lock(change: Callable[..., Breaker]) -> Callable[..., Breaker]:
    """Run a read-modify-write of breaker.json while holding the run's lock (re-entrant)."""
    @functools.wraps(change)
    def locked(run_dir: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Breaker:
        with run_lock(run_dir):
            return change(run_dir, *args, **kwargs)
    return locked


def save(run_dir: str | os.PathLike[str], breaker: Breaker, now: float) -> None:
    value = {"schema": SCHEMA, "state": breaker.state(now), "updated_at": utc_now(), **asdict(breaker)}
    atomic_write_json(breaker_path(run_dir), value)


@_under_run_lock
def record_failure(run_dir: str | os.PathLike[str], what: str, *, scene: str | None = None,
                   now: float | None = None) -> Breaker:
    """Count one failed scene (``what`` says how it failed); opens the circuit at the threshold."""
    now = time.time() if now is None else now
    before = load(run_dir)
    after = before.failure(what, now)
    save(run_dir, after, now)
    append_event(run_dir, EVENT_FAILURE, scene=scene, what=what, consecutive_failures=after.consecutive_failures,
                 state=after.state(now))
    if after.state(now) == CIRCUIT_OPEN:
        append_event(run_dir, EVENT_OPENED, scene=scene, consecutive_failures=after.consecutive_failures,
                     cooldown_s=after.cooldown_s)
    return after


@_under_run_lock
def record_success(run_dir: str | os.PathLike[str], *, scene: str | None = None, now: float | None = None) -> Breaker:
    """A scene finished: the count of consecutive failures starts again from 0."""
    now = time.time() if now is None else now
    before = load(run_dir)
    after = before.success(now)
    save(run_dir, after, now)
    if before.consecutive_failures or before.pending_scene is not None:
        append_event(run_dir, EVENT_SUCCESS, scene=scene, state=after.state(now))
    return after


@_under_run_lock
def reset(run_dir: str | os.PathLike[str], *, reason: str = "reset", now: float | None = None) -> Breaker:
    """Clear the breaker (the panel's reset, or reset_breaker on the guard)."""
    now = time.time() if now is None else now
    before = load(run_dir)
    after = before.reset()
    save(run_dir, after, now)
    append_event(run_dir, EVENT_RESET, reason=reason, was=before.state(now),
                 consecutive_failures=before.consecutive_failures)
    return after


@_under_run_lock
def arm(run_dir: str | os.PathLike[str], scene: str | None, prompt_id: str | None, *,
        now: float | None = None) -> Breaker:
    """Remember the attempt the guard just let pass, to learn its outcome on the next call."""
    now = time.time() if now is None else now
    after = load(run_dir).arm(scene, prompt_id, now)
    save(run_dir, after, now)
    return after


# (status, message) of a finished prompt, or None when unknown: nodes/comfy.py prompt_outcome.
OutcomeLookup = Callable[[str], Any]


def _recorded_outcome(run_dir: str | os.PathLike[str], scene: str | None, since: float) -> bool | None:
    """True/False if the ledger recorded ``scene`` (success or not) after ``since``; None if it did not."""
    if scene is None:
        return None
    found = None
    since_iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since))
    for event in read_events(run_dir).of_kind("scene_recorded"):
        if event.get("scene") == scene and str(event.get("time", "")) >= since_iso:
            found = bool(event.get("success"))
    return found


@_under_run_lock
def settle(run_dir: str | os.PathLike[str], prompt_id: str | None, outcome: OutcomeLookup | None = None, *,
           now: float | None = None) -> Breaker:
    """Learn how the armed attempt ended, if it belongs to another prompt than ``prompt_id``.

    ``outcome(prompt_id)`` returns an object with ``status`` (``success``/``error``/``interrupted``) and
    ``message``, or None if unknown; without an answer, the ledger's scene records decide, and with no
    record either the attempt is dropped uncounted (a graph without Scene Save cannot tell).
    """
    now = time.time() if now is None else now
    breaker = load(run_dir)
    pending_prompt, scene = breaker.pending_prompt, breaker.pending_scene
    if breaker.pending_since is None or (prompt_id is not None and pending_prompt == prompt_id):
        return breaker
    result = outcome(pending_prompt) if (outcome is not None and pending_prompt) else None
    status = getattr(result, "status", None)
    if status == "error":
        return record_failure(run_dir, f"scene {scene or '?'}: {getattr(result, 'message', '') or 'the prompt failed'}",
                              scene=scene, now=now)
    if status == "success":
        return record_success(run_dir, scene=scene, now=now)
    if status is None:
        recorded = _recorded_outcome(run_dir, scene, breaker.pending_since)
        if recorded is True:
            return record_success(run_dir, scene=scene, now=now)
        if recorded is False:
            return record_failure(run_dir, f"scene {scene} was recorded as failed", scene=scene, now=now)
    cleared = replace(breaker, pending_scene=None, pending_prompt=None, pending_since=None)
    save(run_dir, cleared, now)
    return cleared
