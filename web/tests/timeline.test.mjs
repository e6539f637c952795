import assert from "node:assert/strict";
import { test } from "node:test";
import {
  applyRunEvent, applySceneEvent, buildTimeline, cardWidth, editScene, moveScene, reorder, sceneOrder, sceneStatus,
  seamBadge, startMatch,
} from "../js/lib/timeline.js";

const doc = {
  title: "The Lighthouse Keeper",
  scenes: [
    { id: "dawn", title: "Dawn", prompt: "p1", frames: 49, fps_text: "16", duration_seconds: 3.0625, keyframe: "k/dawn.png" },
    { id: "noon", title: "", prompt: "p2", frames: 49, fps_text: "16", duration_seconds: 3.0625 },
    { id: "dusk", title: "Dusk", prompt: "p3", frames: 57, fps_text: "16", duration_seconds: 3.5625 },
  ],
};
const run = {
  run_id: "20261123-120000-abcd",
  scenes: {
    dawn: { success: true, warnings: [], bookend: null },
    noon: { success: true, warnings: [], bookend: { score: 31.5, status: "warn" } },
    dusk: { success: false, errors: ["out of memory"], warnings: [] },
  },
};

test("card width is proportional to seconds and clamped", () => {
  assert.equal(cardWidth(3, { pxPerSecond: 50, min: 100, max: 400 }), 150);
  assert.equal(cardWidth(6, { pxPerSecond: 50, min: 100, max: 400 }), 300);
  assert.equal(cardWidth(0.5, { pxPerSecond: 50, min: 100, max: 400 }), 100);
  assert.equal(cardWidth(60, { pxPerSecond: 50, min: 100, max: 400 }), 400);
});

test("cards carry title, duration, badge and the bookend against the previous card", () => {
  const cards = buildTimeline(doc, run, {}, { pxPerSecond: 40, min: 10, max: 1000 });
  assert.deepEqual(cards.map((c) => c.id), ["dawn", "noon", "dusk"]);
  assert.deepEqual(cards.map((c) => c.title), ["Dawn", "noon", "Dusk"]);
  assert.deepEqual(cards.map((c) => c.width), [123, 123, 143]);
  assert.equal(cards[0].duration, "3.06 s · 49 f");
  assert.deepEqual(cards.map((c) => c.status.state), ["done", "warning", "failed"]);
  assert.equal(cards[0].bookend, null);
  assert.deepEqual(cards[1].bookend, { score: 31.5, status: "warn" });
  assert.match(cards[1].status.title, /bookend 31.5 \(warn\)/);
});

test("without a run every scene is pending", () => {
  assert.deepEqual(buildTimeline(doc).map((c) => c.status.state), ["pending", "pending", "pending"]);
});

test("live events drive the badge: queued, rendering with percent, saving, failed", () => {
  let live = {};
  live = applySceneEvent(live, { scene_id: "noon", state: "queued", run_id: "r" });
  assert.equal(sceneStatus("noon", null, live).label, "queued");
  live = applySceneEvent(live, { scene_id: "noon", state: "rendering", percent: 42.4, run_id: "r" });
  assert.deepEqual(sceneStatus("noon", null, live), { state: "rendering", label: "rendering 42%", percent: 42.4, title: "" });
  live = applySceneEvent(live, { scene_id: "noon", state: "saving", run_id: "r" });
  assert.equal(sceneStatus("noon", null, live).label, "saving");
  live = applySceneEvent(live, { scene_id: "noon", state: "failed", message: "OOM", run_id: "r" });
  assert.deepEqual(sceneStatus("noon", null, live), { state: "failed", label: "failed", title: "OOM" });
  live = applySceneEvent(live, { scene_id: "noon", state: "done", run_id: "r" });
  assert.equal(sceneStatus("noon", null, live).state, "done");
});

test("malformed events leave the state alone; percent is clamped", () => {
  const live = { dawn: { state: "queued" } };
  assert.equal(applySceneEvent(live, null), live);
  assert.equal(applySceneEvent(live, { scene_id: "dawn", state: "exploded" }), live);
  assert.equal(applySceneEvent(live, { scene_id: 3, state: "done" }), live);
  assert.equal(applySceneEvent({}, { scene_id: "a", state: "rendering", percent: 250 }).a.percent, 100);
});

test("a run event marks done and failed scenes", () => {
  const live = applyRunEvent({}, { run_id: "r", done: ["dawn"], failed: ["noon"], pending: ["dusk"] });
  assert.equal(sceneStatus("dawn", null, live).state, "done");
  assert.equal(sceneStatus("noon", null, live).state, "failed");
  assert.equal(sceneStatus("dusk", null, live).state, "pending");
});

test("reorder moves one item and clamps the target", () => {
  assert.deepEqual(reorder(["a", "b", "c", "d"], 0, 2), ["b", "c", "a", "d"]);
  assert.deepEqual(reorder(["a", "b", "c", "d"], 3, 0), ["d", "a", "b", "c"]);
  assert.deepEqual(reorder(["a", "b", "c"], 1, 99), ["a", "c", "b"]);
  assert.deepEqual(reorder(["a", "b", "c"], 5, 0), ["a", "b", "c"]);
});

test("moveScene keeps unknown fields and does not touch the original", () => {
  const raw = { title: "T", x_tool: 1, scenes: [{ id: "a", extra: true }, { id: "b" }, { id: "c" }] };
  const moved = moveScene(raw, "c", 0);
  assert.deepEqual(sceneOrder(moved), ["c", "a", "b"]);
  assert.equal(moved.x_tool, 1);
  assert.equal(moved.scenes[1].extra, true);
  assert.deepEqual(sceneOrder(raw), ["a", "b", "c"]);
  assert.throws(() => moveScene(raw, "zzz", 0), /not in the story/);
});

test("editScene sets duration and drops frames (they are exclusive)", () => {
  const raw = { scenes: [{ id: "a", prompt: "x", frames: 49 }] };
  assert.deepEqual(editScene(raw, "a", { duration: 2.5 }).scenes[0], { id: "a", prompt: "x", duration: 2.5 });
  assert.deepEqual(editScene(raw, "a", { prompt: "y" }).scenes[0], { id: "a", prompt: "y", frames: 49 });
});

test("a recorded scene the run calls stale gets a stale badge with the reasons", () => {
  const staleRun = { ...run, scenes: { ...run.scenes, dusk: { success: true, warnings: ["cfg high"] } },
    states: [{ scene: "dawn", state: "fresh", reasons: [] }, { scene: "noon", state: "fresh", reasons: [] },
      { scene: "dusk", state: "stale", reasons: ["prompt changed", "chained to 'noon', which is stale"] }] };
  const status = sceneStatus("dusk", staleRun, {});
  assert.deepEqual(status, { state: "stale", label: "stale",
    title: "Stale: prompt changed; chained to 'noon', which is stale\ncfg high" });
  assert.equal(sceneStatus("dawn", staleRun, {}).state, "done");
  // a live render of the stale scene beats its old state
  assert.equal(sceneStatus("dusk", staleRun, { dusk: { state: "rendering", percent: 5 } }).state, "rendering");
});

test("the seam badge shows the start match beside the bookend score, and nothing extra without it", () => {
  assert.deepEqual(seamBadge({ score: 31.5, status: "pass" }, null),
    { text: "32", status: "pass", title: "Bookend similarity with the previous scene: 31.5 (pass)" });
  const seam = seamBadge({ score: 31.5, status: "pass" }, startMatch({ PSNR: 24.46, SSIM: 0.712, Verdict: "fail", Threshold: 28 }));
  assert.equal(seam.text, "32 · 24.5 dB");
  assert.equal(seam.status, "fail");
  assert.match(seam.title, /Start match \(first frame vs the start image it was given\): PSNR 24\.5 dB, SSIM 0\.712: fail, fail below 28 dB/);
  assert.deepEqual(seamBadge(null, null), { text: "·", status: "none", title: "Bookend: not measured yet" });
  assert.equal(startMatch({}), null);
  assert.equal(startMatch("x"), null);
});

test("cards take the start match from the run's record, else from the live event of the same run", () => {
  const withMatch = { ...run, scenes: { ...run.scenes, noon: { ...run.scenes.noon, start_match: { psnr: 35.2, ssim: 0.97, verdict: "pass", threshold: 28 } } } };
  let cards = buildTimeline(doc, withMatch, {});
  assert.equal(cards[1].seam.text, "32 · 35.2 dB");
  assert.equal(cards[0].startMatch, null); // the first card has no seam
  let live = applySceneEvent({}, { scene_id: "dusk", run_id: run.run_id, state: "saving", start_match: { PSNR: 20, SSIM: 0.5, Verdict: "fail", Threshold: 28 } });
  live = applySceneEvent(live, { scene_id: "dusk", run_id: run.run_id, state: "done" }); // kept through the render's later events
  cards = buildTimeline(doc, run, live);
  assert.equal(cards[2].seam.text, "20.0 dB");
  assert.equal(cards[2].seam.status, "fail");
  assert.equal(buildTimeline(doc, { ...run, run_id: "other" }, live)[2].startMatch, null); // another run's event
  live = applySceneEvent(live, { scene_id: "dusk", run_id: run.run_id, state: "queued" }); // a new render: cleared
  assert.equal(live.dusk.start_match, null);
});

test("a scene event as the nodes send it (scene, error) moves the badge", () => {
  // nodes/chain/states.py: {state, run_id, story_id, scene, index, time, ...}
  let live = applySceneEvent({}, { state: "queued", run_id: "r1", story_id: "s", scene: "noon", index: 2 });
  assert.equal(live.noon.state, "queued");
  live = applySceneEvent(live, { state: "failed", run_id: "r1", story_id: "s", scene: "noon", error: "VAE decode failed" });
  assert.deepEqual([live.noon.state, live.noon.message], ["failed", "VAE decode failed"]);
  assert.deepEqual(applySceneEvent({}, { state: "done", scene: { id: "x" } }), {});
});
