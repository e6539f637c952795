"""aiohttp handlers for the panel's API (the work is in :mod:`.engine`).

=======  ==========================================================  ===========================
GET      /gemdirect/stories                                          stories in input/gemdirect/
GET      /gemdirect/story?name=demo/story.json                       story + plan + hash
PUT      /gemdirect/story?name=...   {"story": {...}, "base_hash"}   validate, save atomically
GET      /gemdirect/runs?story=<story id>                            runs, newest first
GET      /gemdirect/run?story=<story id>&run=<run id>[&name=...]     progress, scene telemetry, states
GET      /gemdirect/thumbnail?name=...&scene=<id>[&run=..&frame=first] last/first frame or keyframe
GET      /gemdirect/video?story=...&run=...&scene=...                a scene's MP4
GET      /gemdirect/film?story=...&run=...                           the run's finished film
GET      /gemdirect/export?name=...&format=json|edl[&run=...]        download
POST     /gemdirect/assist   {"name", "scene", "endpoint", "model"}  story assistant (writes nothing)
POST     /gemdirect/import   {"name", "story", "overwrite"}          validate, then write
=======  ==========================================================  ===========================

ComfyUI's ``PromptServer.add_routes`` adds every route of ``server.routes`` a second time under
``/api``, so inside ComfyUI ``add_panel_routes(server.routes)`` is enough; a plain aiohttp app (the
browser test's server) passes ``api_prefix=True`` to get both paths.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import engine
from .engine import MAX_BODY_BYTES, PanelError

log = logging.getLogger("gemdirect")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NO_STORE = {"Cache-Control": "no-store"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


async def read_json_body(request: web.Request) -> Any:
    """The request's JSON body, refusing more than MAX_BODY_BYTES before reading it all (413)."""
    limit = MAX_BODY_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise PanelError(413, f"the body is {request.content_length} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PanelError(413, f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data.strip():
        raise PanelError(400, "the body is empty; send JSON")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise PanelError(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise PanelError(400, f"the body is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise PanelError(400, f"the body is not valid JSON ({exc})") from None


def _guarded(work: Handler) -> Handler:
    """PanelError -> its 4xx JSON; anything unexpected -> a 500 with the reason, logged."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await work(request)
        except PanelError as exc:
            return web.json_response(exc.to_json(), status=exc.status, headers=NO_STORE)
        except Exception as exc:
            log.exception("[gemDirect] panel route %s %s failed", request.method, request.path)
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=500, headers=NO_STORE)

    handler.__name__ = work.__name__
    return handler


def _json(value: Any) -> web.Response:
    return web.json_response(value, headers=NO_STORE, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _file(path: str) -> web.FileResponse:
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "no-cache"})


async def stories(request: web.Request) -> web.StreamResponse:
    return _json(engine.list_story_summaries())


async def get_story(request: web.Request) -> web.StreamResponse:
    return _json(engine.get_story(request.query.get("name")))


async def put_story(request: web.Request) -> web.StreamResponse:
    name = request.query.get("name")
    engine.story_file(name)  # 4xx for a bad name before the body is read
    return _json(engine.put_story(name, await read_json_body(request)))


async def runs(request: web.Request) -> web.StreamResponse:
    return _json(engine.list_story_runs(request.query.get("story")))


async def run(request: web.Request) -> web.StreamResponse:
    query = request.query
    return _json(engine.get_run(query.get("story"), query.get("run"), query.get("name") or None))


async def thumbnail(request: web.Request) -> web.StreamResponse:
    query = request.query
    return _file(engine.thumbnail_file(query.get("name"), query.get("scene"), query.get("run") or None,
                                       query.get("frame")))


async def video(request: web.Request) -> web.StreamResponse:
    query = request.query
    return _file(engine.scene_video_file(query.get("story"), query.get("run"), query.get("scene")))


async def film(request: web.Request) -> web.StreamResponse:
    query = request.query
    return _file(engine.film_file(query.get("story"), query.get("run")))


async def assist(request: web.Request) -> web.StreamResponse:
    body = await read_json_body(request)
    # the endpoint may take a minute: off the event loop, so ComfyUI keeps serving meanwhile
    return _json(await asyncio.to_thread(engine.assist, body))


async def export(request: web.Request) -> web.StreamResponse:
    query = request.query
    kind, filename, text = engine.export_story(query.get("name"), query.get("format", "json"),
                                               query.get("run") or None)
    return web.Response(text=text, headers={"Content-Type": kind, **NO_STORE,
                                            "Content-Disposition": f'attachment; filename="{filename}"'})


async def import_story(request: web.Request) -> web.StreamResponse:
    return _json(engine.import_story(await read_json_body(request)))


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/gemdirect/stories", stories),
    ("GET", "/gemdirect/story", get_story),
    ("PUT", "/gemdirect/story", put_story),
    ("GET", "/gemdirect/runs", runs),
    ("GET", "/gemdirect/run", run),
    ("GET", "/gemdirect/thumbnail", thumbnail),
    ("GET", "/gemdirect/video", video),
    ("GET", "/gemdirect/film", film),
    ("GET", "/gemdirect/export", export),
    ("POST", "/gemdirect/assist", assist),
    ("POST", "/gemdirect/import", import_story),
)


def add_panel_routes(routes: web.RouteTableDef, *, api_prefix: bool = False) -> None:
    """Add the panel's routes to ``routes`` (ComfyUI's ``PromptServer.instance.routes``).

    ``api_prefix`` also adds each under ``/api/...``; leave it off inside ComfyUI, which mirrors every
    route under ``/api`` itself (a second copy there would never be reached).
    """
    for method, path, handler in ROUTES:
        paths = (path, "/api" + path) if api_prefix else (path,)
        for each in paths:
            routes.route(method, each)(_guarded(handler))
