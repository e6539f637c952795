"""The story assistant's client: one chat-completions request to an OpenAI-compatible endpoint the
user set (Ollama ``http://127.0.0.1:11434/v1``, LM Studio ``http://127.0.0.1:1234/v1``, llama.cpp
server ``http://127.0.0.1:8080/v1``), asking for one scene's prompt, negative and camera move.

It never writes anything: the panel shows the proposal and the user accepts each field, which saves
through ``PUT /gemdirect/story`` like any edit. Every way the endpoint can go wrong (cannot connect,
too slow, an HTTP error, an answer that is not chat-completions JSON, an answer over the size limit,
content that is not the asked-for JSON object) raises :class:`AssistantError` with a message that
says which and what to check.

Request: ``POST <endpoint>/chat/completions`` with ``model``, ``messages`` (system + user),
``temperature`` and ``response_format`` ``{"type": "json_schema", ...}`` (structured output, which
OpenAI, LM Studio, llama.cpp server and Ollama >= 0.5 accept); answer: ``choices[0].message.content``
holding ``{"prompt", "negative", "camera"}`` (a fenced ```json block is accepted too).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

FIELDS = ("prompt", "negative", "camera")
DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 600.0
MAX_ANSWER_BYTES = 2 * 1024 * 1024  # a chat answer of a few sentences is a few KB
MAX_FIELD_CHARS = 4000
MAX_URL_CHARS = 2048
SOURCE = "gemdirect.assistant/1"
API_KEY_ENV = "GEMDIRECT_ASSISTANT_API_KEY"  # optional bearer key, read here only: never sent to the browser

SYSTEM = ("You are a film director's assistant for WAN 2.2 text/image-to-video scenes. For the scene you are "
          "asked about, answer with one JSON object and nothing else: {\"prompt\": one or two sentences naming the "
          "subjects, the shot size, the light and the camera move; \"negative\": what the scene must not show, "
          "comma-separated; \"camera\": the camera move alone, a few words such as \"slow push in\"}. Keep the "
          "story's continuity with the scenes around it.")

SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "string"} for name in FIELDS},
    "required": list(FIELDS),
    "additionalProperties": False,
}


class AssistantError(Exception):
    """The endpoint could not give a usable proposal; ``status`` is the HTTP status the route answers."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def check_endpoint(url: Any) -> urllib.parse.SplitResult:
    """A base URL as set in the settings: http(s), a host, no user:password, no query."""
    if not isinstance(url, str) or not url.strip():
        raise AssistantError("no assistant endpoint is set: set Settings > gemDirect > Story assistant endpoint "
                             "(an OpenAI-compatible base URL such as http://127.0.0.1:11434/v1)", 400)
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise AssistantError(f"the assistant endpoint is longer than {MAX_URL_CHARS} characters", 400)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AssistantError(f"the assistant endpoint {url[:200]!r} is not an http:// or https:// URL with a host", 400)
    if parts.username or parts.password:
        raise AssistantError("the assistant endpoint must not carry a user name or password; put a key in the "
                             f"{API_KEY_ENV} environment variable of ComfyUI instead", 400)
    if parts.query or parts.fragment:
        raise AssistantError("the assistant endpoint is a base URL without ?query or #fragment "
                             "(e.g. http://127.0.0.1:1234/v1)", 400)
    return parts


def story_context(raw: Mapping[str, Any], index: int) -> str:
    """The user message: logline, director's vision, every scene in order, and which one to rewrite."""
    scenes = raw.get("scenes") or []
    lines = [f"Story: {raw.get('title', '')}"]
    if raw.get("logline"):
        lines.append(f"Logline: {raw['logline']}")
    if raw.get("directors_vision"):
        lines.append(f"Director's vision: {raw['directors_vision']}")
    lines.append("Scenes in play order:")
    for i, scene in enumerate(scenes):
        negative = f" (negative: {scene['negative']})" if scene.get("negative") else ""
        lines.append(f"{i + 1}. {scene.get('id')}: {scene.get('title', '')}: {scene.get('prompt', '')}{negative}")
    target = scenes[index]
    lines.append(f"Propose prompt, negative and camera for scene {index + 1} ({target.get('id')}).")
    return "\n".join(lines)


def request_body(raw: Mapping[str, Any], index: int, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "temperature": 0.4,
        "stream": False,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": story_context(raw, index)}],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "scene_suggestion", "strict": True, "schema": SCHEMA}},
    }


def _read_limited(response: http.client.HTTPResponse, deadline: float, sock: socket.socket | None) -> bytes:
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        raise AssistantError(f"the endpoint's answer is {int(length)} bytes; the limit is {MAX_ANSWER_BYTES} bytes "
                             "(is this a chat-completions endpoint?)")
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError()
        if sock is not None:
            sock.settimeout(left)
        chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise AssistantError(f"the endpoint's answer is over the {MAX_ANSWER_BYTES}-byte limit; stopped reading "
                                 "(is this a chat-completions endpoint?)")
        chunks.append(chunk)


def post_chat(endpoint: str, body: Mapping[str, Any], timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Any:
    """POST body to ``<endpoint>/chat/completions``; the decoded JSON answer. One deadline covers
    connecting, waiting and reading; at most MAX_ANSWER_BYTES are read."""
    parts = check_endpoint(endpoint)
    timeout = max(0.1, min(float(timeout), MAX_TIMEOUT_SECONDS))
    path = parts.path.rstrip("/") + "/chat/completions"
    where = f"{parts.scheme}://{parts.netloc}{path}"
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = os.environ.get(API_KEY_ENV, "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    deadline = time.monotonic() + timeout
    try:
        connection.request("POST", path, body=json.dumps(body).encode("utf-8"), headers=headers)
        if connection.sock is not None:
            connection.sock.settimeout(max(0.05, deadline - time.monotonic()))
        response = connection.getresponse()
        data = _read_limited(response, deadline, connection.sock)
    except TimeoutError:
        raise AssistantError(f"{where} gave no complete answer within {timeout:g} s; is the model loaded? "
                             "(a first request may load it: try again, or raise the timeout)", 504) from None
    except (ConnectionError, OSError, http.client.HTTPException) as exc:
        raise AssistantError(f"cannot reach {where}: {exc}; is the server running, and is the endpoint the base "
                             "URL ending in /v1?") from None
    finally:
        connection.close()
    if response.status != 200:
        detail = data[:300].decode("utf-8", "replace").strip()
        raise AssistantError(f"{where} answered HTTP {response.status}: {detail or response.reason}")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise AssistantError(f"{where} answered something that is not JSON ({data[:80]!r}...); "
                             "the endpoint must speak OpenAI chat-completions") from None


FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_answer(answer: Any) -> dict[str, str]:
    """``choices[0].message.content`` as {prompt, negative, camera} (strings, trimmed; empty when the
    model left one out). Raises AssistantError naming what is missing or wrong."""
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise AssistantError("the answer has no choices[0].message.content: not a chat-completions answer") from None
    if not isinstance(content, str) or not content.strip():
        raise AssistantError("the answer's choices[0].message.content is empty")
    text = content.strip()
    fenced = FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        proposal = json.loads(text)
    except ValueError:
        shown = content.strip()[:120]
        raise AssistantError(f"the model's answer is not the JSON object asked for: {shown!r}") from None
    if not isinstance(proposal, dict):
        raise AssistantError("the model's answer is JSON but not an object with prompt, negative and camera")
    fields: dict[str, str] = {}
    for name in FIELDS:
        value = proposal.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise AssistantError(f"the model's {name} is {type(value).__name__}, not text")
        value = " ".join(value.split())
        if len(value) > MAX_FIELD_CHARS:
            raise AssistantError(f"the model's {name} is {len(value)} characters; the limit is {MAX_FIELD_CHARS}")
        fields[name] = value
    if not fields["prompt"]:
        raise AssistantError("the model's answer has no prompt")
    return fields


def suggest(raw: Mapping[str, Any], scene_id: str, endpoint: str, model: str,
            timeout: float = DEFAULT_TIMEOUT_SECONDS) -> dict[str, Any]:
    """{scene, fields: {prompt, negative, camera}, model, source, endpoint} for one scene of a raw story."""
    scenes = raw.get("scenes") or []
    index = next((i for i, s in enumerate(scenes) if isinstance(s, Mapping) and s.get("id") == scene_id), None)
    if index is None:
        raise AssistantError(f"scene {scene_id!r} is not in this story", 404)
    model = (model or "").strip()
    if not model:
        raise AssistantError("no assistant model is set: set Settings > gemDirect > Story assistant model to a "
                             "model the endpoint serves (e.g. the name `ollama list` shows)", 400)
    if len(model) > 200:
        raise AssistantError("the assistant model name is longer than 200 characters", 400)
    answer = post_chat(endpoint, request_body(raw, index, model), timeout)
    fields = parse_answer(answer)
    served = answer.get("model") if isinstance(answer.get("model"), str) else None
    return {"scene": scene_id, "fields": fields, "model": (served or model)[:200], "requested_model": model,
            "source": SOURCE, "endpoint": endpoint.strip()}
