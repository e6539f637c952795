"""A chat-completions server on loopback for the story assistant's tests (pytest and the browser
test): ``http://127.0.0.1:<port>/<mode>/v1/chat/completions`` answers the way ``mode`` says.

Modes: ``good`` (a JSON proposal in choices[0].message.content), ``fenced`` (the same in a ```json
block), ``slow`` (waits ``SLOW_SECONDS`` before answering), ``fail`` (HTTP 500), ``malformed`` (a body
that is not JSON), ``nochoices`` (JSON without choices), ``prose`` (content that is not the asked-for
JSON), ``huge`` (100 MB with its Content-Length), ``huge-stream`` (100 MB without a length, until the
client stops reading). Every request body is kept in ``server.requests``.

Run alone: ``python tests/chat_server.py`` prints ``PORT <n>`` and serves until killed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROPOSAL = {
    "prompt": "Establishing wide shot of a white lighthouse on a rocky cape at dawn, calm sea, warm light",
    "negative": "people, text, watermark, blurry",
    "camera": "slow push in",
}
MODEL = "test-llm-7b"
SLOW_SECONDS = 5.0
HUGE_BYTES = 100 * 1024 * 1024


def chat_answer(content: str, model: str = MODEL) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        mode = parts[0] if parts else ""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            self.server.requests.append({"mode": mode, "path": self.path, "body": json.loads(raw or b"null"),
                                         "authorization": self.headers.get("Authorization")})
        except ValueError:
            self.server.requests.append({"mode": mode, "path": self.path, "body": None})
        if parts[1:] != ["v1", "chat", "completions"]:
            return self._send(404, b'{"error": "not found"}')
        # the client may stop reading (the size limit): what the huge modes expect
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(mode)

    def _answer(self, mode: str) -> None:
        good = json.dumps(chat_answer(json.dumps(PROPOSAL))).encode()
        if mode == "good":
            return self._send(200, good)
        if mode == "fenced":
            fenced = "```json\n" + json.dumps(PROPOSAL, indent=1) + "\n```"
            return self._send(200, json.dumps(chat_answer(fenced)).encode())
        if mode == "slow":
            time.sleep(SLOW_SECONDS)
            return self._send(200, good)
        if mode == "fail":
            return self._send(500, b'{"error": {"message": "model crashed: out of memory"}}')
        if mode == "malformed":
            return self._send(200, b'{"choices": [{"message": {"content": "half an answer', "text/plain")
        if mode == "nochoices":
            return self._send(200, b'{"object": "error", "message": "no model loaded"}')
        if mode == "prose":
            return self._send(200, json.dumps(chat_answer("Sure! Here is a lovely prompt: a lighthouse.")).encode())
        if mode in ("huge", "huge-stream"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if mode == "huge":
                self.send_header("Content-Length", str(HUGE_BYTES))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            chunk = b'{"choices": [{"message": {"content": "' + b"x" * (1024 * 1024 - 40)
            for _ in range(HUGE_BYTES // len(chunk)):
                self.wfile.write(chunk)
            return None
        return self._send(404, b'{"error": "unknown mode"}')


def start() -> ThreadingHTTPServer:
    """A server on a free loopback port, serving in a daemon thread; ``.shutdown()`` stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def endpoint(server: ThreadingHTTPServer, mode: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{mode}/v1"


if __name__ == "__main__":
    running = start()
    print(f"PORT {running.server_address[1]}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sys.exit(0)
