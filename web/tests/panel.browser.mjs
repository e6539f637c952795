// The Story panel in headless Chromium (Debian's /usr/bin/chromium through playwright-core) against
// the pack's real panel routes (web/tests/serve_panel.py): cards for the demo story, a drag that
// reorders and changes story.json on disk, a refused save that restores the order, a websocket-style
// event that updates a badge, Generate off when health says so; and the bottom-panel timeline
// (web/tests/timeline.html): proportional clips, seams, ruler, live badges, drag/keyboard reorder,
// seam and inline edits, Regenerate, the monitor playing the scenes and the film with the playhead
// and scrubbing, the assistant against a chat-completions server on loopback (tests/chat_server.py).
// Screenshots: web/tests/output/.
//
// Run: node web/tests/panel.browser.mjs   (PYTHON=/path/to/python to pick the interpreter)

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const output = join(here, "output");
const python = process.env.PYTHON || (process.env.VIRTUAL_ENV ? join(process.env.VIRTUAL_ENV, "bin", "python") : "python3");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

let server, base, home, browser, page, profile, chat;

function startServer(script = join(here, "serve_panel.py")) {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    const timer = setTimeout(() => reject(new Error(`serve_panel.py did not start in 60 s\n${err}`)), 60000);
    child.stderr.on("data", (d) => { err += d; });
    child.stdout.on("data", (d) => {
      const match = String(d).match(/PORT (\d+)(?: HOME (\S+))?/);
      if (match) { clearTimeout(timer); resolve({ child, port: Number(match[1]), home: match[2] }); }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`serve_panel.py exited (${code})\n${err}`)); });
  });
}

const storyOnDisk = () => JSON.parse(readFileSync(join(home, "input", "gemdirect", "demo", "story.json"), "utf8"));
const cardIds = () => page.$$eval(".gd-card", (cards) => cards.map((c) => c.dataset.scene));
const setHealth = (health) => page.evaluate((h) => fetch("/test/health", { method: "POST", body: JSON.stringify(h) }), health);
const healthy = () => page.evaluate(() => fetch("/gemdirect/health").then((r) => r.json()));

before(async () => {
  mkdirSync(output, { recursive: true });
  const started = await startServer();
  server = started.child;
  home = started.home;
  base = `http://127.0.0.1:${started.port}`;
  profile = mkdtempSync(join(tmpdir(), "gemdirect-chromium-"));
  // a fresh profile each run (playwright passes it to Chromium as --user-data-dir)
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 880, height: 640 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--no-first-run", "--disable-sync"],
  });
  page = browser.pages()[0] || (await browser.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/test/panel.html`);
  await page.waitForFunction(() => window.__ready || window.__startError, null, { timeout: 30000 });
  assert.equal(await page.evaluate(() => window.__startError || null), null);
  assert.deepEqual(errors, []);
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill("SIGTERM");
  if (chat) chat.kill("SIGTERM");
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (home) rmSync(home, { recursive: true, force: true });
});

test("cards appear for the demo story, with thumbnails, durations and run badges", async () => {
  await page.waitForSelector(".gd-card");
  assert.deepEqual(await cardIds(), ["dawn", "noon", "dusk"]);
  const titles = await page.$$eval(".gd-card .gd-title", (n) => n.map((x) => x.textContent));
  assert.deepEqual(titles, ["Dawn over the sea", "The keeper's rounds", "The lamp is lit"]);
  assert.deepEqual(await page.$$eval(".gd-duration", (n) => n.map((x) => x.textContent)),
    ["3.06 s · 49 f", "3.06 s · 49 f", "3.56 s · 57 f"]);
  assert.deepEqual(await page.$$eval(".gd-badge", (n) => n.map((x) => x.dataset.state)), ["done", "pending", "pending"]);
  // wider card for the longer scene
  const widths = await page.$$eval(".gd-card", (n) => n.map((x) => x.getBoundingClientRect().width));
  assert.ok(widths[2] > widths[0], `widths ${widths}`);
  await page.waitForFunction(() => [...document.querySelectorAll(".gd-thumb img")].every((i) => i.complete && i.naturalWidth > 0));
  assert.equal(await page.locator(".gd-chip").first().textContent(), "Test GPU 16 GB: 11210 / 16376 MB free");
  await page.click('.gd-card[data-scene="dawn"]');
  await page.waitForSelector(".gd-telemetry");
  const telemetry = await page.textContent(".gd-telemetry");
  assert.match(telemetry, /cfg5\.2/);
  assert.match(telemetry, /VRAM before\/after\/peak2048 \/ 2304\.5 \/ 2404\.5 MB/);
  await page.screenshot({ path: join(output, "panel-cards.png") });
});

test("an edited scene gets a stale badge with the reason; Regenerate stale queues only it", async () => {
  const regenerate = page.locator(".gd-regenerate");
  await page.evaluate(() => fetch("/test/render", { method: "POST", body: JSON.stringify({ scenes: ["dawn", "noon", "dusk"] }) }));
  await page.click(".gd-panel button[title=Refresh]");
  await page.waitForFunction(() => [...document.querySelectorAll(".gd-badge")].every((b) => b.dataset.state === "done"));
  assert.equal(await regenerate.isDisabled(), true);
  assert.match(await regenerate.getAttribute("title"), /every scene of this run is fresh/);
  assert.equal(await page.locator('.gd-bookend[data-scene="noon"]').textContent(), "40");

  await page.click('.gd-card[data-scene="dusk"]');
  await page.fill(".gd-prompt", `${storyOnDisk().scenes[2].prompt} Rain on the glass.`);
  await page.click("text=Save scene");
  const badge = page.locator('.gd-card[data-scene="dusk"] .gd-badge');
  await page.waitForFunction(() => document.querySelector('.gd-card[data-scene="dusk"] .gd-badge').dataset.state === "stale");
  assert.equal(await badge.textContent(), "stale");
  assert.equal(await badge.getAttribute("title"), "Stale: prompt changed");
  assert.deepEqual(await page.$$eval(".gd-badge", (n) => n.map((x) => x.dataset.state)), ["done", "done", "stale"]);
  assert.match(await page.textContent(".gd-telemetry"), /statestale: prompt changed/);
  assert.equal(await regenerate.textContent(), "Regenerate stale (1)");
  assert.match(await regenerate.getAttribute("title"), /3\. dusk: stale \(prompt changed\)/);
  await page.evaluate(() => { document.querySelector(".gd-panel").scrollTop = 0; });
  await page.screenshot({ path: join(output, "panel-stale.png") });

  // no Scene Select in the graph: off with the reason
  await page.evaluate(() => { window.__readiness = { ready: false, reason: "the open workflow has no Scene Select (gemDirect) node" }; window.panel.renderActions(); });
  assert.equal(await regenerate.isDisabled(), true);
  assert.match(await regenerate.getAttribute("title"), /Regenerate stale is off: the open workflow has no Scene Select/);
  await page.evaluate(() => { window.__readiness = null; window.panel.renderActions(); });

  await regenerate.click();
  await page.waitForFunction(() => /Queued 1 scenes/.test(document.querySelector(".gd-note").textContent));
  assert.deepEqual(await page.evaluate(() => window.__queued), [{ scene_index: 3, scene: "dusk" }]);
  assert.equal(await badge.textContent(), "queued");
  await page.evaluate(() => { window.__queued.length = 0; window.__emit("status", { exec_info: { queue_remaining: 0 } }); });
  assert.equal(await badge.textContent(), "stale");
});

test("the seam badge shows a chained scene's start match beside the bookend score", async () => {
  const info = await page.evaluate(() => fetch("/test/info").then((r) => r.json()));
  await page.evaluate((runId) => window.__emit("gemdirect.scene", { story_id: "lighthouse", run_id: runId, scene_id: "noon",
    state: "saving", start_match: { PSNR: 24.46, SSIM: 0.712, Verdict: "fail", Threshold: 28 } }), info.run_id);
  const seam = page.locator('.gd-bookend[data-scene="noon"]');
  assert.equal(await seam.textContent(), "40 · 24.5 dB");
  assert.equal(await seam.getAttribute("data-status"), "fail");
  assert.match(await seam.getAttribute("title"), /Start match .*PSNR 24\.5 dB, SSIM 0\.712: fail, fail below 28 dB/);
  assert.equal(await page.locator('.gd-bookend[data-scene="dusk"]').textContent(), "40"); // nothing extra without one
  await page.evaluate((runId) => window.__emit("gemdirect.scene", { story_id: "lighthouse", run_id: runId, scene_id: "noon",
    state: "done" }), info.run_id);
  await page.waitForFunction(() => document.querySelector('.gd-card[data-scene="noon"] .gd-badge').dataset.state === "done");
});

test("a drag reorders the cards and the saved story.json changes", async () => {
  const saved = page.waitForResponse((r) => r.url().includes("/gemdirect/story?") && r.request().method() === "PUT");
  await page.dragAndDrop('.gd-card[data-scene="dusk"]', '.gd-card[data-scene="dawn"]');
  const response = await saved;
  assert.equal(response.status(), 200);
  await page.waitForFunction(() => document.querySelector(".gd-note").textContent.includes("saved"));
  assert.deepEqual(await cardIds(), ["dusk", "dawn", "noon"]);
  const disk = storyOnDisk();
  assert.deepEqual(disk.scenes.map((s) => s.id), ["dusk", "dawn", "noon"]);
  assert.equal(disk.logline, "From dawn to dusk, a lighthouse keeper readies the lamp before a storm.");
});

test("a refused save shows why and puts the order back", async () => {
  const disk = storyOnDisk();
  writeFileSync(join(home, "input", "gemdirect", "demo", "story.json"), JSON.stringify({ ...disk, title: "Edited elsewhere" }, null, 2));
  const saved = page.waitForResponse((r) => r.url().includes("/gemdirect/story?") && r.request().method() === "PUT");
  await page.dragAndDrop('.gd-card[data-scene="noon"]', '.gd-card[data-scene="dusk"]');
  assert.equal((await saved).status(), 409);
  await page.waitForFunction(() => document.querySelector(".gd-error").textContent.includes("changed on disk"));
  assert.deepEqual(await cardIds(), ["dusk", "dawn", "noon"]);
  assert.deepEqual(storyOnDisk().scenes.map((s) => s.id), ["dusk", "dawn", "noon"]);
  await page.click(".gd-panel button[title=Refresh]");
  await page.waitForFunction(() => document.querySelector(".gd-summary").textContent.startsWith("Edited elsewhere"));
});

test("a gemdirect.scene event updates the badge live", async () => {
  const info = await page.evaluate(() => fetch("/test/info").then((r) => r.json()));
  await page.evaluate((runId) => window.__emit("gemdirect.scene",
    { story_id: "lighthouse", run_id: runId, scene_id: "noon", state: "rendering", percent: 40 }), info.run_id);
  const badge = page.locator('.gd-card[data-scene="noon"] .gd-badge');
  assert.equal(await badge.textContent(), "rendering 40%");
  assert.equal(await badge.getAttribute("data-state"), "rendering");
  await page.evaluate(() => window.__emit("gemdirect.scene", { story_id: "another", scene_id: "noon", state: "failed" }));
  assert.equal(await badge.textContent(), "rendering 40%"); // another story's event is not ours
  await page.screenshot({ path: join(output, "panel-rendering.png") });
});

test("Generate queues every scene when healthy and is off, with the reason, when health says so", async () => {
  const generate = page.locator(".gd-generate");
  assert.equal(await generate.isEnabled(), true);
  await generate.click();
  await page.waitForFunction(() => window.__queued.length === 3);
  assert.deepEqual(await page.evaluate(() => window.__queued.map((q) => q.scene)), ["dusk", "dawn", "noon"]);
  await setHealth({ ...(await healthy()), status: "circuit-open",
    breaker: { state: "circuit-open", run: "gemdirect/lighthouse/x" },
    warnings: ["circuit breaker open for gemdirect/lighthouse/x: 3 consecutive failed scenes"] });
  await page.evaluate(() => window.panel.loadHealth());
  assert.equal(await generate.isDisabled(), true);
  assert.match(await page.textContent(".gd-reason"), /Generate is off: circuit breaker open/);
  assert.equal(await page.locator('.gd-chip[data-level="bad"]').textContent(), "breaker: circuit-open");
  await page.screenshot({ path: join(output, "panel-unhealthy.png") });
  await page.evaluate(() => window.__emit("status", { exec_info: { queue_remaining: 0 } }));
  assert.deepEqual(await page.$$eval(".gd-badge", (n) => n.filter((x) => x.dataset.state === "queued").length), 0);
});

test("Suggest proposes a prompt; Accept saves it with its source in the story", async () => {
  await page.click('.gd-card[data-scene="dawn"]');
  await page.click(".gd-suggest");
  const text = await page.textContent('.gd-field[data-field="prompt"] .gd-field-text');
  assert.match(text, /^Medium shot of /);
  const saved = page.waitForResponse((r) => r.url().includes("/gemdirect/story?") && r.request().method() === "PUT");
  await page.click(".gd-accept");
  assert.equal((await saved).status(), 200);
  const disk = storyOnDisk();
  assert.equal(disk.scenes[1].prompt, text);
  assert.equal(disk.assistant.accepted[0].source, "gemdirect.heuristic/1");
  await page.screenshot({ path: join(output, "panel-suggest.png") });
});

test("Export EDL downloads one event per scene in the current order", async () => {
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("text=Export EDL")]);
  assert.equal(download.suggestedFilename(), "lighthouse.edl");
  const lines = readFileSync(await download.path(), "utf8").split("\n");
  assert.equal(lines[0], "TITLE: Edited elsewhere");
  // dusk (57 f), dawn (49 f), noon (49 f) at 16 fps from 01:00:00:00
  assert.equal(lines[3], "001  AX       V     C        00:00:00:00 00:00:03:09 01:00:00:00 01:00:03:09");
  assert.equal(lines[4], "* FROM CLIP NAME: dusk.mp4");
  assert.equal(lines[11], "003  AX       V     C        00:00:00:00 00:00:03:01 01:00:06:10 01:00:09:11");
});

test("a gemdirect.keyframe event re-reads the story: the new keyframe's thumbnail and the story's text", async () => {
  const thumb = () => page.getAttribute('.gd-card[data-scene="noon"] img', "src");
  const before = await thumb();
  const disk = storyOnDisk();
  disk.title = "Keyframe saved elsewhere";
  disk.scenes.find((s) => s.id === "noon").keyframe = disk.scenes.find((s) => s.id === "dawn").keyframe;
  writeFileSync(join(home, "input", "gemdirect", "demo", "story.json"), JSON.stringify(disk, null, 2));
  await page.evaluate(() => window.__emit("gemdirect.keyframe", { story_id: "another", scene_id: "noon", keyframe: "x.png" }));
  assert.equal(await thumb(), before); // another story's keyframe is not ours
  await page.evaluate(() => window.__emit("gemdirect.keyframe",
    { story_id: "lighthouse", scene_id: "noon", keyframe: "keyframes/noon.png", previous: null }));
  await page.waitForFunction(() => document.querySelector(".gd-summary").textContent.startsWith("Keyframe saved elsewhere"));
  assert.notEqual(await thumb(), before); // the story's hash is in the thumbnail URL: the browser fetches it again
});

// ---------------------------------------------------------------------- the bottom-panel timeline

let tl; // the timeline's page
const storyFile = () => join(home, "input", "gemdirect", "demo", "story.json");
const clipIds = () => tl.$$eval(".gd-clip", (n) => n.map((c) => c.dataset.scene));
const savedPut = () => tl.waitForResponse((r) => r.url().includes("/gemdirect/story?") && r.request().method() === "PUT");

test("timeline: clips as wide as their scenes are long, transitions on the seams, a ruler in seconds and frames", async () => {
  const disk = storyOnDisk();
  const ids = ["dawn", "noon", "dusk"];
  writeFileSync(storyFile(), JSON.stringify({ ...disk, title: "The Lighthouse Keeper",
    scenes: ids.map((id) => disk.scenes.find((s) => s.id === id)) }, null, 2));
  await page.evaluate(() => fetch("/test/render", { method: "POST", body: JSON.stringify({ scenes: ["dawn", "noon", "dusk"] }) }));
  tl = await browser.newPage();
  const errors = [];
  tl.on("pageerror", (e) => errors.push(String(e)));
  await tl.goto(`${base}/test/timeline.html`);
  await tl.waitForFunction(() => window.__ready || window.__startError, null, { timeout: 30000 });
  assert.equal(await tl.evaluate(() => window.__startError || null), null);
  await tl.waitForSelector(".gd-clip");
  assert.deepEqual(await clipIds(), ids);
  const boxes = await tl.$$eval(".gd-clip", (n) => n.map((c) => { const r = c.getBoundingClientRect(); return [r.x, r.width]; }));
  // the plan's seconds (3.0 / 3.0 / 3.5 asked; 49 / 49 / 57 frames at 16 fps) at 56 px/s, back to back
  assert.deepEqual(boxes.map((b) => b[1]), [3.0625 * 56, 3.0625 * 56, 3.5625 * 56]);
  assert.equal(boxes[1][0] - boxes[0][0], boxes[0][1]);
  assert.deepEqual(await tl.$$eval(".gd-transition", (n) => n.map((b) => b.textContent)), ["crossfade 8 f", "crossfade 12 f"]);
  const seamX = await tl.$$eval(".gd-seam", (n) => n.map((s) => s.getBoundingClientRect().x + s.getBoundingClientRect().width / 2));
  assert.ok(Math.abs(seamX[0] - (boxes[0][0] + boxes[0][1])) < 1, `seam ${seamX[0]} vs ${boxes[0][0] + boxes[0][1]}`);
  assert.deepEqual(await tl.$$eval(".gd-tick", (n) => n.map((t) => t.textContent)),
    ["0 s · 0 f", "2 s · 32 f", "4 s · 64 f", "6 s · 96 f", "8 s · 128 f"]);
  assert.deepEqual(await tl.$$eval(".gd-score", (n) => n.map((t) => t.textContent)), ["40", "40"]);
  assert.deepEqual(await tl.$$eval(".gd-clip .gd-badge", (n) => n.map((b) => b.dataset.state)), ["done", "done", "done"]);
  // rendered clips show their first and last frames
  assert.equal(await tl.locator('.gd-clip[data-scene="noon"] img.gd-first').count(), 1);
  await tl.click(".gd-zoom-in");
  assert.equal(await tl.locator('.gd-clip[data-scene="dusk"]').evaluate((c) => c.getBoundingClientRect().width), 3.5625 * 56 * 1.5);
  await tl.click(".gd-zoom-out");
  assert.deepEqual(errors, []);
});

test("timeline: badges follow the websocket events live", async () => {
  const info = await tl.evaluate(() => fetch("/test/info").then((r) => r.json()));
  await tl.evaluate((runId) => window.__emit("gemdirect.scene", { story_id: "lighthouse", run_id: runId, scene_id: "noon",
    state: "rendering", percent: 55 }), info.run_id);
  const badge = tl.locator('.gd-clip[data-scene="noon"] .gd-badge');
  assert.equal(await badge.textContent(), "rendering 55%");
  assert.equal(await tl.locator('.gd-clip[data-scene="noon"] .gd-bar').evaluate((b) => b.style.width), "55%");
  await tl.evaluate((runId) => window.__emit("gemdirect.scene", { story_id: "lighthouse", run_id: runId, scene_id: "noon",
    state: "failed", message: "out of memory" }), info.run_id);
  await tl.waitForFunction(() => document.querySelector('.gd-clip[data-scene="noon"] .gd-badge').dataset.state === "failed");
  assert.equal(await badge.getAttribute("title"), "out of memory");
  await tl.evaluate((runId) => window.__emit("gemdirect.scene", { story_id: "lighthouse", run_id: runId, scene_id: "noon",
    state: "done" }), info.run_id);
  await tl.waitForFunction(() => document.querySelector('.gd-clip[data-scene="noon"] .gd-badge').dataset.state === "done");
});

test("timeline: the monitor plays the scenes in order, the playhead follows, the ruler scrubs", async () => {
  await tl.waitForFunction(() => document.querySelector(".gd-monitor-video").dataset.source === "dawn");
  await tl.click(".gd-play");
  // each scene's preview is 5 frames at 16 fps: the monitor goes on to the next scene by itself
  await tl.waitForFunction(() => document.querySelector(".gd-monitor-video").dataset.source === "noon", null, { timeout: 15000 });
  const playhead = await tl.locator(".gd-playhead").evaluate((p) => Number(p.dataset.seconds));
  assert.ok(playhead >= 3.0625 && playhead < 6.125, `playhead ${playhead} s is inside noon`);
  await tl.evaluate(() => document.querySelector(".gd-monitor-video").pause());
  const ruler = await tl.locator(".gd-ruler").boundingBox();
  // 6.325 s: inside dusk (6.125 .. 9.6875 s), within its test preview (5 frames, 0.3125 s)
  await tl.mouse.click(ruler.x + 6.325 * 56, ruler.y + 6);
  await tl.waitForFunction(() => document.querySelector(".gd-monitor-video").dataset.source === "dusk");
  await tl.waitForFunction(() => Math.abs(Number(document.querySelector(".gd-playhead").dataset.seconds) - 6.325) < 0.05);
  assert.ok(Math.abs(await tl.evaluate(() => document.querySelector(".gd-monitor-video").currentTime) - 0.2) < 0.05);
  assert.match(await tl.textContent(".gd-clock"), /^\d\.\d\d s · \d+ f$/);
});

test("timeline: the monitor plays the film once rendered; scrubbing seeks in it", async () => {
  const film = await tl.evaluate(() => fetch("/test/film", { method: "POST" }).then((r) => r.json()));
  assert.deepEqual(film.scenes, ["dawn", "noon", "dusk"]);
  await tl.click(".gd-refresh");
  await tl.waitForFunction(() => document.querySelector(".gd-monitor-video").dataset.source === "film");
  await tl.waitForFunction(() => document.querySelector(".gd-monitor-video").readyState >= 1);
  assert.equal(await tl.evaluate(() => document.querySelector(".gd-monitor-video").duration), 3);
  await tl.click(".gd-play");
  await tl.waitForFunction(() => document.querySelector(".gd-monitor-video").currentTime > 0.3, null, { timeout: 15000 });
  await tl.evaluate(() => document.querySelector(".gd-monitor-video").pause());
  const { t, film: ft } = await tl.evaluate(() => ({ t: Number(document.querySelector(".gd-playhead").dataset.seconds),
    film: document.querySelector(".gd-monitor-video").currentTime }));
  assert.ok(Math.abs(t - (ft / 3) * 9.6875) < 0.05, `playhead ${t} s for film time ${ft} s`);
  const ruler = await tl.locator(".gd-ruler").boundingBox();
  await tl.mouse.move(ruler.x + 1 * 56, ruler.y + 10);
  await tl.mouse.down();
  await tl.mouse.move(ruler.x + 4.84375 * 56, ruler.y + 10, { steps: 4 }); // drag to half the track
  await tl.mouse.up();
  await tl.waitForFunction(() => Math.abs(document.querySelector(".gd-monitor-video").currentTime - 1.5) < 0.1);
  // the middle of the film is the second scene, green
  await tl.screenshot({ path: join(output, "timeline-film.png") });
});

test("timeline: a drag reorders, saved to story.json; Alt+arrow moves the focused clip; a refusal restores with the reason", async () => {
  let saved = savedPut();
  await tl.dragAndDrop('.gd-clip[data-scene="dusk"]', '.gd-clip[data-scene="dawn"]');
  assert.equal((await saved).status(), 200);
  await tl.waitForFunction(() => document.querySelector(".gd-status").textContent.includes("saved"));
  assert.deepEqual(await clipIds(), ["dusk", "dawn", "noon"]);
  assert.deepEqual(storyOnDisk().scenes.map((s) => s.id), ["dusk", "dawn", "noon"]);
  // dawn now starts from dusk's last frame: stale until rendered again
  await tl.waitForFunction(() => document.querySelector('.gd-clip[data-scene="dawn"] .gd-badge').dataset.state === "stale");

  saved = savedPut();
  await tl.focus('.gd-clip[data-scene="dusk"]');
  await tl.keyboard.press("Alt+ArrowRight");
  assert.equal((await saved).status(), 200);
  await tl.waitForFunction(() => [...document.querySelectorAll(".gd-clip")].map((c) => c.dataset.scene).join() === "dawn,dusk,noon");
  assert.deepEqual(storyOnDisk().scenes.map((s) => s.id), ["dawn", "dusk", "noon"]);

  const disk = storyOnDisk();
  writeFileSync(storyFile(), JSON.stringify({ ...disk, title: "Edited elsewhere" }, null, 2));
  saved = savedPut();
  await tl.dragAndDrop('.gd-clip[data-scene="noon"]', '.gd-clip[data-scene="dawn"]');
  assert.equal((await saved).status(), 409);
  await tl.waitForFunction(() => document.querySelector(".gd-error").textContent.includes("changed on disk"));
  assert.deepEqual(await clipIds(), ["dawn", "dusk", "noon"]);
  assert.deepEqual(storyOnDisk().scenes.map((s) => s.id), ["dawn", "dusk", "noon"]);
  writeFileSync(storyFile(), JSON.stringify(disk, null, 2));
  await tl.click(".gd-refresh");
  await tl.waitForFunction(() => !document.querySelector(".gd-error").textContent);
});

test("timeline: a seam's transition and a clip's prompt, negative, duration and seed are edited in place", async () => {
  let saved = savedPut();
  await tl.click('.gd-seam[data-from="dawn"] .gd-transition');
  await tl.selectOption(".gd-seam-kind", "cut");
  await tl.click(".gd-seam-save");
  assert.equal((await saved).status(), 200);
  await tl.waitForFunction(() => document.querySelector('.gd-seam[data-from="dawn"] .gd-transition').textContent === "cut");
  assert.equal(storyOnDisk().scenes[0].transition.kind, "cut");
  saved = savedPut();
  await tl.click('.gd-seam[data-from="dusk"] .gd-transition');
  await tl.selectOption(".gd-seam-kind", "crossfade");
  await tl.fill(".gd-seam-frames", "6");
  await tl.click(".gd-seam-save");
  assert.equal((await saved).status(), 200);
  await tl.waitForFunction(() => document.querySelector('.gd-seam[data-from="dusk"] .gd-transition').textContent === "crossfade 6 f");
  assert.deepEqual(storyOnDisk().scenes[1].transition, { kind: "crossfade", frames: 6 });

  await tl.click('.gd-clip[data-scene="noon"]');
  await tl.fill(".gd-inspector .gd-prompt", "The keeper climbs the spiral stairs, lamp oil in hand, tracking shot");
  await tl.fill(".gd-inspector .gd-negative", "blurry, text");
  await tl.fill(".gd-inspector .gd-seconds", "2");
  await tl.fill(".gd-inspector .gd-seed", "4242");
  saved = savedPut();
  await tl.click(".gd-inspector .gd-save");
  assert.equal((await saved).status(), 200);
  const noon = storyOnDisk().scenes.find((s) => s.id === "noon");
  assert.deepEqual([noon.prompt, noon.negative, noon.duration, noon.seed, noon.frames],
    ["The keeper climbs the spiral stairs, lamp oil in hand, tracking shot", "blurry, text", 2, 4242, undefined]);
  await tl.waitForFunction(() => Number(document.querySelector('.gd-clip[data-scene="noon"]').dataset.seconds) === 2.0625);
  assert.equal(await tl.locator('.gd-clip[data-scene="noon"]').evaluate((c) => c.getBoundingClientRect().width), 2.0625 * 56);
  // a refused edit names the field and changes nothing
  const before = readFileSync(storyFile(), "utf8");
  await tl.fill(".gd-inspector .gd-seed", "-5");
  saved = savedPut();
  await tl.click(".gd-inspector .gd-save");
  assert.equal((await saved).status(), 422);
  await tl.waitForFunction(() => /scenes\[\d\]\.seed/.test(document.querySelector(".gd-error").textContent));
  assert.equal(readFileSync(storyFile(), "utf8"), before);
});

test("timeline: Regenerate queues the selected scene at its position; Regenerate stale queues the stale ones", async () => {
  await setHealth({ ...(await healthy()), status: "healthy", breaker: { state: "healthy", run: null }, warnings: [] });
  await tl.evaluate(() => { window.__queued.length = 0; return window.panel.loadHealth(); });
  await tl.click('.gd-clip[data-scene="dawn"]');
  assert.equal(await tl.locator(".gd-regen-scene").isEnabled(), true);
  await tl.click('.gd-clip[data-scene="noon"]');
  await tl.click(".gd-regen-scene");
  await tl.waitForFunction(() => window.__queued.length === 1);
  assert.deepEqual(await tl.evaluate(() => window.__queued), [{ scene_index: 3, scene: "noon" }]);
  assert.equal(await tl.locator('.gd-clip[data-scene="noon"] .gd-badge').textContent(), "queued");
  await tl.evaluate(() => { window.__queued.length = 0; window.__emit("status", { exec_info: { queue_remaining: 0 } }); });
  const regenerate = tl.locator(".gd-regenerate");
  assert.match(await regenerate.textContent(), /^Regenerate stale \(\d\)$/);
  await regenerate.click();
  await tl.waitForFunction(() => window.__queued.length > 0);
  assert.deepEqual(await tl.evaluate(() => window.__queued.map((q) => q.scene)),
    (await regenerate.getAttribute("data-scenes")).split(","));
  await tl.evaluate(() => window.__emit("status", { exec_info: { queue_remaining: 0 } }));
});

test("timeline: the assistant on a chat-completions server on loopback fills the right fields; bad answers change nothing", async () => {
  const started = await startServer(join(repo, "tests", "chat_server.py"));
  chat = started.child;
  const endpoint = (mode) => `http://127.0.0.1:${started.port}/${mode}/v1`;
  const settings = (mode, timeout = 60) => tl.evaluate(([url, t]) => {
    window.__settings = { "gemDirect.Panel.AssistantEndpoint": url, "gemDirect.Panel.AssistantModel": "my-model",
      "gemDirect.Panel.AssistantTimeoutSeconds": t };
  }, [endpoint(mode), timeout]);
  await settings("good");
  await tl.click('.gd-clip[data-scene="dawn"]');
  await tl.click(".gd-inspector .gd-suggest");
  await tl.waitForSelector('.gd-field[data-field="camera"]');
  assert.deepEqual(await tl.$$eval(".gd-field", (n) => n.map((f) => [f.dataset.field, f.querySelector(".gd-field-text").textContent])), [
    ["prompt", "Establishing wide shot of a white lighthouse on a rocky cape at dawn, calm sea, warm light"],
    ["negative", "people, text, watermark, blurry"], ["camera", "slow push in"]]);
  assert.match(await tl.textContent(".gd-suggestion"), /gemdirect\.assistant\/1 · test-llm-7b/);
  let saved = savedPut();
  await tl.click(".gd-accept-negative");
  assert.equal((await saved).status(), 200);
  saved = savedPut();
  await tl.click(".gd-accept");
  assert.equal((await saved).status(), 200);
  saved = savedPut();
  await tl.click(".gd-accept-camera");
  assert.equal((await saved).status(), 200);
  const disk = storyOnDisk();
  const dawn = disk.scenes.find((s) => s.id === "dawn");
  assert.equal(dawn.prompt, "Establishing wide shot of a white lighthouse on a rocky cape at dawn, calm sea, warm light, slow push in");
  assert.equal(dawn.negative, "people, text, watermark, blurry");
  assert.deepEqual(disk.assistant.accepted.slice(-3).map((a) => [a.scene, a.field, a.model, a.source]), [
    ["dawn", "negative", "test-llm-7b", "gemdirect.assistant/1"], ["dawn", "prompt", "test-llm-7b", "gemdirect.assistant/1"],
    ["dawn", "camera", "test-llm-7b", "gemdirect.assistant/1"]]);
  assert.equal(disk.logline, "From dawn to dusk, a lighthouse keeper readies the lamp before a storm."); // unknown fields kept
  await tl.screenshot({ path: join(output, "timeline-assistant.png") });

  for (const [mode, timeout, why] of [["slow", 1, /no complete answer within 1 s/], ["fail", 60, /HTTP 500/],
    ["malformed", 60, /not JSON/], ["prose", 60, /not the JSON object/], ["huge-stream", 60, /over the 2097152-byte limit/],
    ["huge", 60, /104857600 bytes/]]) {
    const before = readFileSync(storyFile(), "utf8");
    await settings(mode, timeout);
    await tl.click(".gd-inspector .gd-suggest");
    await tl.waitForFunction(() => /Suggest failed, nothing changed/.test(document.querySelector(".gd-error").textContent), null, { timeout: 30000 });
    assert.match(await tl.textContent(".gd-error"), why);
    assert.equal(await tl.locator(".gd-field").count(), 0);
    assert.equal(readFileSync(storyFile(), "utf8"), before, mode);
  }
  await tl.evaluate(() => { window.__settings = {}; });
  await tl.screenshot({ path: join(output, "timeline.png") });
});
