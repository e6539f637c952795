"""The panel's HTTP API through aiohttp's test client, in an app built the way ComfyUI's PromptServer
builds its own (every route again under /api): stories, save with validation, runs, thumbnails,
export, import, and hostile requests that must get a 4xx and leave the disk as it was."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import pack_module
from panel_helpers import make_home, render_demo_scenes

web = pytest.importorskip("aiohttp.web")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

panel_routes = pack_module("nodes.panel.routes")
engine = pack_module("nodes.panel.engine")
edl = pack_module("nodes.panel.edl")
EDL_CASES = Path(__file__).resolve().parent.parent / "web" / "tests" / "fixtures" / "edl_cases.json"


def comfy_like_app(api_prefix: bool = False) -> web.Application:
    """Routes added to a RouteTableDef as ComfyUI's server.routes, then mirrored under /api as
    ``PromptServer.add_routes`` does (unless the pack adds the /api copies itself)."""
    table = web.RouteTableDef()
    panel_routes.add_panel_routes(table, api_prefix=api_prefix)
    app = web.Application(client_max_size=100 * 1024 * 1024)  # ComfyUI's default upload limit
    if not api_prefix:
        mirrored = web.RouteTableDef()
        for route in table:
            mirrored.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        app.add_routes(mirrored)
    app.add_routes(table)
    return app


def call(method: str, path: str, *, app: web.Application | None = None, raw: bool = False, **kwargs):
    async def go():
        async with TestClient(TestServer(app or comfy_like_app())) as client:
            response = await client.request(method, path, **kwargs)
            body = await response.read()
            if raw:
                return response.status, response.headers, body
            return response.status, json.loads(body)

    return asyncio.run(go())


@pytest.fixture
def home(comfy_home):
    return {**make_home(comfy_home), "home": comfy_home}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) with a hash of its bytes."""
    found = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames + files:
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, root)
            if os.path.islink(path):
                found[key] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                found[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                found[key] = "dir"
    return found


# --------------------------------------------------------------------------- what works


def test_stories_lists_the_demo_on_both_paths(home):
    for prefix in ("", "/api"):
        status, body = call("GET", prefix + "/gemdirect/stories")
        assert status == 200
        assert body["stories"] == [{"name": "demo/story.json", "story_id": "lighthouse",
                                    "title": "The Lighthouse Keeper", "scenes": 3}]


def test_add_panel_routes_can_add_the_api_copies_itself(home):
    app = comfy_like_app(api_prefix=True)
    assert call("GET", "/api/gemdirect/stories", app=app)[0] == 200
    assert call("GET", "/gemdirect/stories", app=comfy_like_app(api_prefix=True))[0] == 200


def test_story_comes_with_its_plan(home):
    status, body = call("GET", "/gemdirect/story", params={"name": "demo/story.json"})
    assert status == 200
    assert body["story_id"] == "lighthouse" and body["story"]["title"] == "The Lighthouse Keeper"
    # 3.0 s at 16 fps -> 49 frames (4n+1); 3.5 s -> 57
    assert [(s["id"], s["frames"], s["fps"]) for s in body["scenes"]] == [
        ("dawn", 49, 16.0), ("noon", 49, 16.0), ("dusk", 57, 16.0)]
    assert body["scenes"][0]["keyframe"] == "keyframes/dawn.png"
    assert body["total_frames"] == 155 and len(body["hash"]) == 64


def test_put_reorders_and_keeps_unknown_fields(home):
    _, story = call("GET", "/gemdirect/story", params={"name": "demo/story.json"})
    raw = story["story"]
    raw["scenes"] = [raw["scenes"][i] for i in (2, 0, 1)]
    raw["x_editor"] = {"note": "kept"}
    status, body = call("PUT", "/api/gemdirect/story", params={"name": "demo/story.json"},
                        json={"story": raw, "base_hash": story["hash"]})
    assert status == 200, body
    on_disk = json.loads(home["story_path"].read_text())
    assert [s["id"] for s in on_disk["scenes"]] == ["dusk", "dawn", "noon"]
    assert on_disk["x_editor"] == {"note": "kept"}
    assert [s["id"] for s in body["scenes"]] == ["dusk", "dawn", "noon"] and body["hash"] != story["hash"]


def test_runs_and_run_detail(home):
    status, body = call("GET", "/gemdirect/runs", params={"story": "lighthouse"})
    assert status == 200
    [run] = body["runs"]
    assert run["run_id"] == home["run_id"] and run["done"] == ["dawn"] and run["pending"] == ["noon", "dusk"]
    status, detail = call("GET", "/gemdirect/run", params={"story": "lighthouse", "run": home["run_id"]})
    assert status == 200
    dawn = detail["scenes"]["dawn"]
    assert dawn["success"] is True and dawn["cfg"] == 5.2 and dawn["steps"] == 16
    assert dawn["vram_before_mb"] == 2048.0 and dawn["elapsed_seconds"] == 68.5
    assert detail["run_dir"] == f"gemdirect/lighthouse/{home['run_id']}"


def test_thumbnail_is_the_rendered_last_frame_else_the_keyframe(home):
    status, headers, rendered = call("GET", "/gemdirect/thumbnail", raw=True,
                                     params={"name": "demo/story.json", "scene": "dawn", "run": home["run_id"]})
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert rendered == Path(home["run"].scenes_dir, "dawn_last.png").read_bytes()
    status, _, keyframe = call("GET", "/gemdirect/thumbnail", raw=True,
                               params={"name": "demo/story.json", "scene": "noon", "run": home["run_id"]})
    assert status == 200
    assert keyframe == (home["story_path"].parent / "keyframes" / "noon.png").read_bytes()


def test_video_of_an_unrendered_scene_is_404(home):
    params = {"story": "lighthouse", "run": home["run_id"], "scene": "noon"}
    status, body = call("GET", "/gemdirect/video", params=params)
    assert status == 404 and "no video" in body["error"]


def test_export_json_and_edl(home):
    status, headers, text = call("GET", "/gemdirect/export", raw=True,
                                 params={"name": "demo/story.json", "format": "json", "run": home["run_id"]})
    assert status == 200 and f'lighthouse-{home["run_id"]}.json' in headers["Content-Disposition"]
    document = json.loads(text)
    assert document["schema"] == "gemdirect.export/1" and document["run"]["done"] == ["dawn"]
    status, headers, text = call("GET", "/gemdirect/export", raw=True,
                                 params={"name": "demo/story.json", "format": "edl"})
    assert status == 200
    lines = text.decode().splitlines()
    assert lines[:2] == ["TITLE: The Lighthouse Keeper", "FCM: NON-DROP FRAME"]
    # 49 + 49 + 57 frames at 16 fps from 01:00:00:00
    assert lines[3] == "001  AX       V     C        00:00:00:00 00:00:03:01 01:00:00:00 01:00:03:01"
    assert lines[11] == "003  AX       V     C        00:00:00:00 00:00:03:09 01:00:06:02 01:00:09:11"


def test_import_writes_a_valid_story(home):
    story = {"schema": "gemdirect.story/1", "title": "Imported", "scenes": [{"id": "one", "prompt": "a red door"}]}
    status, body = call("POST", "/gemdirect/import", json={"name": "imported/story.json", "story": story})
    assert status == 200, body
    assert json.loads((home["home"] / "input/gemdirect/imported/story.json").read_text()) == story
    # a file's text works too, and overwrite replaces it
    text = json.dumps({**story, "title": "Imported again"})
    status, body = call("POST", "/gemdirect/import", json={"name": "imported/story.json", "story": text,
                                                          "overwrite": True})
    assert status == 200 and body["title"] == "Imported again"


@pytest.mark.parametrize("case", json.loads(EDL_CASES.read_text())["cases"], ids=lambda case: case["name"])
def test_edl_writer_matches_the_hand_computed_lists(case):
    from fractions import Fraction

    events = [edl.EdlEvent(e["clip"], e["frames"], Fraction(str(e.get("fps", case["fps"]))), e.get("comment", ""))
              for e in case["events"]]
    assert edl.write_edl(case["title"], events, Fraction(str(case["fps"]))) == "\n".join(case["expected"])


# --------------------------------------------------------------------------- hostile requests


def _outside(home: Path) -> Path:
    outside = home / "elsewhere"
    outside.mkdir(exist_ok=True)
    (outside / "story.json").write_text(json.dumps(
        {"title": "Outside", "scenes": [{"id": "x", "prompt": "not yours"}]}))
    return outside


def hostile_requests(home: dict) -> list[tuple[str, str, dict, int]]:
    run_id = home["run_id"]
    demo = {"name": "demo/story.json"}
    story = json.loads(home["story_path"].read_text())
    return [
        ("GET", "/gemdirect/story", {"params": {"name": "../../output/gemdirect/x.json"}}, 400),
        ("GET", "/gemdirect/story", {"params": {"name": "/etc/passwd"}}, 400),
        ("GET", "/gemdirect/story?name=%2e%2e%2f%2e%2e%2fuser%2fstory.json", {}, 400),  # encoded ../
        ("GET", "/gemdirect/story?name=%252e%252e%252fstory.json", {}, 400),  # double-encoded ../
        ("GET", "/gemdirect/story", {"params": {"name": "demo\\..\\..\\story.json"}}, 400),
        ("GET", "/gemdirect/story", {"params": {"name": "C:/Windows/story.json"}}, 400),
        ("GET", "/gemdirect/story?name=demo%00/story.json", {}, 400),
        ("GET", "/gemdirect/story", {"params": {"name": "escape.json"}}, 403),  # symlink to a file outside
        ("GET", "/gemdirect/story", {"params": {"name": "linked/story.json"}}, 403),  # symlinked folder
        ("GET", "/gemdirect/story", {"params": {"name": "nowhere/story.json"}}, 404),
        ("GET", "/gemdirect/story", {}, 400),
        ("PUT", "/gemdirect/story", {"params": demo, "data": b"x" * (engine.MAX_BODY_BYTES + 1)}, 413),
        ("PUT", "/gemdirect/story", {"params": demo, "data": b'{"story": {"title": "x",'}, 400),
        ("PUT", "/gemdirect/story", {"params": demo, "data": b'{"story": {"title": NaN}}'}, 400),
        ("PUT", "/gemdirect/story", {"params": demo, "data": b"\xff\xfe{}"}, 400),
        ("PUT", "/gemdirect/story", {"params": demo, "json": []}, 400),
        ("PUT", "/gemdirect/story", {"params": demo, "json": {"story": "scenes"}}, 400),
        ("PUT", "/gemdirect/story", {"params": demo, "json": {"story": {"title": "x", "scenes": "nope"}}}, 422),
        ("PUT", "/gemdirect/story", {"params": demo, "json": {"story": {**story, "scenes": [
            {**story["scenes"][0], "cfg": "high"}]}}}, 422),
        ("PUT", "/gemdirect/story", {"params": demo, "json": {"story": {**story, "scenes": [
            {**story["scenes"][0], "keyframe": "../../../../etc/passwd"}]}}}, 422),
        ("PUT", "/gemdirect/story", {"params": demo, "json": {"story": story, "base_hash": "0" * 64}}, 409),
        ("PUT", "/gemdirect/story", {"params": demo, "json": {"story": story, "base_hash": 7}}, 400),
        ("PUT", "/gemdirect/story", {"params": {"name": "../story.json"}, "json": {"story": story}}, 400),
        ("PUT", "/gemdirect/story", {"params": {"name": "new/story.json"}, "json": {"story": story}}, 404),
        ("GET", "/gemdirect/runs", {"params": {"story": "../lighthouse"}}, 400),
        ("GET", "/gemdirect/run", {"params": {"story": "lighthouse", "run": "../../../etc"}}, 400),
        ("GET", "/gemdirect/run", {"params": {"story": "lighthouse", "run": "20990101-000000-ffff"}}, 404),
        ("GET", "/gemdirect/thumbnail", {"params": {**demo, "scene": "../../x"}}, 400),
        ("GET", "/gemdirect/thumbnail", {"params": {**demo, "scene": "missing"}}, 404),
        ("GET", "/gemdirect/video", {"params": {"story": "lighthouse", "run": run_id, "scene": "..%2fdawn"}}, 400),
        ("GET", "/gemdirect/export", {"params": {**demo, "format": "exe"}}, 400),
        ("POST", "/gemdirect/import", {"json": {"name": "../../user/story.json", "story": story}}, 400),
        ("POST", "/gemdirect/import", {"json": {"name": "demo/story.json", "story": story}}, 409),
        ("POST", "/gemdirect/import", {"json": {"name": "fresh/story.json", "story": {**story, "scenes": [
            {"id": "a", "prompt": "p", "cfg": 99}]}}}, 422),
        ("POST", "/gemdirect/import", {"json": {"name": "fresh/story.json", "story": "{not json"}}, 400),
        ("POST", "/gemdirect/import", {"json": {"name": "fresh/story.json", "story": story, "overwrite": "yes"}}, 400),
        ("POST", "/gemdirect/import", {"json": {"name": "linked/new.json", "story": story}}, 403),
    ]


def test_hostile_requests_get_4xx_and_change_nothing(home):
    outside = _outside(home["home"])
    stories = home["home"] / "input" / "gemdirect"
    os.symlink(outside / "story.json", stories / "escape.json")
    os.symlink(outside, stories / "linked")
    before = snapshot(home["home"])
    cases = hostile_requests(home)
    assert len(cases) >= 10

    async def go():
        results = []
        async with TestClient(TestServer(comfy_like_app())) as client:
            for method, path, kwargs, _ in cases:
                response = await client.request(method, path, **kwargs)
                results.append((response.status, await response.json()))
        return results

    for (method, path, kwargs, expected), (status, body) in zip(cases, asyncio.run(go()), strict=True):
        assert status == expected, (method, path, kwargs.get("params"), body)
        assert isinstance(body.get("error"), str) and body["error"], body
    assert snapshot(home["home"]) == before


def test_a_bad_story_names_each_field(home):
    story = json.loads(home["story_path"].read_text())
    story["scenes"][1]["cfg"] = 30
    story["scenes"][2]["steps"] = "many"
    status, body = call("PUT", "/gemdirect/story", params={"name": "demo/story.json"}, json={"story": story})
    assert status == 422
    paths = {issue["path"] for issue in body["issues"]}
    assert {"scenes[1].cfg", "scenes[2].steps"} <= paths


# --------------------------------------------------------------------------- stale scenes


def run_detail(home, **params):
    return call("GET", "/gemdirect/run", params={"story": "lighthouse", "run": home["run_id"], **params})


def edit_demo(home, change):
    raw = json.loads(home["story_path"].read_text())
    change(raw)
    home["story_path"].write_text(json.dumps(raw, indent=2))


def test_run_states_are_fresh_after_rendering_and_the_regenerate_list_is_empty(home):
    render_demo_scenes(home, ["dawn", "noon", "dusk"])
    status, body = run_detail(home, name="demo/story.json")
    assert status == 200, body
    assert body["states"] == [{"scene": s, "state": "fresh", "reasons": []} for s in ("dawn", "noon", "dusk")]
    assert body["regenerate"] == [] and body["states_against"] == "demo/story.json"


def test_an_edited_last_scene_is_stale_with_the_reason_and_is_all_there_is_to_regenerate(home):
    render_demo_scenes(home, ["dawn", "noon", "dusk"])
    edit_demo(home, lambda raw: raw["scenes"][2].update(prompt=raw["scenes"][2]["prompt"] + " Rain."))
    for params in ({"name": "demo/story.json"}, {}):  # by name, or the story found by its id
        status, body = run_detail(home, **params)
        assert status == 200, body
        assert [s["state"] for s in body["states"]] == ["fresh", "fresh", "stale"]
        assert body["states"][2]["reasons"] == ["prompt changed"]
        assert body["regenerate"] == ["dusk"] and body["states_against"] == "demo/story.json"


def test_a_changed_middle_scene_makes_its_chained_successor_stale_in_play_order(home):
    render_demo_scenes(home, ["dawn", "noon", "dusk"])
    edit_demo(home, lambda raw: raw["scenes"][1].update(seed=7))
    status, body = run_detail(home, name="demo/story.json")
    assert status == 200, body
    states = {s["scene"]: s for s in body["states"]}
    assert states["noon"]["state"] == "stale" and "seed changed" in states["noon"]["reasons"][0]
    assert states["dusk"]["state"] == "stale" and "chained to 'noon', which is stale" in states["dusk"]["reasons"]
    assert body["regenerate"] == ["noon", "dusk"]


def test_missing_and_failed_scenes_are_in_the_regenerate_list(home):
    render_demo_scenes(home, ["dawn"])
    run = home["run"]
    ledger = pack_module("nodes.run.ledger")
    from run_helpers import scene_record
    ledger.record_scene(run, scene_record("noon", 2, success=False))
    status, body = run_detail(home, name="demo/story.json")
    assert status == 200, body
    assert [(s["scene"], s["state"]) for s in body["states"]] == [
        ("dawn", "fresh"), ("noon", "failed"), ("dusk", "missing")]
    assert "out of memory" in body["states"][1]["reasons"][0]
    assert body["regenerate"] == ["noon", "dusk"]


def test_a_bad_story_gives_422_naming_the_field_and_another_storys_name_400(home):
    render_demo_scenes(home, ["dawn"])
    edit_demo(home, lambda raw: raw["scenes"][1].update(cfg=99))
    status, body = run_detail(home, name="demo/story.json")
    assert status == 422 and body["issues"][0]["path"].startswith("scenes[1].cfg"), body
    # without a name the invalid story is not the one compared with: the run's recorded story is
    status, body = run_detail(home)
    assert status == 200, body
    assert body["states_against"].startswith("the story recorded in the run")
    other = home["home"] / "input" / "gemdirect" / "other" / "story.json"
    other.parent.mkdir()
    other.write_text(json.dumps({"title": "Other", "scenes": [{"id": "a", "prompt": "a cat", "duration": 1}]}))
    status, body = run_detail(home, name="other/story.json")
    assert status == 400 and "not 'lighthouse'" in body["error"], body
    status, body = run_detail(home, name="../etc/story.json")
    assert status == 400


def test_the_start_match_of_a_chained_scene_is_in_the_run_view(home):
    from run_helpers import scene_record
    record = scene_record("noon", 2, bookend=30.0)
    record["Telemetry"]["StartMatch"] = {"PSNR": 24.5, "SSIM": 0.71, "Verdict": "fail", "Threshold": 28.0}
    # written as the file Scene Save leaves (the schema with StartMatch comes with the seam check)
    path = pack_module("nodes.run.ledger").scene_paths(home["run"], "noon").record
    pack_module("nodes.run.atomic").atomic_write_json(path, record)
    status, body = run_detail(home)
    assert status == 200, body
    assert body["scenes"]["noon"]["start_match"] == {"psnr": 24.5, "ssim": 0.71, "verdict": "fail", "threshold": 28.0}
    assert body["scenes"]["dawn"]["start_match"] is None


def test_the_run_view_lists_each_vace_transition_and_the_ones_to_regenerate(home):
    from vace_helpers import record_clip

    render_demo_scenes(home, ["dawn", "noon", "dusk"])
    edit_demo(home, lambda raw: raw["scenes"][0].update(transition={"kind": "vace", "frames": 8}))
    status, body = run_detail(home, name="demo/story.json")
    assert status == 200, body
    assert body["transitions"] == [{"index": 1, "from": "dawn", "to": "noon", "state": "missing",
                                    "reasons": [f"not made in run {home['run'].run_id}"]}]
    assert body["regenerate_transitions"] == [1]
    record_clip(home["run"], "dawn", "noon", context=4)
    _status, body = run_detail(home, name="demo/story.json")
    assert [t["state"] for t in body["transitions"]] == ["fresh"] and body["regenerate_transitions"] == []
