"""A ComfyUI worker over its own HTTP/websocket API: the only way the farm talks to a worker.

Routes used (ComfyUI's server): ``POST /prompt`` (queue), ``GET /history/<id>`` (done? how?),
``/ws?clientId=`` (per-node ``progress`` messages), ``POST /upload/image`` (a file into the worker's
input or output folder: the start image, the story, a scene the next one needs), ``GET /view``
(a file back from the worker's output folder), ``GET /object_info`` (node types and model lists),
``POST /interrupt``, ``GET /gemdirect/health`` (the pack's version).

Errors: :class:`WorkerLost` when the worker does not answer (connection refused or reset, a
timeout, a 5xx): the job is retried on another worker; :class:`PromptFailed` when the worker ran
the prompt and it failed (or refused it): that is the job's result, recorded in the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

HTTP_TIMEOUT = 60.0  # seconds for one HTTP request (an upload of a scene master included)
POLL_S = 0.25  # how often /history is asked while a prompt runs


class WorkerLost(RuntimeError):
    """The worker did not answer (down, restarted, unreachable, too slow); retry the job elsewhere."""


class PromptFailed(RuntimeError):
    """The worker refused or failed the prompt; the message names the node and the reason."""


def failure_text(body: Any) -> str:
    """A refused prompt's reason from ``POST /prompt``'s JSON, naming each node."""
    if not isinstance(body, dict):
        return str(body)[:2000]
    lines = []
    error = body.get("error") or {}
    if error:
        lines.append(f"{error.get('type')}: {error.get('message')} {error.get('details', '')}".strip())
    for node_id, info in (body.get("node_errors") or {}).items():
        for item in info.get("errors", []):
            lines.append(f"node {node_id} ({info.get('class_type')}): {item.get('message')}: {item.get('details', '')}")
    return "; ".join(lines) or json.dumps(body)[:2000]


def execution_failure(entry: Mapping[str, Any]) -> str | None:
    """A finished prompt's failure from its ``/history`` entry (naming the node), or None if it succeeded."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success":
        return None
    for kind, data in status.get("messages") or []:
        if kind == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: "
                    f"{data.get('exception_message')}")
        if kind == "execution_interrupted":
            return f"interrupted in node {data.get('node_id')} ({data.get('node_type')})"
    return f"status {status.get('status_str')}"


class Progress:
    """ComfyUI's ``progress`` websocket messages for one client id, collected on a thread (aiohttp)."""

    def __init__(self, url: str, client_id: str, on_progress: Callable[[str, int, int], None]):
        self._url = url.replace("http://", "ws://").replace("https://", "wss://") + f"/ws?clientId={client_id}"
        self._on_progress = on_progress
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._listen())
        except Exception as exc:  # progress is for display: a lost socket never fails the job
            self.error = f"{type(exc).__name__}: {exc}"
            self._ready.set()

    async def _listen(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.ws_connect(self._url, heartbeat=20) as ws:
            self._ready.set()
            while not self._stop.is_set():
                try:
                    message = await ws.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.TEXT:
                    value = json.loads(message.data)
                    if value.get("type") == "progress":
                        data = value.get("data") or {}
                        self._on_progress(str(data.get("prompt_id")), int(data.get("value", 0)),
                                          int(data.get("max", 0)))
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class ComfyClient:
    """One ComfyUI worker at ``url`` (``http://host:port``)."""

    def __init__(self, url: str, timeout: float = HTTP_TIMEOUT):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = requests.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise WorkerLost(f"worker {self.url} did not answer {method} {path}: {exc}") from exc
        if response.status_code >= 500:
            raise WorkerLost(f"worker {self.url}: {method} {path} -> HTTP {response.status_code}")
        return response

    def get_json(self, path: str) -> Any:
        response = self._request("GET", path)
        if response.status_code != 200:
            raise PromptFailed(f"worker {self.url}: GET {path} -> HTTP {response.status_code}")
        return response.json()

    def object_info(self) -> dict[str, Any]:
        return self.get_json("/object_info")

    def upload(self, data: bytes, filename: str, subfolder: str, kind: str = "input") -> dict[str, Any]:
        """Put ``data`` at ``<kind folder>/<subfolder>/<filename>`` on the worker (replacing it)."""
        response = self._request("POST", "/upload/image", files={"image": (filename, data)},
                                 data={"type": kind, "subfolder": subfolder, "overwrite": "true"})
        if response.status_code != 200:
            raise PromptFailed(f"worker {self.url}: upload of {subfolder}/{filename} refused (HTTP "
                               f"{response.status_code}: {response.text[:200]})")
        return response.json()

    def view(self, filename: str, subfolder: str, kind: str = "output") -> bytes | None:
        """The bytes of ``<kind folder>/<subfolder>/<filename>`` on the worker, or None if it is not there."""
        response = self._request("GET", "/view", params={"filename": filename, "subfolder": subfolder, "type": kind})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise PromptFailed(f"worker {self.url}: /view {subfolder}/{filename} -> HTTP {response.status_code}")
        return response.content

    def queue(self, prompt: Mapping[str, Any]) -> str:
        response = self._request("POST", "/prompt", json={"prompt": dict(prompt), "client_id": self.client_id})
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code != 200:
            raise PromptFailed(f"worker {self.url} refused the prompt: {failure_text(body)}")
        return str(body["prompt_id"])

    def interrupt(self) -> None:
        with contextlib.suppress(WorkerLost):
            self._request("POST", "/interrupt")

    def run(self, prompt: Mapping[str, Any], timeout: float,
            on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Queue ``prompt`` and wait for it: its ``/history`` entry once it succeeded.

        PromptFailed when it was refused or failed; WorkerLost when the worker stops answering or
        the prompt is not done within ``timeout`` seconds (it is then interrupted).
        """
        listener = None
        prompt_id: list[str] = []
        if on_progress is not None:
            listener = Progress(self.url, self.client_id,
                                lambda pid, value, most: on_progress(value, most) if pid in prompt_id else None)
        try:
            prompt_id.append(self.queue(prompt))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                entry = self.get_json(f"/history/{prompt_id[0]}").get(prompt_id[0])
                if entry and (entry.get("status") or {}).get("status_str") in ("success", "error"):
                    problem = execution_failure(entry)
                    if problem:
                        raise PromptFailed(f"worker {self.url}: the prompt failed: {problem}")
                    return entry
                time.sleep(POLL_S)
            self.interrupt()
            raise WorkerLost(f"worker {self.url}: prompt {prompt_id[0]} did not finish within {timeout:.0f} s")
        finally:
            if listener is not None:
                listener.close()
