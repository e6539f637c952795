"""A real ComfyUI for the integration tests: started from ``COMFYUI_PATH`` with a temporary base directory.

ComfyUI is started with ``COMFYUI_PYTHON`` (default: the Python running pytest) on a free loopback
port, ``--cpu``, with ``--base-directory <tmp>`` whose ``custom_nodes/gemdirect`` links to this
repository, so the checkout itself is never written to. See docs/comfyui-integration.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import REPO_ROOT

PACK_FOLDER = "gemdirect"  # the pack's folder name inside the temporary custom_nodes/
START_TIMEOUT = 120.0  # seconds for ComfyUI to import everything and answer HTTP
PROMPT_TIMEOUT = 120.0  # seconds for one prompt to finish
TEST_NODES = Path(__file__).resolve().parent / "comfyui_nodes"  # test-only custom nodes, never shipped


def comfyui_checkout() -> Path:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("COMFYUI_PATH is not set: point it at a ComfyUI checkout to run the real-ComfyUI test")
    checkout = Path(path).expanduser().resolve()
    if not (checkout / "main.py").is_file():
        pytest.skip(f"COMFYUI_PATH={path} is not a ComfyUI checkout (no main.py there)")
    return checkout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def link_folder(source: Path, target: Path, ignore: Iterable[str] = ()) -> Path:
    """``target`` -> ``source`` (a symlink; a copy where symlinks are not allowed)."""
    try:
        target.symlink_to(source, target_is_directory=True)
    except OSError:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*ignore))
    return target


def link_pack(custom_nodes: Path) -> Path:
    """custom_nodes/gemdirect -> this repository."""
    return link_folder(REPO_ROOT, custom_nodes / PACK_FOLDER, (
        ".git", ".venv*", "__pycache__", "node_modules", "input", "output", "temp", "user", "models"))


class Messages:
    """The websocket messages ComfyUI sends to one client id, collected on a thread."""

    def __init__(self, url: str, client_id: str):
        self.client_id = client_id
        self.items: list[dict] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = False
        self._url = url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"could not open ComfyUI's websocket {self._url}")

    async def _listen(self) -> None:
        import aiohttp  # ComfyUI's own requirement

        async with aiohttp.ClientSession() as session, session.ws_connect(self._url, heartbeat=20) as ws:
            self._ready.set()
            while not self._stop:
                try:
                    message = await ws.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.TEXT:
                    with self._lock:
                        self.items.append(json.loads(message.data))
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return

    def of(self, kind: str, prompt_id: str | None = None) -> list[dict]:
        with self._lock:
            found = [m["data"] for m in self.items if m.get("type") == kind]
        return [d for d in found if prompt_id is None or d.get("prompt_id") == prompt_id]

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)


@dataclass
class Server:
    url: str
    base: Path
    log: Path
    process: subprocess.Popen
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    messages: Messages | None = None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kwargs)

    def queue(self, prompt: dict) -> requests.Response:
        return self.post("/prompt", json={"prompt": prompt, "client_id": self.client_id})

    def wait_for(self, prompt_id: str, timeout: float = PROMPT_TIMEOUT) -> dict:
        """The history entry of ``prompt_id`` once it succeeded or failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").json().get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            if self.process.poll() is not None:
                pytest.fail(f"ComfyUI exited ({self.process.returncode}) while running a prompt:\n{self.log_tail()}")
            time.sleep(0.2)
        pytest.fail(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")


@contextmanager
def running_comfyui(base: Path, custom_nodes: dict[str, Path] | None = None,
                    extra_args: Iterable[str] = (), listen: bool = False) -> Iterator[Server]:
    """ComfyUI from ``COMFYUI_PATH`` on ``base`` (its --base-directory), with the pack and ``custom_nodes``
    (folder name -> source) linked into ``base/custom_nodes``; stopped on exit. ``listen``: open a websocket
    that collects the messages of the server's client id (``server.messages``)."""
    checkout = comfyui_checkout()
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    link_pack(base / "custom_nodes")
    for name, source in (custom_nodes or {}).items():
        link_folder(source, base / "custom_nodes" / name, ("__pycache__",))
    port = free_port()
    log = base / "comfyui.log"
    command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
               "--base-directory", str(base), "--database-url", "sqlite:///:memory:", *extra_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GEMDIRECT_HOME", None)
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=checkout, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    running = Server(f"http://127.0.0.1:{port}", base, log, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"ComfyUI exited ({process.returncode}) during start-up:\n{running.log_tail()}")
            try:
                if running.get("/system_stats").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"ComfyUI did not answer within {START_TIMEOUT:.0f} s:\n{running.log_tail()}")
            time.sleep(0.5)
        if listen:
            running.messages = Messages(running.url, running.client_id)
        yield running
    finally:
        if running.messages is not None:
            running.messages.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
