import assert from "node:assert/strict";
import { test } from "node:test";
import { acceptSuggestion, cameraMove, palette, shotFor, subjects, suggestPrompt, SOURCE } from "../js/lib/suggest.js";

const story = {
  title: "The Lighthouse Keeper",
  scenes: [
    { id: "dawn", prompt: "A white lighthouse on a rocky point at dawn, calm sea, pink and gold sky, slow push in" },
    { id: "noon", prompt: "The keeper climbs the stairs, gentle pan right" },
    { id: "dusk", prompt: "The lamp comes on at dusk, purple clouds, slow pull out" },
  ],
};

test("reads camera moves, palette and subjects from a prompt", () => {
  assert.equal(cameraMove(story.scenes[0].prompt), "slow push in");
  assert.equal(cameraMove("Dolly in on the door"), "slow push in");
  assert.equal(cameraMove("nothing moves here"), null);
  assert.deepEqual(palette(story.scenes[0].prompt), ["white", "pink", "gold"]);
  assert.deepEqual(subjects(story.scenes[0].prompt), ["lighthouse", "point"]);
  assert.deepEqual(subjects("The keeper climbs the stairs"), ["keeper", "stairs"]);
});

test("shot sizes: wide to open and close, alternating between", () => {
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => shotFor(i, 5)),
    ["establishing wide shot", "medium shot", "close-up", "medium shot", "wide closing shot"]);
});

test("a suggestion keeps continuity with the previous scene and never repeats its move", () => {
  const s = suggestPrompt(story, 1);
  assert.equal(s.source, SOURCE);
  assert.equal(s.text, "Medium shot of the keeper climbs the stairs, the same lighthouse and point as before, "
    + "white, pink, gold palette carried over, gentle pan right, consistent lighting, cinematic");
  assert.notEqual(cameraMove(s.text), cameraMove(story.scenes[0].prompt));
  assert.ok(s.reasons.some((r) => r.startsWith("continuity: keeps lighthouse")));
});

test("a scene repeating the previous scene's move gets another one", () => {
  const same = { scenes: [story.scenes[0], { id: "b", prompt: "The gulls over the sea, slow push in" }] };
  const s = suggestPrompt(same, 1);
  assert.equal(cameraMove(s.text.replace("slow push in", "")), "slow pull out");
  assert.ok(!s.text.includes("push in"));
  assert.ok(s.reasons.some((r) => r.includes('previous scene already uses "slow push in"')));
});

test("suggestions are deterministic", () => {
  for (let i = 0; i < story.scenes.length; i++) {
    assert.deepEqual(suggestPrompt(story, i), suggestPrompt(structuredClone(story), i));
  }
  assert.throws(() => suggestPrompt(story, 9), /no scene at position 10/);
});

test("accepting records the text and its source in the story's metadata", () => {
  const s = suggestPrompt(story, 2);
  const next = acceptSuggestion(story, "dusk", s, "2026-11-23T12:00:00Z");
  assert.equal(next.scenes[2].prompt, s.text);
  assert.deepEqual(next.assistant.accepted, [{ scene: "dusk", text: s.text, source: SOURCE, at: "2026-11-23T12:00:00Z" }]);
  assert.equal(story.scenes[2].prompt.startsWith("The lamp"), true);
});
