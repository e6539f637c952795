import assert from "node:assert/strict";
import { test } from "node:test";
import { regeneratePlan, renderMutes, stateMap } from "../js/lib/regenerate.js";

const doc = { scenes: [{ id: "dawn" }, { id: "noon" }, { id: "dusk" }] };
const run = (regenerate, states) => ({ run_id: "r1", regenerate, states });
const fresh = (id) => ({ scene: id, state: "fresh", reasons: [] });

test("Regenerate stale queues exactly the route's list, each at its position in the open story", () => {
  const plan = regeneratePlan(doc, run(["dusk"], [fresh("dawn"), fresh("noon"), { scene: "dusk", state: "stale", reasons: ["prompt changed"] }]));
  assert.equal(plan.enabled, true);
  assert.deepEqual(plan.scenes, ["dusk"]);
  assert.deepEqual(plan.indices, [3]);
  assert.equal(plan.title, "3. dusk: stale (prompt changed)");
});

test("stale, missing and failed scenes keep the route's play order and their own positions", () => {
  const reordered = { scenes: [{ id: "noon" }, { id: "dawn" }, { id: "dusk" }] };
  const plan = regeneratePlan(reordered, run(["noon", "dusk"], [
    { scene: "noon", state: "failed", reasons: ["its render failed: OOM"] }, fresh("dawn"),
    { scene: "dusk", state: "missing", reasons: ["not rendered in run r1"] }]));
  assert.deepEqual(plan.indices, [1, 3]);
  assert.match(plan.title, /^1\. noon: failed \(its render failed: OOM\)\n3\. dusk: missing/);
});

test("off, with the reason: no story, no run, nothing stale, no states, unknown scene, graph not ready", () => {
  assert.match(regeneratePlan(null, run([])).reason, /no story open/);
  assert.match(regeneratePlan(doc, null).reason, /no run open/);
  assert.match(regeneratePlan(doc, run([], [fresh("dawn")])).reason, /every scene of this run is fresh/);
  assert.match(regeneratePlan(doc, { run_id: "r", regenerate: null, states: null, states_error: "the scenes' states cannot be worked out: x" }).reason,
    /cannot be worked out: x/);
  assert.match(regeneratePlan(doc, { run_id: "r" }).reason, /no scene states/);
  assert.match(regeneratePlan(doc, run(["gone"], [])).reason, /gone not in the story as loaded; refresh/);
  const plan = regeneratePlan(doc, run(["dusk"], []), { ready: false, reason: "the open workflow has no Scene Select (gemDirect) node" });
  assert.deepEqual([plan.enabled, plan.scenes], [false, []]);
  assert.match(plan.reason, /Regenerate stale is off: the open workflow has no Scene Select/);
});

test("stateMap indexes the route's states by scene", () => {
  assert.equal(stateMap({}), null);
  assert.deepEqual(stateMap(run([], [fresh("dawn")])), { dawn: { state: "fresh", reasons: [] } });
});

test("Story Render is left out of every prompt but the last, unless it is used or the only output", () => {
  const nodes = [{ id: 7, linked: false, mode: 0 }, { id: 8, linked: true, mode: 0 }, { id: 9, linked: false, mode: 4 }];
  assert.deepEqual(renderMutes(nodes, 3, true), [[7], [7], []]);
  assert.deepEqual(renderMutes(nodes, 1, true), [[]]);
  assert.deepEqual(renderMutes(nodes, 3, false), [[], [], []]); // a render-only workflow keeps its render
});
