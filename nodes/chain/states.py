"""The ``gemdirect.scene`` websocket event: one message per state change of a scene.

States, in the order a scene goes through them:

- ``queued``: the scene's prompt reached Chain Start (run and scene known, start image being resolved);
- ``rendering``: Chain Start handed the start image on; the sampler runs next (payload carries
  ``source``, ``fallback``, ``flf2v_end``, ``end_note``, ``end_warning``, ``report``);
- ``saving``: Scene Save received the frames and is encoding, measuring and recording;
- ``done``: the scene's files and record are written (payload carries video, bookend, drift,
  ``flf2v_end`` and ``start_match``: the record's ``Telemetry.StartMatch`` {PSNR, SSIM, Verdict,
  Threshold} or None, what the panel's seam badge shows);
- ``failed``: saving failed (payload carries ``error``); the record says so too.

Payload: ``state``, ``run_id``, ``story_id``, ``scene`` (id), ``index`` (1-based), ``time`` (UTC ISO),
plus state-specific fields. Sent through ``nodes/comfy.py`` (ComfyUI's PromptServer, or the standalone
listeners in tests and the CLI).
"""

from __future__ import annotations

from typing import Any

from .. import comfy
from ..run.events import utc_now

EVENT = "gemdirect.scene"
QUEUED, RENDERING, SAVING, DONE, FAILED = "queued", "rendering", "saving", "done", "failed"
STATES = (QUEUED, RENDERING, SAVING, DONE, FAILED)


def send_scene_state(run: Any, scene: Any, state: str, **details: Any) -> dict[str, Any]:
    """Send one ``gemdirect.scene`` event for ``scene`` (a SCENE) in ``run`` (a RUN); returns the payload."""
    if state not in STATES:
        raise ValueError(f"scene state {state!r} is not one of {', '.join(STATES)}")
    payload = {"state": state, "run_id": run.run_id, "story_id": run.story_id, "scene": scene.id,
               "index": getattr(scene, "index", None), "time": utc_now(), **details}
    comfy.send_event(EVENT, payload)
    return payload
