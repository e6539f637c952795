// The Story panel in headless Chromium (Debian's /usr/bin/chromium through playwright-core) against
// the pack's real panel routes (web/tests/serve_panel.py): cards for the demo story, a drag that
// reorders and changes story.json on disk, a refused save that restores the order, a websocket-style
// event that updates a badge, Generate off when health says so. Screenshots: web/tests/output/.
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

let server, base, home, browser, page, profile;

function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [join(here, "serve_panel.py")], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    const timer = setTimeout(() => reject(new Error(`serve_panel.py did not start in 60 s\n${err}`)), 60000);
    child.stderr.on("data", (d) => { err += d; });
    child.stdout.on("data", (d) => {
      const match = String(d).match(/PORT (\d+) HOME (\S+)/);
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
  const text = await page.textContent(".gd-suggestion > div");
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
