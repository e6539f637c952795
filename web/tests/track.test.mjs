import assert from "node:assert/strict";
import { test } from "node:test";
import {
  layoutTrack, locate, monitorToTrack, nextInPlaylist, rulerTicks, seams, setTransition, stepZoom, timeAtX,
  trackToMonitor, xAtTime,
} from "../js/lib/track.js";
import { acceptField, withCameraMove } from "../js/lib/suggest.js";

// the demo's plan: 3.0 / 3.0 / 3.5 s asked, 49 / 49 / 57 frames (4n + 1) at 16 fps
const scenes = [
  { id: "dawn", frames: 49, fps: 16, duration_seconds: 3.0625, transition: { kind: "crossfade", frames: 8 } },
  { id: "noon", frames: 49, fps: 16, duration_seconds: 3.0625, transition: { kind: "crossfade", frames: 12 } },
  { id: "dusk", frames: 57, fps: 16, duration_seconds: 3.5625, transition: { kind: "cut", frames: 0 } },
];

test("clips sit back to back, widths exactly proportional to seconds, zoom scales all", () => {
  const track = layoutTrack(scenes, { pxPerSecond: 56 });
  assert.deepEqual(track.clips.map((c) => [c.x, c.width]), [[0, 171.5], [171.5, 171.5], [343, 199.5]]);
  assert.deepEqual(track.clips.map((c) => c.startFrame), [0, 49, 98]);
  assert.equal(track.seconds, 9.6875);
  assert.equal(track.frames, 155);
  const zoomed = layoutTrack(scenes, { pxPerSecond: 56, zoom: 2 });
  assert.deepEqual(zoomed.clips.map((c) => c.width), [343, 343, 399]);
  assert.equal(zoomed.clips[2].width / zoomed.clips[0].width, 3.5625 / 3.0625);
  assert.equal(stepZoom(1, 1), 1.5);
  assert.equal(stepZoom(1, -1), 0.75);
  assert.equal(stepZoom(8, 1), 8);
  assert.equal(stepZoom(0.25, -1), 0.25);
});

test("seams carry each scene's transition to the next, at the boundary", () => {
  const track = layoutTrack(scenes, { pxPerSecond: 56 });
  assert.deepEqual(seams(scenes, track).map((s) => [s.from, s.to, s.x, s.label, s.seconds]),
    [["dawn", "noon", 171.5, "crossfade 8 f", 0.5], ["noon", "dusk", 343, "crossfade 12 f", 0.75]]);
  const cut = seams([{ ...scenes[0], transition: { kind: "cut", frames: 8 } }, scenes[1]], layoutTrack(scenes.slice(0, 2)));
  assert.equal(cut[0].label, "cut");
  assert.equal(cut[0].frames, 0);
});

test("the ruler labels seconds and frames, at least minGap px apart", () => {
  const ticks = rulerTicks(9.6875, 56, 16, 64);
  assert.deepEqual(ticks.map((t) => t.label), ["0 s · 0 f", "2 s · 32 f", "4 s · 64 f", "6 s · 96 f", "8 s · 128 f"]);
  assert.deepEqual(rulerTicks(3, 300, 16, 64).map((t) => t.label).slice(0, 3), ["0 s · 0 f", "0.25 s · 4 f", "0.5 s · 8 f"]);
});

test("time, pixels and the monitor's clock map both ways", () => {
  const track = layoutTrack(scenes, { pxPerSecond: 56 });
  assert.equal(timeAtX(track, 171.5), 3.0625);
  assert.equal(xAtTime(track, 20), track.width);
  assert.deepEqual([locate(track, 3.0).clip.id, locate(track, 3.0625).clip.id, locate(track, 99).clip.id], ["dawn", "noon", "dusk"]);
  assert.equal(locate(track, 4).offset, 4 - 3.0625);
  // the film is shorter than the track by its overlaps (8 + 12 frames): proportional
  const filmSeconds = (155 - 20) / 16;
  assert.equal(monitorToTrack(track, { kind: "film" }, filmSeconds / 2, filmSeconds), track.seconds / 2);
  assert.equal(trackToMonitor(track, { kind: "film" }, track.seconds / 4, filmSeconds).time, filmSeconds / 4);
  assert.equal(monitorToTrack(track, { kind: "scene", scene: "noon" }, 1, 3.0625), 4.0625);
  assert.deepEqual(trackToMonitor(track, { kind: "scene", scene: "dawn" }, 7, 3.0625), { scene: "dusk", time: 7 - 6.125 });
  assert.equal(nextInPlaylist(["dawn", "dusk"], "dawn"), "dusk");
  assert.equal(nextInPlaylist(["dawn", "dusk"], "dusk"), null);
});

test("setTransition edits one scene's transition and keeps unknown fields", () => {
  const raw = { title: "t", x_custom: 1, scenes: [{ id: "a", prompt: "p", transition: { kind: "cut", easing: "linear" } }, { id: "b", prompt: "q" }] };
  const next = setTransition(raw, "a", "crossfade", 10);
  assert.deepEqual(next.scenes[0].transition, { kind: "crossfade", easing: "linear", frames: 10 });
  assert.deepEqual(setTransition(next, "a", "cut").scenes[0].transition, { kind: "cut", easing: "linear" });
  assert.equal(next.x_custom, 1);
  assert.equal(raw.scenes[0].transition.kind, "cut");
  assert.throws(() => setTransition(raw, "a", "wipe", 3), /not cut, crossfade or vace/);
});

test("acceptField puts each field where it belongs and records field, source and model", () => {
  const raw = { title: "t", assistant: { accepted: [{ scene: "a", text: "old" }], note: "kept" }, scenes: [
    { id: "a", prompt: "A lighthouse at dawn, slow push in", future_field: 3 }, { id: "b", prompt: "q" }] };
  const proposal = { fields: { prompt: "Wide shot of a lighthouse", negative: "people, text", camera: "tilt up" },
    source: "gemdirect.assistant/1", model: "test-llm-7b" };
  const camera = acceptField(raw, "a", "camera", proposal, "T1");
  assert.equal(camera.scenes[0].prompt, "A lighthouse at dawn, tilt up");
  const negative = acceptField(camera, "a", "negative", proposal, "T2");
  assert.equal(negative.scenes[0].negative, "people, text");
  assert.equal(negative.scenes[0].future_field, 3);
  assert.deepEqual(negative.assistant.accepted.slice(1), [
    { scene: "a", field: "camera", text: "tilt up", source: "gemdirect.assistant/1", model: "test-llm-7b", at: "T1" },
    { scene: "a", field: "negative", text: "people, text", source: "gemdirect.assistant/1", model: "test-llm-7b", at: "T2" }]);
  assert.equal(negative.assistant.note, "kept");
  assert.equal(acceptField(raw, "b", "prompt", proposal, "T").scenes[1].prompt, "Wide shot of a lighthouse");
  assert.equal(withCameraMove("The keeper climbs.", "tracking shot"), "The keeper climbs, tracking shot");
  assert.throws(() => acceptField(raw, "a", "seed", proposal, "T"), /not one of/);
  assert.throws(() => acceptField(raw, "zz", "prompt", proposal, "T"), /not in the story/);
});
