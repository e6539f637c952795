// The story assistant's local heuristics: a prompt proposal for one scene from its place in the story
// (shot size), the camera moves around it (no same move twice in a row) and continuity with the
// previous scene (its subjects and palette). Deterministic: the same story gives the same text.

export const SOURCE = "gemdirect.heuristic/1";

const MOVES = [
  ["slow push in", /\b(push(es|ing)? in|dolly in|zoom(s|ing)? in)\b/i],
  ["slow pull out", /\b(pull(s|ing)? (out|back)|dolly out|zoom(s|ing)? out)\b/i],
  ["gentle pan right", /\bpan(s|ning)? right\b/i],
  ["gentle pan left", /\bpan(s|ning)? left\b/i],
  ["tilt up", /\btilt(s|ing)? up\b/i],
  ["tracking shot", /\b(tracking|follows?|following)\b/i],
  ["static camera", /\b(static|locked[- ]off)\b/i],
];
const SHOTS = [
  ["establishing wide shot", /\b(establishing|wide shot|extreme wide|aerial)\b/i],
  ["medium shot", /\bmedium shot\b/i],
  ["close-up", /\bclose[- ]?up\b/i],
];
const COLOURS = ["red", "orange", "amber", "gold", "golden", "yellow", "green", "teal", "blue", "cyan", "purple",
  "violet", "pink", "white", "black", "grey", "gray", "silver", "warm", "cold", "pastel"];
const STOP = new Set(["a", "an", "the", "same", "its", "his", "her", "their", "this", "that", "of", "on", "in", "at",
  "and", "with", "under", "over", "slow", "gentle", "soft", "cinematic", "light", "sky", "shot"]);

const words = (text) => (String(text || "").toLowerCase().match(/[a-z][a-z'-]*/g) || []);

/** Camera move named in a prompt, or null. */
export function cameraMove(prompt) {
  const found = MOVES.find(([, pattern]) => pattern.test(prompt || ""));
  return found ? found[0] : null;
}

export function shotSize(prompt) {
  const found = SHOTS.find(([, pattern]) => pattern.test(prompt || ""));
  return found ? found[0] : null;
}

/** Colour words of a prompt, in order of first use. */
export function palette(prompt) {
  return [...new Set(words(prompt).filter((w) => COLOURS.includes(w)))];
}

/** Subjects: the noun after each article ("a white lighthouse" -> lighthouse), up to three. */
export function subjects(prompt) {
  const list = words(prompt);
  const found = [];
  for (let i = 0; i < list.length; i++) {
    if (!["a", "an", "the"].includes(list[i])) continue;
    let j = i + 1;
    while (j < list.length && (COLOURS.includes(list[j]) || STOP.has(list[j]) || /(y|ing|ed|ful|ous)$/.test(list[j]))) j++;
    // an adjective before the noun: take the next word when the one after is still a noun candidate
    if (j + 1 < list.length && !STOP.has(list[j + 1]) && !["a", "an", "the"].includes(list[j + 1])
      && /^(white|rocky|old|small|big|tall|dark|calm|stormy|lone|young|little)$/.test(list[j])) j++;
    if (j < list.length && !STOP.has(list[j]) && !found.includes(list[j])) found.push(list[j]);
    if (found.length === 3) break;
  }
  return found;
}

/** Shot size for position index (0-based) of count: open wide, close wide, alternate in between. */
export function shotFor(index, count) {
  if (index === 0) return "establishing wide shot";
  if (index === count - 1 && count > 2) return "wide closing shot";
  return index % 2 === 1 ? "medium shot" : "close-up";
}

/** A move that differs from the previous scene's and the next scene's. */
export function moveFor(index, previousMove, nextMove) {
  const order = MOVES.map(([name]) => name);
  for (let k = 0; k < order.length; k++) {
    const candidate = order[(index + k) % order.length];
    if (candidate !== previousMove && candidate !== nextMove) return candidate;
  }
  return order[0];
}

/**
 * {text, source, reasons[]} for scene index (0-based) of a raw story ({scenes: [{id, title, prompt}]}).
 * The scene's own subject (its title, or its prompt's subjects) stays; shot, move and continuity are proposed.
 */
export function suggestPrompt(rawStory, index) {
  const scenes = rawStory.scenes || [];
  const scene = scenes[index];
  if (!scene) throw new Error(`no scene at position ${index + 1}`);
  const previous = scenes[index - 1];
  const next = scenes[index + 1];
  const reasons = [];
  const shot = shotFor(index, scenes.length);
  reasons.push(`${shot}: scene ${index + 1} of ${scenes.length}`);
  const prevMove = previous ? cameraMove(previous.prompt) : null;
  const ownMove = cameraMove(scene.prompt);
  let move = ownMove;
  if (ownMove && ownMove !== prevMove) {
    reasons.push(`${move}: the scene's own move, different from the previous scene's`);
  } else {
    move = moveFor(index, prevMove, next ? cameraMove(next.prompt) : null);
    reasons.push(prevMove ? `${move}: the previous scene already uses "${prevMove}"` : move);
  }
  const own = subjects(scene.prompt);
  // the scene's own subject: its prompt's first clause without any move or shot words
  let core = String(scene.prompt || scene.title || "").split(/,/)[0].trim() || scene.title || scene.id;
  for (const [, pattern] of [...MOVES, ...SHOTS]) core = core.replace(pattern, "").trim();
  const parts = [`${shot[0].toUpperCase()}${shot.slice(1)} of ${core.charAt(0).toLowerCase()}${core.slice(1)}`];
  if (previous) {
    const carried = subjects(previous.prompt).filter((s) => !own.includes(s)).slice(0, 2);
    if (carried.length) {
      parts.push(`the same ${carried.join(" and ")} as before`);
      reasons.push(`continuity: keeps ${carried.join(", ")} from scene ${index}`);
    }
    const colours = palette(previous.prompt).slice(0, 3);
    if (colours.length) {
      parts.push(`${colours.join(", ")} palette carried over`);
      reasons.push(`palette: ${colours.join(", ")} from scene ${index}`);
    }
  }
  parts.push(move, "consistent lighting", "cinematic");
  return { text: parts.join(", "), source: SOURCE, reasons };
}

/** A copy of the raw story with the accepted suggestion applied and recorded in story.assistant.accepted[]. */
export function acceptSuggestion(rawStory, sceneId, suggestion, when) {
  const scenes = (rawStory.scenes || []).map((s) => (s.id === sceneId ? { ...s, prompt: suggestion.text } : s));
  const assistant = { ...(rawStory.assistant || {}) };
  assistant.accepted = [...(assistant.accepted || []), { scene: sceneId, text: suggestion.text, source: suggestion.source, at: when }];
  return { ...rawStory, scenes, assistant };
}

export const ASSISTANT_FIELDS = ["prompt", "negative", "camera"];

/** The prompt with its camera move replaced by `move` (or `move` added at the end when it names none). */
export function withCameraMove(prompt, move) {
  const text = String(prompt || "").trim();
  const found = MOVES.find(([, pattern]) => pattern.test(text));
  if (found) {
    const adverb = new RegExp(`\\b(?:(?:slow|slowly|gentle|gently|fast|quick|smooth)\\s+)?(?:${found[1].source})`, "i");
    return text.replace(adverb, move);
  }
  return text ? `${text.replace(/[.,;\s]+$/, "")}, ${move}` : move;
}

/**
 * A copy of the raw story with one field of an endpoint's proposal accepted for scene sceneId:
 * prompt -> scene.prompt, negative -> scene.negative, camera -> the prompt's camera move (replaced,
 * else appended). Recorded in story.assistant.accepted[] as {scene, field, text, source, model, at};
 * every other field of the story and of assistant is kept.
 */
export function acceptField(rawStory, sceneId, field, proposal, when) {
  if (!ASSISTANT_FIELDS.includes(field)) throw new Error(`${field} is not one of ${ASSISTANT_FIELDS.join(", ")}`);
  const text = proposal.fields[field];
  if (typeof text !== "string" || !text.trim()) throw new Error(`the proposal has no ${field}`);
  let found = false;
  const scenes = (rawStory.scenes || []).map((s) => {
    if (s.id !== sceneId) return s;
    found = true;
    if (field === "prompt") return { ...s, prompt: text };
    if (field === "negative") return { ...s, negative: text };
    return { ...s, prompt: withCameraMove(s.prompt, text) };
  });
  if (!found) throw new Error(`scene ${sceneId} is not in the story`);
  const assistant = { ...(rawStory.assistant || {}) };
  const entry = { scene: sceneId, field, text, source: proposal.source, model: proposal.model, at: when };
  assistant.accepted = [...(assistant.accepted || []), entry];
  return { ...rawStory, scenes, assistant };
}
