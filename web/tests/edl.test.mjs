import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { storyEdl, timecode, writeEdl } from "../js/lib/edl.js";

const cases = JSON.parse(readFileSync(new URL("./fixtures/edl_cases.json", import.meta.url))).cases;

for (const c of cases) {
  test(`EDL matches the hand-computed list: ${c.name}`, () => {
    assert.equal(writeEdl(c.title, c.events, c.fps), c.expected.join("\n"));
  });
}

test("timecodes at 24 and 16 fps by hand", () => {
  assert.equal(timecode(0, 24), "00:00:00:00");
  assert.equal(timecode(73, 24), "00:00:03:01");
  assert.equal(timecode(24 * 3600 + 23, 24), "01:00:00:23");
  assert.equal(timecode(49, 16), "00:00:03:01");
  assert.equal(timecode(16 * 61 + 15, 16), "00:01:01:15");
  assert.equal(timecode(24, "24000/1001"), "00:00:01:00"); // nominal 24, non-drop-frame
});

test("timecode refuses negative or fractional frames", () => {
  assert.throws(() => timecode(-1, 24), /whole number/);
  assert.throws(() => timecode(1.5, 24), /whole number/);
});

test("storyEdl takes the story document as the route returns it", () => {
  const doc = { title: "T", scenes: [
    { id: "a", title: "A", frames: 49, fps_text: "16" },
    { id: "b", title: "", frames: 57, fps_text: "16" },
  ] };
  const lines = storyEdl(doc).split("\n");
  assert.equal(lines[3], "001  AX       V     C        00:00:00:00 00:00:03:01 01:00:00:00 01:00:03:01");
  assert.equal(lines[7], "002  AX       V     C        00:00:00:00 00:00:03:09 01:00:03:01 01:00:06:10");
  assert.equal(lines[9], "* COMMENT: b");
});
