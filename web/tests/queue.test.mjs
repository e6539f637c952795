import assert from "node:assert/strict";
import { test } from "node:test";
import { bypassedKinds, queueItems, staleTransitionsPlan, vaceTransitions } from "../js/lib/queue.js";

const story = {
  scenes: [
    { id: "a", transition: { kind: "vace", frames: 8 } },
    { id: "b", transition: { kind: "crossfade", frames: 8 } },
    { id: "c", transition: { kind: "vace", frames: 8 } },
    { id: "d", transition: { kind: "vace", frames: 8 } }, // the last scene joins nothing
  ],
};

test("vace transitions are counted from 1 in play order, the last scene's ignored", () => {
  assert.deepEqual(vaceTransitions(story), [{ index: 1, from: "a", to: "b" }, { index: 2, from: "c", to: "d" }]);
  assert.deepEqual(vaceTransitions(null), []);
});

test("scenes are queued first, then every transition", () => {
  const { items, skipped } = queueItems({
    scenes: ["a", "b", "c", "d"], transitions: vaceTransitions(story), graph: { makesScenes: true, makesTransitions: true },
  });
  assert.deepEqual(items.map((i) => `${i.kind}:${i.id}:${i.index}`),
    ["scene:a:1", "scene:b:2", "scene:c:3", "scene:d:4", "transition:a--b:1", "transition:c--d:2"]);
  assert.deepEqual(skipped, []);
  assert.deepEqual(bypassedKinds(items[0]), ["transition"]);
  assert.deepEqual(bypassedKinds(items[5]), ["scene"]);
});

test("what the open workflow cannot make is skipped and said", () => {
  const scenesOnly = queueItems({ scenes: ["a", "b"], transitions: vaceTransitions(story), graph: { makesScenes: true } });
  assert.deepEqual(scenesOnly.items.map((i) => i.kind), ["scene", "scene"]);
  assert.match(scenesOnly.skipped[0], /2 VACE transition\(s\) not queued: the open workflow has no VACE Prep/);
  const vaceOnly = queueItems({ scenes: ["a"], transitions: vaceTransitions(story), graph: { makesScenes: false, makesTransitions: true } });
  assert.deepEqual(vaceOnly.items.map((i) => i.id), ["a--b", "c--d"]);
  assert.match(vaceOnly.skipped[0], /1 scene\(s\) not queued: the open workflow has no Scene Save/);
});

test("given indices are kept (regenerate stale scenes)", () => {
  const { items } = queueItems({ scenes: ["c"], indices: [3], graph: { makesScenes: true } });
  assert.deepEqual(items, [{ kind: "scene", id: "c", index: 3 }]);
});

test("regenerate stale transitions queues exactly the route's stale and missing ones", () => {
  const run = { regenerate_transitions: [2], transitions: [
    { index: 1, from: "a", to: "b", state: "fresh", reasons: [] },
    { index: 2, from: "c", to: "d", state: "stale", reasons: ["'c' was rendered again since the transition was made"] }] };
  const plan = staleTransitionsPlan(story, run);
  assert.equal(plan.enabled, true);
  assert.deepEqual(plan.transitions, [{ index: 2, from: "c", to: "d" }]);
  assert.match(plan.title, /2\. c -> d: stale \('c' was rendered again/);
  assert.match(staleTransitionsPlan(story, { ...run, regenerate_transitions: [] }).reason, /every transition is fresh/);
  assert.match(staleTransitionsPlan(story, { regenerate_transitions: [3] }).reason, /story changed/);
  assert.match(staleTransitionsPlan(story, {}).reason, /no transition states/);
  assert.match(staleTransitionsPlan({ scenes: [{ id: "a" }] }, run).reason, /no vace transition/);
});
