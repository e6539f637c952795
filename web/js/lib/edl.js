// CMX 3600 edit decision lists: one cut event per scene, timecodes from the plan's frame counts.
// Same layout as nodes/panel/edl.py (the export route); both are checked against
// web/tests/fixtures/edl_cases.json. Non-drop-frame at the nominal rate (24000/1001 counts as 24);
// the record side starts at 01:00:00:00.

export const REEL = "AX";
const RECORD_START_HOURS = 1;

/** A frame rate given as a number or a fraction string ("24000/1001") -> number. */
export function parseFps(fps) {
  if (typeof fps === "number") return fps;
  const text = String(fps).trim();
  const [num, den] = text.split("/").map(Number);
  const value = den === undefined ? num : num / den;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`fps ${text} is not a frame rate`);
  return value;
}

export function nominalRate(fps) {
  return Math.max(1, Math.round(parseFps(fps)));
}

const two = (n) => String(n).padStart(2, "0");

/** Frames counted from zero as HH:MM:SS:FF at the nominal rate of fps. */
export function timecode(frames, fps) {
  if (!Number.isInteger(frames) || frames < 0) throw new Error(`frames ${frames} must be a whole number >= 0`);
  const rate = nominalRate(fps);
  const frame = frames % rate;
  const seconds = Math.floor(frames / rate);
  return `${two(Math.floor(seconds / 3600))}:${two(Math.floor(seconds / 60) % 60)}:${two(seconds % 60)}:${two(frame)}`;
}

const oneLine = (text) => String(text).split(/\s+/).filter(Boolean).join(" ");

/**
 * The EDL text. events: [{clip, frames, fps?, comment?}] in play order; fps: the timeline's rate.
 * A scene at another rate is converted to timeline frames on the record side (halves round up).
 */
export function writeEdl(title, events, fps) {
  const rate = parseFps(fps);
  const lines = [`TITLE: ${oneLine(title).slice(0, 70)}`, "FCM: NON-DROP FRAME", ""];
  let record = RECORD_START_HOURS * 3600 * nominalRate(rate);
  events.forEach((event, i) => {
    const number = i + 1;
    if (!(event.frames >= 1)) throw new Error(`event ${number} (${event.clip}) has ${event.frames} frames; it needs at least 1`);
    const own = event.fps === undefined ? rate : parseFps(event.fps);
    const length = own === rate ? event.frames : Math.floor((event.frames * rate) / own + 0.5);
    lines.push(
      `${String(number).padStart(3, "0")}  ${REEL.padEnd(8)} ${"V".padEnd(5)} ${"C".padEnd(4)} ${"".padEnd(3)} ` +
        `${timecode(0, rate)} ${timecode(length, rate)} ${timecode(record, rate)} ${timecode(record + length, rate)}`,
    );
    lines.push(`* FROM CLIP NAME: ${oneLine(event.clip)}`);
    if (event.comment) lines.push(`* COMMENT: ${oneLine(event.comment)}`);
    lines.push("");
    record += length;
  });
  return lines.join("\n");
}

/** The EDL of a story as GET /gemdirect/story returns it (scenes in their current order). */
export function storyEdl(storyDoc) {
  const scenes = storyDoc.scenes;
  const events = scenes.map((s) => ({ clip: `${s.id}.mp4`, frames: s.frames, fps: s.fps_text, comment: s.title || s.id }));
  return writeEdl(storyDoc.title, events, scenes[0].fps_text);
}
