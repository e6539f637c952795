// What "Regenerate stale" queues, and how Story Render nodes take part in a run of queued scene
// prompts. Pure functions, no DOM, no ComfyUI: tested with node's test runner.

/** Scene id -> {state, reasons} from GET /gemdirect/run's `states` (null when the run has none). */
export function stateMap(run) {
  if (!run || !Array.isArray(run.states)) return null;
  return Object.fromEntries(run.states.map((s) => [s.scene, { state: s.state, reasons: s.reasons || [] }]));
}

/**
 * {enabled, reason, scenes, indices, title}: exactly the run's `regenerate` scenes in the order the
 * route gave (play order), each with its 1-based position in the open story (Scene Select's
 * scene_index). Off, with the reason, when there is no run, the route could not work states out,
 * nothing is stale, the story changed since the run was read, or the graph is not ready.
 */
export function regeneratePlan(storyDoc, run, readiness = { ready: true, reason: "" }) {
  const off = (reason) => ({ enabled: false, reason, scenes: [], indices: [], title: reason });
  if (!storyDoc) return off("Regenerate stale is off: no story open");
  if (!run) return off("Regenerate stale is off: no run open (pick a run of this story)");
  if (!Array.isArray(run.regenerate)) {
    return off(`Regenerate stale is off: ${run.states_error || "the run view has no scene states (an older pack's route)"}`);
  }
  if (!run.regenerate.length) return off("Regenerate stale is off: every scene of this run is fresh");
  const positions = new Map(storyDoc.scenes.map((s, i) => [s.id, i + 1]));
  const unknown = run.regenerate.filter((id) => !positions.has(id));
  if (unknown.length) return off(`Regenerate stale is off: ${unknown.join(", ")} not in the story as loaded; refresh (↻)`);
  if (readiness && !readiness.ready) return off(`Regenerate stale is off: ${readiness.reason}`);
  const states = stateMap(run) || {};
  const scenes = [...run.regenerate];
  const title = scenes.map((id) => `${positions.get(id)}. ${id}: ${(states[id] && states[id].state) || "stale"}` +
    `${states[id] && states[id].reasons.length ? ` (${states[id].reasons.join("; ")})` : ""}`).join("\n");
  return { enabled: true, reason: "", scenes, indices: scenes.map((id) => positions.get(id)), title };
}

/**
 * For a batch of `count` scene prompts: which Story Render nodes each prompt leaves out (muted).
 * nodes: [{id, linked, mode}] (linked: an output feeds another node). Story Render renders the film
 * in the last prompt only: in the earlier ones it is left out, unless something uses its outputs or
 * the graph would have no other output node (ComfyUI refuses a prompt without outputs). Returns
 * one array of node ids per prompt.
 */
export function renderMutes(nodes, count, hasOtherOutput) {
  const mutable = hasOtherOutput ? nodes.filter((n) => !n.linked && n.mode === 0).map((n) => n.id) : [];
  return Array.from({ length: count }, (_, i) => (i < count - 1 ? mutable : []));
}
