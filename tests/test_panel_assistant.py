"""The story assistant against a real chat-completions server on loopback (tests/chat_server.py),
through the panel's route: a good answer's fields, the request it sent (model, story context,
structured output), and a slow, failing, malformed, prose and 100 MB answer, each a clear 4xx/5xx
with nothing under ComfyUI's folders changed (story.json byte for byte)."""

from __future__ import annotations

import json

import chat_server
import pytest
from conftest import pack_module
from test_panel_routes import call, snapshot
from test_panel_routes import home as home  # the fixture

assistant = pack_module("nodes.panel.assistant")


@pytest.fixture(scope="module")
def chat():
    server = chat_server.start()
    yield server
    server.shutdown()


def ask(chat, mode: str, **extra):
    body = {"name": "demo/story.json", "scene": "noon", "endpoint": chat_server.endpoint(chat, mode),
            "model": "my-model", **extra}
    return call("POST", "/api/gemdirect/assist", json=body)


def test_a_good_answer_gives_the_three_fields_and_sends_the_story(home, chat):
    before = snapshot(home["home"])
    status, body = ask(chat, "good")
    assert status == 200, body
    assert body["fields"] == chat_server.PROPOSAL
    assert body["scene"] == "noon" and body["model"] == chat_server.MODEL and body["requested_model"] == "my-model"
    assert body["source"] == "gemdirect.assistant/1" and body["name"] == "demo/story.json"
    sent = chat.requests[-1]["body"]
    assert sent["model"] == "my-model" and sent["stream"] is False
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["prompt", "negative", "camera"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    user = sent["messages"][1]["content"]
    assert "Logline: From dawn to dusk, a lighthouse keeper readies the lamp before a storm." in user
    assert "Director's vision: Slow, painterly" in user
    assert "1. dawn: Dawn over the sea:" in user and "3. dusk:" in user
    assert user.endswith("scene 2 (noon).")
    assert snapshot(home["home"]) == before  # asking writes nothing


def test_a_fenced_json_answer_is_read(home, chat):
    status, body = ask(chat, "fenced")
    assert status == 200, body
    assert body["fields"]["camera"] == "slow push in"


def test_a_key_from_the_environment_goes_as_bearer_and_never_back(home, chat, monkeypatch):
    monkeypatch.setenv(assistant.API_KEY_ENV, "sk-local-secret")
    status, body = ask(chat, "good")
    assert status == 200
    assert chat.requests[-1]["authorization"] == "Bearer sk-local-secret"
    assert "sk-local-secret" not in json.dumps(body)


@pytest.mark.parametrize(("mode", "extra", "status", "message"), [
    ("slow", {"timeout": 1}, 504, r"gave no complete answer within 1 s"),
    ("fail", {}, 502, r"answered HTTP 500: .*out of memory"),
    ("malformed", {}, 502, r"not JSON .*chat-completions"),
    ("nochoices", {}, 502, r"no choices\[0\]\.message\.content"),
    ("prose", {}, 502, r"not the JSON object asked for: 'Sure!"),
    ("huge", {}, 502, r"answer is 104857600 bytes; the limit is 2097152"),
    ("huge-stream", {}, 502, r"over the 2097152-byte limit; stopped reading"),
])
def test_a_bad_answer_is_a_clear_error_and_changes_nothing(home, chat, mode, extra, status, message):
    before = snapshot(home["home"])
    got, body = ask(chat, mode, **extra)
    assert got == status, body
    assert body["error"].startswith("story assistant: ")
    import re
    assert re.search(message, body["error"]), body["error"]
    assert snapshot(home["home"]) == before


def test_nothing_listening_and_bad_settings_are_clear(home, chat):
    import socket
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # a port nobody listens on
    status, body = call("POST", "/gemdirect/assist", json={"name": "demo/story.json", "scene": "noon",
                                                          "endpoint": f"http://127.0.0.1:{port}/v1", "model": "m"})
    assert status == 502 and "cannot reach" in body["error"] and "is the server running" in body["error"]
    cases = [
        ({"endpoint": ""}, 400, "no assistant endpoint is set"),
        ({"endpoint": "file:///etc/passwd"}, 400, "not an http:// or https:// URL"),
        ({"endpoint": "http://user:pw@127.0.0.1:1/v1"}, 400, "must not carry a user name or password"),
        ({"endpoint": chat_server.endpoint(chat, "good") + "?x=1"}, 400, "without ?query"),
        ({"model": ""}, 400, "no assistant model is set"),
        ({"scene": "nowhere"}, 404, "scene 'nowhere' is not in this story"),
        ({"scene": "../x"}, 400, ""),
        ({"timeout": 0}, 400, "timeout must be seconds"),
        ({"name": "../story.json"}, 400, ""),
    ]
    for change, code, text in cases:
        body = {"name": "demo/story.json", "scene": "noon", "endpoint": chat_server.endpoint(chat, "good"),
                "model": "m", **change}
        status, answer = call("POST", "/gemdirect/assist", json=body)
        assert status == code, (change, answer)
        assert text in answer["error"], (change, answer)


def test_parse_answer_checks_each_field():
    answer = chat_server.chat_answer(json.dumps({"prompt": " a  lighthouse\n", "camera": "tilt up"}))
    ok = assistant.parse_answer(answer)
    assert ok == {"prompt": "a lighthouse", "negative": "", "camera": "tilt up"}
    for content, text in [(json.dumps({"prompt": 3}), "prompt is int"), (json.dumps({"negative": "x"}), "no prompt"),
                          (json.dumps(["a"]), "not an object"), ("", "is empty"),
                          (json.dumps({"prompt": "x" * 5000}), "the limit is 4000")]:
        with pytest.raises(assistant.AssistantError, match=text):
            assistant.parse_answer(chat_server.chat_answer(content))
