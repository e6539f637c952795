// The bottom-panel timeline's geometry: clips laid out along time (width exactly proportional to
// duration, zoomable), the seams between them with their transitions, a ruler in seconds and frames,
// and the mapping between time, pixels and the preview monitor's clock. Pure functions, no DOM.

export const ZOOMS = [0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8];

/** The zoom after one step in (+1) or out (-1) from zoom, within ZOOMS. */
export function stepZoom(zoom, direction) {
  const at = ZOOMS.findIndex((z) => z >= zoom - 1e-9);
  const index = at < 0 ? ZOOMS.length - 1 : at;
  return ZOOMS[Math.max(0, Math.min(ZOOMS.length - 1, index + (direction > 0 ? 1 : -1)))];
}

/**
 * Clips from the plan's scenes (GET /gemdirect/story `scenes`: id, frames, fps, duration_seconds,
 * transition), back to back: {clips: [{id, index, start, end, seconds, frames, startFrame, fps, x,
 * width}], seconds, frames, scale (px per second), width}. Width is seconds * scale, no clamping.
 */
export function layoutTrack(scenes, { pxPerSecond = 56, zoom = 1 } = {}) {
  const scale = pxPerSecond * zoom;
  let start = 0;
  let startFrame = 0;
  const clips = (scenes || []).map((scene, i) => {
    const seconds = Number(scene.duration_seconds) || 0;
    const clip = {
      id: scene.id, index: i + 1, start, end: start + seconds, seconds, frames: scene.frames, startFrame,
      fps: scene.fps, x: start * scale, width: seconds * scale,
    };
    start += seconds;
    startFrame += scene.frames || 0;
    return clip;
  });
  return { clips, seconds: start, frames: startFrame, scale, width: start * scale };
}

/** The seams: between clip i and i + 1, scene i's transition to the next ({kind, frames}) at x. */
export function seams(scenes, layout) {
  const out = [];
  for (let i = 0; i + 1 < layout.clips.length; i++) {
    const transition = (scenes[i] && scenes[i].transition) || { kind: "cut", frames: 0 };
    const kind = transition.kind || "cut";
    const frames = kind === "cut" ? 0 : transition.frames || 0;
    const fps = scenes[i].fps || 16;
    out.push({
      from: layout.clips[i].id, to: layout.clips[i + 1].id, x: layout.clips[i].x + layout.clips[i].width,
      kind, frames, seconds: frames / fps,
      label: kind === "cut" ? "cut" : `${kind} ${frames} f`,
    });
  }
  return out;
}

const STEPS = [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300];

/**
 * Ruler ticks for a track of `seconds` at `scale` px/s and `fps`: a labelled tick every `step`
 * seconds (the first step at least minGap px apart), {x, seconds, frame, label}; label "1 s · 16 f".
 */
export function rulerTicks(seconds, scale, fps = 16, minGap = 64) {
  const step = STEPS.find((s) => s * scale >= minGap) || STEPS[STEPS.length - 1];
  const ticks = [];
  for (let k = 0; k * step <= seconds + 1e-9; k++) {
    const t = Math.round(k * step * 1000) / 1000;
    const frame = Math.round(t * fps);
    ticks.push({ x: t * scale, seconds: t, frame, label: `${formatSeconds(t)} s · ${frame} f` });
  }
  return ticks;
}

export function formatSeconds(t) {
  return Number.isInteger(t) ? String(t) : t.toFixed(t * 4 === Math.round(t * 4) ? 2 : 1).replace(/0$/, "");
}

/** Track time (s) at pixel x, clamped to the track. */
export const timeAtX = (layout, x) => Math.max(0, Math.min(layout.seconds, x / layout.scale));

/** Pixel x of track time t. */
export const xAtTime = (layout, t) => Math.max(0, Math.min(layout.seconds, t)) * layout.scale;

/** {clip, offset} for track time t (the last clip for t at the very end); null on an empty track. */
export function locate(layout, t) {
  const clips = layout.clips;
  if (!clips.length) return null;
  const time = Math.max(0, Math.min(layout.seconds, t));
  const clip = clips.find((c) => time < c.end) || clips[clips.length - 1];
  return { clip, offset: Math.min(clip.seconds, time - clip.start) };
}

/**
 * Where the monitor's clock sits on the track. Film: the film runs the whole track (its transitions
 * overlap scenes, so it is shorter than the track by the overlaps): mapped in proportion. A scene
 * (playlist or selected scene): the scene's start plus the video's time.
 */
export function monitorToTrack(layout, source, currentTime, duration) {
  if (!source) return 0;
  if (source.kind === "film") {
    if (!(duration > 0)) return 0;
    return Math.min(layout.seconds, (currentTime / duration) * layout.seconds);
  }
  const clip = layout.clips.find((c) => c.id === source.scene);
  return clip ? Math.min(clip.end, clip.start + currentTime) : 0;
}

/** The inverse for scrubbing: {scene?, time} the monitor should show for track time t. */
export function trackToMonitor(layout, source, t, duration) {
  if (source && source.kind === "film") return { time: duration > 0 ? (Math.max(0, Math.min(layout.seconds, t)) / layout.seconds) * duration : 0 };
  const at = locate(layout, t);
  return at ? { scene: at.clip.id, time: at.offset } : { time: 0 };
}

/** The scene after `sceneId` in the playlist (scenes with a video, in play order), or null. */
export function nextInPlaylist(playable, sceneId) {
  const i = playable.indexOf(sceneId);
  return i >= 0 && i + 1 < playable.length ? playable[i + 1] : null;
}

/** A copy of the raw story with scene sceneId's transition to the next scene set; unknown fields kept. */
export function setTransition(rawStory, sceneId, kind, frames) {
  if (!["cut", "crossfade", "vace"].includes(kind)) throw new Error(`transition kind ${kind} is not cut, crossfade or vace`);
  const scenes = (rawStory.scenes || []).map((scene) => {
    if (scene.id !== sceneId) return scene;
    const transition = { ...(scene.transition || {}), kind };
    if (kind === "cut") delete transition.frames;
    else transition.frames = Math.round(Number(frames));
    return { ...scene, transition };
  });
  return { ...rawStory, scenes };
}
