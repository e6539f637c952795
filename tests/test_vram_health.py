"""GET /gemdirect/health (and /api/gemdirect/health) through aiohttp's test client; the breaker reset
route; ComfyUI's queue and history read through the door; route registration at start-up."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from conftest import REPO_ROOT, pack_module

web = pytest.importorskip("aiohttp.web")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

routes = pack_module("nodes.routes")
probe = pack_module("nodes.vram.probe")
breakers = pack_module("nodes.vram.breaker")
comfy = pack_module("nodes.comfy")
MIB, GIB = 1 << 20, 1 << 30


def comfy_like_app() -> web.Application:
    """An app built the way ComfyUI's PromptServer does: custom nodes add to ``server.routes``, then
    ``add_routes`` adds every plain route again under ``/api``."""
    server = SimpleNamespace(routes=web.RouteTableDef())
    routes.register(server)
    app = web.Application()
    mirrored = web.RouteTableDef()
    for route in server.routes:
        if isinstance(route, web.RouteDef):
            mirrored.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
    app.add_routes(mirrored)
    app.add_routes(server.routes)
    return app


def call(method: str, path: str, **kwargs) -> tuple[int, dict]:
    async def go():
        async with TestClient(TestServer(comfy_like_app())) as client:
            response = await client.request(method, path, **kwargs)
            return response.status, await response.json()

    return asyncio.run(go())


def fake_reading(free_mb=10_000, total_mb=16_376):
    return probe.VramReading("cuda", 0, "NVIDIA GeForce RTX 4080", total_mb * MIB, free_mb * MIB, cached=512 * MIB,
                             torch_allocated=300 * MIB, torch_reserved=600 * MIB)


@pytest.fixture
def healthy_device(monkeypatch):
    monkeypatch.setattr(routes, "read_vram", lambda: fake_reading())


def test_health_answers_on_both_paths(comfy_home, healthy_device):
    for path in ("/gemdirect/health", "/api/gemdirect/health"):
        status, body = call("GET", path)
        assert status == 200, path
        assert body["schema"] == "gemdirect.health/1" and body["status"] == "healthy"
        device = body["device"]
        assert device["name"] == "NVIDIA GeForce RTX 4080" and device["type"] == "cuda" and device["index"] == 0
        assert device["free_mb"] == 10_000.0 and device["total_mb"] == 16_376.0 and device["status"] == "ok"
        assert device["torch_allocated_mb"] == 300.0 and device["torch_reserved_mb"] == 600.0
        assert body["breaker"]["state"] == "healthy"
        assert body["queue"] is None  # standalone: no ComfyUI queue
        assert body["warnings"] == []


def test_a_broken_probe_degrades_to_unknown_with_the_reason_never_a_500(comfy_home, monkeypatch):
    def broken():
        raise RuntimeError("CUDA error: unspecified launch failure")

    monkeypatch.setattr(routes, "read_vram", broken)
    status, body = call("GET", "/gemdirect/health")
    assert status == 200
    assert body["status"] == "unknown"
    assert body["device"] == {"status": "unknown", "reason": "RuntimeError: CUDA error: unspecified launch failure"}
    assert "device unreadable: RuntimeError: CUDA error" in body["warnings"][0]
    assert body["breaker"]["state"] == "healthy"  # the other parts still answer


def test_even_a_failing_report_is_not_a_500(comfy_home, monkeypatch):
    def explode(**_kwargs):
        raise MemoryError("no memory left")

    monkeypatch.setattr(routes, "health_report", explode)
    status, body = call("GET", "/gemdirect/health")
    assert status == 200 and body["status"] == "unknown" and body["reason"] == "MemoryError: no memory left"


def test_low_vram_is_degraded_below_the_4096_mb_minimum(comfy_home, monkeypatch):
    monkeypatch.setattr(routes, "read_vram", lambda: fake_reading(free_mb=3000))
    status, body = call("GET", "/gemdirect/health")
    assert body["status"] == "degraded" and body["device"]["status"] == "low"
    assert "only 3000 MB free on NVIDIA GeForce RTX 4080, below the 4096 MB minimum" in body["warnings"][0]
    status, body = call("GET", "/gemdirect/health?min_free_mb=2048")
    assert body["status"] == "healthy"
    status, body = call("GET", "/gemdirect/health?min_free_mb=lots")
    assert status == 400 and "min_free_mb = 'lots' is not a number" in body["error"]


def open_breaker(comfy_home, story="demo", run_id="20261123-214501-3fa2"):
    run_dir = comfy_home / "output" / "gemdirect" / story / run_id
    run_dir.mkdir(parents=True)
    for _attempt in range(3):
        breakers.record_failure(run_dir, "scene b: OutOfMemoryError", scene="b")
    return run_dir


def test_health_shows_the_newest_runs_open_breaker_and_the_queue(comfy_home, healthy_device, monkeypatch):
    open_breaker(comfy_home)
    monkeypatch.setattr(comfy, "queue_length", lambda: comfy.QueueLength(1, 2))
    status, body = call("GET", "/api/gemdirect/health")
    assert status == 200 and body["status"] == "circuit-open"
    breaker = body["breaker"]
    assert breaker["state"] == "circuit-open" and breaker["consecutive_failures"] == 3
    assert breaker["run"] == "gemdirect/demo/20261123-214501-3fa2"
    assert 0 < breaker["retry_in_s"] <= 30
    assert breaker["last_failure"] == "scene b: OutOfMemoryError"
    assert body["queue"] == {"running": 1, "pending": 2, "length": 3}
    assert any("circuit breaker open" in warning for warning in body["warnings"])


def test_health_has_no_side_effects(comfy_home, healthy_device):
    open_breaker(comfy_home)
    before = sorted((p, p.stat().st_mtime_ns) for p in comfy_home.rglob("*"))
    for _ in range(3):
        call("GET", "/gemdirect/health")
    assert sorted((p, p.stat().st_mtime_ns) for p in comfy_home.rglob("*")) == before


def test_breaker_reset_route(comfy_home):
    run_dir = open_breaker(comfy_home)
    status, body = call("POST", "/gemdirect/breaker/reset", json={"run_dir": "gemdirect/demo/20261123-214501-3fa2"})
    assert status == 200 and body["state"] == "healthy" and body["run"] == "gemdirect/demo/20261123-214501-3fa2"
    assert breakers.load(run_dir).consecutive_failures == 0
    status, body = call("POST", "/api/gemdirect/breaker/reset", json={"run_dir": "../../etc"})
    assert status == 403 and "not a run folder" in body["error"]
    status, body = call("POST", "/gemdirect/breaker/reset", json={"run_dir": "gemdirect/demo/20990101-000000-0000"})
    assert status == 404
    status, body = call("POST", "/gemdirect/breaker/reset", data=b"not json")
    assert status == 400 and "must be JSON" in body["error"]
    status, body = call("POST", "/gemdirect/breaker/reset", json={})
    assert status == 400 and "run_dir is required" in body["error"]


# --------------------------------------------------------------------------- ComfyUI's queue, through the door


class FakeQueue:
    """The parts of ComfyUI's PromptQueue the door reads."""

    def get_current_queue_volatile(self):
        return [("running",)], [("a",), ("b",)]

    def get_history(self, prompt_id=None, map_function=None, **_kwargs):
        history = {
            "ok": {"status": {"status_str": "success", "completed": True, "messages": [("execution_start", {})]}},
            "oom": {"status": {"status_str": "error", "completed": False, "messages": [
                ("execution_start", {}),
                ("execution_error", {"exception_type": "torch.OutOfMemoryError",
                                     "exception_message": "CUDA out of memory", "node_type": "KSampler"})]}},
            "stop": {"status": {"status_str": "error", "completed": False,
                                "messages": [("execution_interrupted", {"node_type": "KSampler"})]}},
        }
        if prompt_id not in history:
            return {}
        return {prompt_id: map_function(history[prompt_id]) if map_function else history[prompt_id]}


def test_queue_length_and_prompt_outcome_come_from_comfyuis_prompt_server(monkeypatch):
    instance = SimpleNamespace(prompt_queue=FakeQueue(), last_prompt_id="ok")
    monkeypatch.setitem(sys.modules, "server", SimpleNamespace(PromptServer=SimpleNamespace(instance=instance)))
    assert comfy.queue_length() == comfy.QueueLength(running=1, pending=2)
    assert comfy.current_prompt_id() == "ok"
    assert comfy.prompt_outcome("ok") == comfy.PromptOutcome("success")
    assert comfy.prompt_outcome("oom") == comfy.PromptOutcome(
        "error", "torch.OutOfMemoryError: CUDA out of memory (in node KSampler)")
    assert comfy.prompt_outcome("stop").status == "interrupted"
    assert comfy.prompt_outcome("forgotten") is None


def test_standalone_there_is_no_queue():
    assert "server" not in sys.modules or comfy.prompt_server() is None
    assert comfy.queue_length() is None and comfy.prompt_outcome("x") is None


# --------------------------------------------------------------------------- start-up


STARTUP = """
import importlib.util, logging, os, sys, types
from aiohttp import web
logging.basicConfig(level=logging.WARNING)
server = types.ModuleType("server")
class PromptServer:
    instance = None
server.PromptServer = PromptServer
PromptServer.instance = types.SimpleNamespace(routes={routes})
sys.modules["server"] = server
path = {path!r}
spec = importlib.util.spec_from_file_location(os.path.basename(path), os.path.join(path, "__init__.py"))
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
table = PromptServer.instance.routes
print("ROUTES", sorted(r.path for r in table) if isinstance(table, web.RouteTableDef) else [])
print("NODES", "GemDirectVRAMGuard" in module.NODE_CLASS_MAPPINGS)
"""


def _start(routes_expr: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(STARTUP).format(routes=routes_expr, path=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(REPO_ROOT.parent), env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def test_the_pack_registers_its_routes_when_comfyuis_server_is_there():
    result = _start("web.RouteTableDef()")
    assert result.returncode == 0, result.stderr
    routes_line = next(line for line in result.stdout.splitlines() if line.startswith("ROUTES "))
    for path in ("/gemdirect/health", "/gemdirect/breaker/reset", "/gemdirect/stories", "/gemdirect/story",
                 "/gemdirect/runs", "/gemdirect/export", "/gemdirect/import"):
        assert f"'{path}'" in routes_line, routes_line
    assert "NODES True" in result.stdout


def test_a_failing_registration_logs_one_line_and_start_up_goes_on():
    result = _start("None")  # a server without a route table
    assert result.returncode == 0, result.stderr
    assert "NODES True" in result.stdout
    lines = [line for line in result.stderr.splitlines() if "HTTP routes not registered" in line]
    assert len(lines) == 1, result.stderr
    assert "AttributeError" in lines[0]


def test_register_serves_the_panel_routes_on_both_paths(comfy_home):
    """What ComfyUI calls at start-up also brings the timeline panel's API, under /gemdirect and /api/gemdirect."""
    for path in ("/gemdirect/stories", "/api/gemdirect/stories"):
        status, body = call("GET", path)
        assert status == 200, body
        assert "demo/story.json" in json.dumps(body)
