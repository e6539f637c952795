"""The farm's progress in the panel: a ComfyUI the user watches relays the coordinator's scene states to its
clients as the ``gemdirect.scene`` websocket events the timeline badges already follow.

The coordinator (``--panel URL``) posts ``{"run_id", "story_id", "scene", "index", "state", "worker"}`` to
``POST /gemdirect/farm/scene`` on that ComfyUI; the route checks it (:func:`scene_event`) and sends it
on (:func:`relay`). States are the badges' own (queued | rendering | done | failed). Imports no Ray:
it runs inside ComfyUI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import comfy
from ..chain import states
from ..run import ledger
from ..run.events import utc_now

ROUTE = "/gemdirect/farm/scene"
# farm_job states -> the badge's scene state
BADGE_STATE = {"queued": states.QUEUED, "started": states.RENDERING, "done": states.DONE, "failed": states.FAILED,
               "lost": states.QUEUED}


def scene_event(body: Any) -> dict[str, Any]:
    """The ``gemdirect.scene`` payload for a posted farm state; ValueError names the bad field."""
    if not isinstance(body, Mapping):
        raise ValueError('the body must be a JSON object {"run_id", "story_id", "scene", "index", "state", "worker"}')
    ledger.check_run_id(body.get("run_id"))
    ledger.check_story_id(body.get("story_id"))
    ledger.check_scene_id(body.get("scene"))
    index = body.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 1:
        raise ValueError(f"index {index!r} is not a scene position (1, 2, ...)")
    state = body.get("state")
    if state not in states.STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(states.STATES)}")
    worker = body.get("worker")
    if worker is not None and (not isinstance(worker, str) or len(worker) > 200):
        raise ValueError("worker must be a worker's name (a string of at most 200 characters)")
    payload = {"state": state, "run_id": body["run_id"], "story_id": body["story_id"], "scene": body["scene"],
               "index": index, "time": utc_now(), "farm": True, "worker": worker}
    if state == states.FAILED:
        payload["error"] = str(body.get("error") or "failed on the farm")[:2000]
    return payload


def relay(body: Any) -> dict[str, Any]:
    """Check ``body`` and send it to this ComfyUI's clients as a ``gemdirect.scene`` event; returns the payload."""
    payload = scene_event(body)
    comfy.send_event(states.EVENT, payload)
    return payload


async def farm_scene_handler(request: Any) -> Any:
    from aiohttp import web

    try:
        body = await request.json()
    except Exception:
        return web.json_response({"error": "the body must be JSON"}, status=400)
    try:
        return web.json_response({"sent": relay(body)})
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)


def post_state(panels: list[str], run: ledger.Run, scene: str, index: int, farm_state: str, worker: str | None,
               error: str | None = None) -> list[str]:
    """Post one scene's farm state to every panel ComfyUI; returns the problems (a panel is for display only)."""
    import requests

    body = {"run_id": run.run_id, "story_id": run.story_id, "scene": scene, "index": index,
            "state": BADGE_STATE[farm_state], "worker": worker, "error": error}
    problems = []
    for url in panels:
        try:
            response = requests.post(url.rstrip("/") + ROUTE, json=body, timeout=5)
            if response.status_code != 200:
                problems.append(f"panel {url}: HTTP {response.status_code} {response.text[:200]}")
        except requests.RequestException as exc:
            problems.append(f"panel {url}: {exc}")
    return problems
