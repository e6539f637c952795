// What Generate queues and in which order: the story's scenes, then every VACE transition, the film
// rendered by the last prompt. Pure functions, no DOM, no ComfyUI: tested with node's test runner.

/** The story's VACE transitions in play order: [{index, from, to}] (index: VACE Prep's transition_index,
 * counting the story's vace transitions from 1; the last scene's transition joins nothing). */
export function vaceTransitions(storyDoc) {
  const scenes = (storyDoc && storyDoc.scenes) || [];
  const found = [];
  scenes.slice(0, -1).forEach((scene, i) => {
    if (scene.transition && scene.transition.kind === "vace") {
      found.push({ index: found.length + 1, from: scene.id, to: scenes[i + 1].id });
    }
  });
  return found;
}

/**
 * The prompts to queue, in order: {items: [{kind: "scene"|"transition", id, index}], skipped: [text]}.
 * Scenes first (Scene Select's scene_index), then transitions (VACE Prep's transition_index): a
 * transition joins saved scenes, so it comes after them. graph: {makesScenes (a Scene Save in the open
 * workflow), makesTransitions (a VACE Prep)}; what the open workflow cannot make is skipped, saying why.
 */
export function queueItems({ scenes = [], indices = null, transitions = [], graph = {} }) {
  const items = [];
  const skipped = [];
  if (scenes.length && graph.makesScenes === false) {
    skipped.push(`${scenes.length} scene(s) not queued: the open workflow has no Scene Save (gemDirect)`);
  } else {
    scenes.forEach((id, i) => items.push({ kind: "scene", id, index: indices && indices[i] !== undefined ? indices[i] : i + 1 }));
  }
  if (transitions.length && !graph.makesTransitions) {
    skipped.push(`${transitions.length} VACE transition(s) not queued: the open workflow has no VACE Prep (gemDirect); ` +
      "open story_vace_transitions.json (or add its VACE group to this workflow) to make them");
  } else {
    transitions.forEach((t) => items.push({ kind: "transition", id: `${t.from}--${t.to}`, index: t.index }));
  }
  return { items, skipped };
}

/** Which node kinds an item leaves out (bypassed): a scene prompt makes no transition (VACE Splice), a
 * transition prompt saves no scene (Scene Save; bypassed, so the RUN it passes on still reaches Story Render). */
export function bypassedKinds(item) {
  return item.kind === "scene" ? ["transition"] : ["scene"];
}

/**
 * {enabled, reason, transitions, title}: exactly the run's stale and missing VACE transitions (the
 * route's `regenerate_transitions` indices), as one action. Off, with the reason, otherwise.
 */
export function staleTransitionsPlan(storyDoc, run) {
  const off = (reason) => ({ enabled: false, reason, transitions: [], title: reason });
  if (!storyDoc) return off("Regenerate stale transitions is off: no story open");
  if (!run) return off("Regenerate stale transitions is off: no run open");
  if (!Array.isArray(run.regenerate_transitions)) {
    return off(`Regenerate stale transitions is off: ${run.transitions_error || "the run view has no transition states"}`);
  }
  const known = vaceTransitions(storyDoc);
  if (!known.length) return off("Regenerate stale transitions is off: the story has no vace transition");
  if (!run.regenerate_transitions.length) return off("Regenerate stale transitions is off: every transition is fresh");
  const states = new Map((run.transitions || []).map((t) => [t.index, t]));
  const chosen = known.filter((t) => run.regenerate_transitions.includes(t.index));
  if (chosen.length !== run.regenerate_transitions.length) {
    return off("Regenerate stale transitions is off: the story changed since the run was read; refresh (↻)");
  }
  const title = chosen.map((t) => {
    const state = states.get(t.index);
    return `${t.index}. ${t.from} -> ${t.to}: ${state ? state.state : "stale"}${state && state.reasons.length ? ` (${state.reasons.join("; ")})` : ""}`;
  }).join("\n");
  return { enabled: true, reason: "", transitions: chosen, title };
}
