"""A test server for the Story panel in a browser: the pack's real panel routes (aiohttp) over a
fresh ComfyUI home (the demo story and one run with scene 'dawn' recorded), a health route the test
controls, a route that records scenes as Scene Save would (POST /test/render), one that writes the
film as Story Render would (POST /test/film), and web/ as static
files. Prints ``PORT <n> HOME <path>`` once it listens.

Usage: python web/tests/serve_panel.py [--port 0]   (stops on SIGTERM / Ctrl+C)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOME = Path(tempfile.mkdtemp(prefix="gemdirect-panel-"))
os.environ["GEMDIRECT_HOME"] = str(HOME)
sys.path.insert(0, str(REPO / "tests"))

from aiohttp import web  # noqa: E402
from conftest import pack_module  # noqa: E402
from panel_helpers import make_home, render_demo_film, render_demo_scenes  # noqa: E402

add_panel_routes = pack_module("nodes.panel.routes").add_panel_routes

HEALTHY = {
    "schema": "gemdirect.health/1", "status": "healthy", "warnings": [],
    "device": {"type": "cuda", "name": "Test GPU 16 GB", "total_mb": 16376.0, "free_mb": 11210.0, "status": "ok"},
    "breaker": {"state": "healthy", "run": None}, "queue": {"running": 0, "pending": 0, "length": 0},
}


def build_app(names: dict) -> web.Application:
    state = {"health": HEALTHY}
    table = web.RouteTableDef()
    add_panel_routes(table, api_prefix=True)

    async def health(request: web.Request) -> web.Response:
        return web.json_response(state["health"])

    async def set_health(request: web.Request) -> web.Response:
        state["health"] = await request.json()
        return web.json_response({"ok": True})

    async def render(request: web.Request) -> web.Response:
        """Record scenes in the run as Scene Save would ({"scenes": [ids in play order]})."""
        render_demo_scenes(names, (await request.json())["scenes"])
        return web.json_response({"ok": True})

    async def film(request: web.Request) -> web.Response:
        """Write the run's film from the story's order now, as Story Render would."""
        return web.json_response({"scenes": render_demo_film(names)})

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"home": str(HOME), "story_path": str(names["story_path"]), "run_id": names["run_id"]})

    app = web.Application()
    app.add_routes(table)
    app.router.add_get("/gemdirect/health", health)
    app.router.add_post("/test/health", set_health)
    app.router.add_get("/test/info", info)
    app.router.add_post("/test/render", render)
    app.router.add_post("/test/film", film)
    app.router.add_get("/test/timeline.html", lambda r: web.FileResponse(REPO / "web" / "tests" / "timeline.html"))
    app.router.add_get("/test/panel.html", lambda r: web.FileResponse(REPO / "web" / "tests" / "panel.html"))
    app.router.add_static("/web/", REPO / "web")
    return app


async def main(port: int) -> None:
    names = make_home(HOME)
    runner = web.AppRunner(build_app(names))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    print(f"PORT {bound} HOME {HOME}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args().port))
