"""gemDirect's HTTP API for the panel, on ComfyUI's server.

Routes live under ``/gemdirect/``; ComfyUI serves every route it knows also under ``/api/``
(``PromptServer.add_routes`` mirrors them), so ``/api/gemdirect/health`` answers too. JSON in, JSON
out, a clear 4xx on bad input, and never a path outside ComfyUI's output folder.

- ``GET /gemdirect/health``: device, VRAM, the newest run's circuit breaker, ComfyUI's queue length,
  warnings. Fast and without side effects; a probe that fails makes its part ``unknown`` with the
  reason, never a 500. ``?min_free_mb=`` overrides the 4096 MB minimum.
- ``POST /gemdirect/breaker/reset`` ``{"run_dir": "gemdirect/<story>/<run-id>"}``: clear a run's breaker.

The engine (:func:`health_report`, :func:`reset_breaker`) runs without ComfyUI; :func:`register`
adds the handlers to ComfyUI's PromptServer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from . import comfy
from .version import pack_version
from .vram import breaker as breakers
from .vram.probe import MB, VramReading, read_vram

log = logging.getLogger("gemdirect")

SCHEMA = "gemdirect.health/1"
MIN_FREE_MB = 4096  # gemDirect1's queue health: below this much free VRAM, generation was held back
RUNS_FOLDER = "gemdirect"
# Worst first: the overall status is the worst part's.
SEVERITY = ("circuit-open", "failing", "unknown", "degraded", "healthy")


class RouteError(ValueError):
    """Bad input to a route; becomes a 4xx with the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _worst(*states: str) -> str:
    return min(states, key=lambda state: SEVERITY.index(state) if state in SEVERITY else 0)


def runs_root() -> str:
    return os.path.join(comfy.output_directory(), RUNS_FOLDER)


def newest_breaker_run(root: str | None = None) -> str | None:
    """The run folder (``<root>/<story>/<run-id>``) whose breaker.json changed last, or None."""
    root = root or runs_root()
    newest, newest_time = None, -1.0
    try:
        stories = [entry for entry in os.scandir(root) if entry.is_dir()]
    except OSError:
        return None
    for story in stories:
        try:
            runs = [entry for entry in os.scandir(story.path) if entry.is_dir()]
        except OSError:
            continue
        for run in runs:
            try:
                changed = os.stat(os.path.join(run.path, breakers.BREAKER_FILE)).st_mtime
            except OSError:
                continue
            if changed > newest_time:
                newest, newest_time = run.path, changed
    return newest


def _device_part(probe: Callable[[], VramReading], min_free_mb: float, warnings: list[str]) -> tuple[dict, str]:
    try:
        reading = probe()
    except Exception as exc:  # no device, broken driver, ComfyUI mid-shutdown: report, never fail
        reason = f"{type(exc).__name__}: {exc}"
        warnings.append(f"device unreadable: {reason}")
        return {"status": "unknown", "reason": reason}, "unknown"
    device = reading.to_json()
    free_mb = reading.free / MB
    low = free_mb < min_free_mb
    device["status"] = "low" if low else "ok"
    device["min_free_mb"] = min_free_mb
    if low:
        warnings.append(f"only {free_mb:.0f} MB free on {reading.name}, below the {min_free_mb:.0f} MB minimum "
                        "(unload models or close programs using the GPU)")
    return device, "degraded" if low else "healthy"


def _breaker_part(run_dir: str | None, now: float, warnings: list[str]) -> tuple[dict, str]:
    if run_dir is None:
        return {"state": "healthy", "run": None, "note": "no run has a breaker yet"}, "healthy"
    try:
        breaker = breakers.load(run_dir)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        warnings.append(f"breaker unreadable: {reason}")
        return {"state": "unknown", "reason": reason}, "unknown"
    part = breaker.describe(now)
    part["run"] = os.path.relpath(run_dir, comfy.output_directory()).replace(os.sep, "/")
    state = part["state"]
    if state == breakers.CIRCUIT_OPEN:
        warnings.append(f"circuit breaker open for {part['run']}: {breaker.message(now)}")
    elif state in (breakers.DEGRADED, breakers.FAILING):
        warnings.append(f"{breaker.consecutive_failures} consecutive failed scene(s) in {part['run']} "
                        f"(last: {breaker.last_failure or 'unknown'})")
    return part, state


def _queue_part(queue: Callable[[], comfy.QueueLength | None], warnings: list[str]) -> dict | None:
    try:
        length = queue()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        warnings.append(f"queue unreadable: {reason}")
        return {"status": "unknown", "reason": reason}
    if length is None:
        return None
    return {"running": length.running, "pending": length.pending, "length": length.running + length.pending}


def health_report(*, probe: Callable[[], VramReading] | None = None,
                  breaker_run: Callable[[], str | None] | None = None,
                  queue: Callable[[], comfy.QueueLength | None] | None = None,
                  min_free_mb: float = MIN_FREE_MB, now: float | None = None) -> dict[str, Any]:
    """The health document. Each part degrades to ``unknown`` with a ``reason`` instead of raising.

    ``status`` is the worst of: the breaker's state (healthy/degraded/failing/circuit-open), the
    device (``unknown`` if unreadable, ``degraded`` if free VRAM is below ``min_free_mb``).
    ``probe``/``breaker_run``/``queue`` default to the live ones (the probe, the newest run with a
    breaker, ComfyUI's queue).
    """
    probe = probe or read_vram
    breaker_run = breaker_run or newest_breaker_run
    queue = queue or comfy.queue_length
    now = time.time() if now is None else now
    started = time.perf_counter()
    warnings: list[str] = []
    device, device_state = _device_part(probe, min_free_mb, warnings)
    try:
        run_dir = breaker_run()
    except Exception as exc:
        run_dir = None
        warnings.append(f"runs folder unreadable: {type(exc).__name__}: {exc}")
    breaker, breaker_state = _breaker_part(run_dir, now, warnings)
    queue_part = _queue_part(queue, warnings)
    return {
        "schema": SCHEMA,
        "status": _worst(device_state, breaker_state),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "comfyui": comfy.inside_comfyui(),
        "pack": {"name": "gemdirect", "version": pack_version()},  # the farm checks workers against it
        "device": device,
        "breaker": breaker,
        "queue": queue_part,
        "warnings": warnings,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def resolve_run_dir(value: Any) -> str:
    """A run folder named in a request (``gemdirect/<story>/<run-id>``, relative to the output folder),
    checked to be a run under ``<output>/gemdirect``. RouteError otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise RouteError("run_dir is required: the run folder relative to ComfyUI's output folder, "
                         "e.g. gemdirect/my-story/20261123-214501-3fa2")
    output = os.path.realpath(comfy.output_directory())
    root = os.path.join(output, RUNS_FOLDER)
    candidate = os.path.realpath(os.path.join(output, value.strip()))
    if os.path.dirname(os.path.dirname(candidate)) != root:
        raise RouteError(f"run_dir '{value}' is not a run folder under {RUNS_FOLDER}/<story>/<run-id>", 403)
    if not os.path.isdir(candidate):
        raise RouteError(f"run_dir '{value}' does not exist", 404)
    return candidate


def reset_breaker(body: Any, *, now: float | None = None) -> dict[str, Any]:
    """Clear the breaker of the run named in ``body`` (``{"run_dir": ...}``); returns its new state."""
    if not isinstance(body, dict):
        raise RouteError('send a JSON object: {"run_dir": "gemdirect/<story>/<run-id>"}')
    run_dir = resolve_run_dir(body.get("run_dir"))
    now = time.time() if now is None else now
    after = breakers.reset(run_dir, reason="reset from the panel", now=now)
    return {"run": os.path.relpath(run_dir, comfy.output_directory()).replace(os.sep, "/"), **after.describe(now)}


# --------------------------------------------------------------------------- aiohttp


def _min_free_mb(request: Any) -> float:
    raw = request.query.get("min_free_mb")
    if raw is None:
        return MIN_FREE_MB
    try:
        value = float(raw)
    except ValueError:
        raise RouteError(f"min_free_mb = {raw!r} is not a number (MB of free VRAM, e.g. 4096)") from None
    if not 0 <= value <= 1 << 22:
        raise RouteError(f"min_free_mb = {raw} is out of range (0 to 4194304 MB)")
    return value


async def health_handler(request: Any) -> Any:
    from aiohttp import web

    try:
        min_free = _min_free_mb(request)
    except RouteError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    try:
        report = health_report(min_free_mb=min_free)
    except Exception as exc:  # the parts already catch their own; this is the last net, never a 500
        log.exception("gemDirect: health report failed")
        report = {"schema": SCHEMA, "status": "unknown", "reason": f"{type(exc).__name__}: {exc}", "warnings": []}
    return web.json_response(report, headers={"Cache-Control": "no-store"})


async def breaker_reset_handler(request: Any) -> Any:
    from aiohttp import web

    try:
        body = await request.json()
    except Exception:
        return web.json_response({"error": 'the body must be JSON: {"run_dir": "gemdirect/<story>/<run-id>"}'},
                                 status=400)
    try:
        return web.json_response(reset_breaker(body))
    except RouteError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)


async def farm_scene_handler(request: Any) -> Any:
    from .farm.progress import farm_scene_handler as relay_handler  # no Ray: the relay only

    return await relay_handler(request)


ROUTES = (
    ("GET", "/gemdirect/health", health_handler),
    ("POST", "/gemdirect/breaker/reset", breaker_reset_handler),
    ("POST", "/gemdirect/farm/scene", farm_scene_handler),  # the farm's scene states for the panel's badges
)


def register(server: Any) -> None:
    """Add gemDirect's routes to ComfyUI's PromptServer (``server.routes``, a RouteTableDef).

    ComfyUI's ``add_routes`` runs after custom nodes load and adds each of them again under ``/api``.
    """
    from .panel.routes import add_panel_routes

    for method, path, handler in ROUTES:
        server.routes.route(method, path)(handler)
    add_panel_routes(server.routes)  # the timeline panel's story/run/export API
