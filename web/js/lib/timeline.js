// The timeline model: cards from a story (GET /gemdirect/story), a run (GET /gemdirect/run) and the
// live websocket events; reordering. Pure functions, no DOM: tested with node's test runner.

export const LIVE_STATES = ["queued", "rendering", "saving", "done", "failed"];

/** Card width in px, proportional to seconds, clamped so short scenes stay clickable. */
export function cardWidth(seconds, { pxPerSecond = 56, min = 132, max = 520 } = {}) {
  const width = Math.round(seconds * pxPerSecond);
  return Math.min(max, Math.max(min, width));
}

export function formatDuration(seconds, frames) {
  return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s · ${frames} f`;
}

/** The scene id of a gemdirect.scene event: `scene` as the nodes send it (nodes/chain/states.py), or
 * `scene_id` (the panel's own queued events). */
export const eventScene = (event) => (typeof event.scene_id === "string" ? event.scene_id
  : typeof event.scene === "string" ? event.scene : null);

/** live state map after one gemdirect.scene event ({story_id, run_id, scene | scene_id, state, percent?, message?, error?}). */
export function applySceneEvent(live, event) {
  const id = event ? eventScene(event) : null;
  if (!id || !LIVE_STATES.includes(event.state)) return live;
  const next = { ...live };
  next[id] = {
    state: event.state,
    percent: typeof event.percent === "number" ? Math.max(0, Math.min(100, event.percent)) : undefined,
    message: event.message || event.error || "",
    run_id: event.run_id,
    // the check comes with one event (saving/done); later events of the same render keep it
    start_match: startMatch(event.start_match)
      || (event.state !== "queued" && live[id] ? live[id].start_match || null : null),
  };
  return next;
}

/** live state map after a gemdirect.run event ({run_id, done[], failed[], pending[]}): the ledger's word wins. */
export function applyRunEvent(live, event) {
  if (!event) return live;
  const next = { ...live };
  for (const id of event.done || []) next[id] = { state: "done", run_id: event.run_id };
  for (const id of event.failed || []) next[id] = { state: "failed", run_id: event.run_id };
  return next;
}

/** A start-match check ({PSNR, SSIM, Verdict, Threshold} from telemetry/events, or the route's
 * lower-case view) as {psnr, ssim, verdict, threshold}; null when absent or not a check. */
export function startMatch(value) {
  if (!value || typeof value !== "object") return null;
  const pick = (a, b) => (value[a] !== undefined ? value[a] : value[b]);
  const check = { psnr: pick("psnr", "PSNR"), ssim: pick("ssim", "SSIM"), verdict: pick("verdict", "Verdict"),
    threshold: pick("threshold", "Threshold") };
  return typeof check.psnr === "number" || typeof check.ssim === "number" || check.verdict ? check : null;
}

const STATUS_RANK = { none: 0, pass: 1, warn: 2, fail: 3 };

/**
 * The seam badge between two cards: {text, status, title}. The bookend score, and beside it the
 * start match (PSNR of the scene's first frame against the start image it was given) when the scene
 * has one; status is the worse of the two (pass | warn | fail | none).
 */
export function seamBadge(bookend, match) {
  const parts = [];
  const titles = [];
  let status = "none";
  const worse = (s) => { if ((STATUS_RANK[s] || 0) > STATUS_RANK[status]) status = s; };
  if (bookend && typeof bookend.score === "number") {
    parts.push(bookend.score.toFixed(0));
    titles.push(`Bookend similarity with the previous scene: ${bookend.score} (${bookend.status})`);
    worse(bookend.status);
  } else {
    titles.push("Bookend: not measured yet");
  }
  if (match) {
    const psnr = typeof match.psnr === "number" ? `${match.psnr.toFixed(1)} dB` : "? dB";
    parts.push(psnr);
    const ssim = typeof match.ssim === "number" ? `, SSIM ${match.ssim.toFixed(3)}` : "";
    const limit = typeof match.threshold === "number" ? `, fail below ${match.threshold} dB` : "";
    titles.push(`Start match (first frame vs the start image it was given): PSNR ${psnr}${ssim}: ${match.verdict || "?"}${limit}`);
    worse(match.verdict === "fail" ? "fail" : match.verdict === "pass" ? "pass" : "none");
  }
  return { text: parts.length ? parts.join(" · ") : "·", status, title: titles.join("\n") };
}

/**
 * A scene's badge: {state, label, percent?, title}. state is one of
 * pending | queued | rendering | done | warning | stale | failed. A live event beats the run's
 * record; a recorded scene the run's `states` call stale shows `stale` with the reasons.
 */
export function sceneStatus(sceneId, run, live = {}) {
  const event = live[sceneId];
  if (event && (!run || !event.run_id || event.run_id === run.run_id || event.state !== "done")) {
    if (event.state === "queued") return { state: "queued", label: "queued", title: event.message || "" };
    if (event.state === "rendering" || event.state === "saving") {
      const pct = event.percent === undefined ? "" : ` ${Math.round(event.percent)}%`;
      const word = event.state === "saving" ? "saving" : "rendering";
      return { state: "rendering", label: `${word}${pct}`, percent: event.percent, title: event.message || "" };
    }
    if (event.state === "failed") return { state: "failed", label: "failed", title: event.message || "" };
  }
  const record = run && run.scenes ? run.scenes[sceneId] : undefined;
  if (record) {
    if (record.success === false) return { state: "failed", label: "failed", title: (record.errors || []).join("; ") };
    const fresh = Array.isArray(run.states) ? run.states.find((s) => s.scene === sceneId) : undefined;
    if (fresh && fresh.state === "stale") {
      const why = [`Stale: ${(fresh.reasons || []).join("; ") || "its inputs changed"}`, ...(record.warnings || [])];
      return { state: "stale", label: "stale", title: why.join("\n") };
    }
    const bookendBad = record.bookend && ["warn", "fail"].includes(record.bookend.status);
    if ((record.warnings && record.warnings.length) || bookendBad) {
      const why = [...(record.warnings || [])];
      if (bookendBad) why.push(`bookend ${record.bookend.score} (${record.bookend.status})`);
      return { state: "warning", label: "warning", title: why.join("; ") };
    }
    return { state: "done", label: "done", title: "" };
  }
  if (event && event.state === "done") return { state: "done", label: "done", title: event.message || "" };
  return { state: "pending", label: "pending", title: "" };
}

/** Cards in play order: everything the view draws for one scene. */
export function buildTimeline(storyDoc, run = null, live = {}, options = {}) {
  const scenes = storyDoc && Array.isArray(storyDoc.scenes) ? storyDoc.scenes : [];
  return scenes.map((scene, i) => {
    const record = run && run.scenes ? run.scenes[scene.id] : undefined;
    const bookend = record && record.bookend && i > 0 ? record.bookend : null;
    const event = live[scene.id];
    const eventMatch = event && (!run || !event.run_id || event.run_id === run.run_id) ? event.start_match : null;
    const match = i > 0 ? startMatch(record && record.start_match) || eventMatch || null : null;
    return {
      id: scene.id,
      index: i + 1,
      title: scene.title || scene.id,
      prompt: scene.prompt,
      frames: scene.frames,
      seconds: scene.duration_seconds,
      duration: formatDuration(scene.duration_seconds, scene.frames),
      width: cardWidth(scene.duration_seconds, options),
      status: sceneStatus(scene.id, run, live),
      bookend, // against the previous card: shown between the two
      startMatch: match, // this scene's first frame against the start image it was given
      seam: seamBadge(bookend, match),
      record: record || null,
      hasKeyframe: Boolean(scene.keyframe),
    };
  });
}

/** A copy of list with the item at from moved to index to (both clamped). */
export function reorder(list, from, to) {
  const items = [...list];
  if (from < 0 || from >= items.length) return items;
  const target = Math.max(0, Math.min(items.length - 1, to));
  const [moved] = items.splice(from, 1);
  items.splice(target, 0, moved);
  return items;
}

/** A copy of the raw story with scene sceneId moved to position toIndex (0-based); unknown fields kept. */
export function moveScene(rawStory, sceneId, toIndex) {
  const scenes = rawStory.scenes || [];
  const from = scenes.findIndex((s) => s.id === sceneId);
  if (from < 0) throw new Error(`scene ${sceneId} is not in the story`);
  return { ...rawStory, scenes: reorder(scenes, from, toIndex) };
}

/** Scene ids in order: to compare a proposed order with the saved one. */
export const sceneOrder = (rawStory) => (rawStory.scenes || []).map((s) => s.id);

/** A copy of the raw story with one scene's fields changed ({prompt} or {duration}); frames/duration exclusive. */
export function editScene(rawStory, sceneId, changes) {
  const scenes = (rawStory.scenes || []).map((scene) => {
    if (scene.id !== sceneId) return scene;
    const next = { ...scene, ...changes };
    if ("duration" in changes) delete next.frames;
    if ("frames" in changes) delete next.duration;
    return next;
  });
  return { ...rawStory, scenes };
}
