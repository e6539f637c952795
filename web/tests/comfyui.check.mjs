// A manual check of the Story panel inside a running ComfyUI (not part of `npm test`):
//   COMFYUI_URL=http://127.0.0.1:8377 [GEMDIRECT_WORKFLOW=example_workflows/story_scene_preview.json] \
//     node web/tests/comfyui.check.mjs
// With GEMDIRECT_WORKFLOW it loads that workflow, presses Generate and reports ComfyUI's history.
// Opens the UI in headless Chromium, opens the Story sidebar tab, waits for the scene cards and
// saves web/tests/output/comfyui-panel.png. Prints what it saw; exits 1 if the panel did not come up.

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const url = process.env.COMFYUI_URL || "http://127.0.0.1:8188";
const output = join(dirname(fileURLToPath(import.meta.url)), "output");
mkdirSync(output, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "gemdirect-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, viewport: { width: 1400, height: 860 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync"],
});
const page = context.pages()[0] || (await context.newPage());
const problems = [];
page.on("console", (m) => { if (m.type() === "error" && /gemdirect|panel/i.test(m.text())) problems.push(m.text()); });
page.on("pageerror", (e) => { if (/gemdirect/i.test(`${e.stack}`)) problems.push(`${e}\n${e.stack}`); });
let ok = false;
try {
  await page.goto(url, { waitUntil: "domcontentloaded", timeout: 120000 });
  await page.waitForFunction(() => window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app.graph, null, { timeout: 120000 });
  const tab = page.locator(".gemdirect-story-tab-button, [class*='gemdirect-story']").first();
  await tab.waitFor({ timeout: 60000 });
  await page.waitForTimeout(3000);
  for (let i = 0; i < 3 && (await page.locator(".p-dialog-mask").count()); i++) { // first-run dialogs (templates)
    await page.keyboard.press("Escape");
    await page.waitForTimeout(500);
  }
  await tab.click();
  await page.waitForSelector(".gd-card", { timeout: 60000 });
  const noWorkflow = await page.textContent(".gd-reason");
  let generated = null;
  if (process.env.GEMDIRECT_WORKFLOW) { // e.g. example_workflows/story_scene_preview.json: runs on a CPU
    const workflow = JSON.parse(readFileSync(process.env.GEMDIRECT_WORKFLOW, "utf8"));
    await page.evaluate((w) => window.comfyAPI.app.app.loadGraphData(w), workflow);
    await page.evaluate(() => window.comfyAPI.app.app.extensionManager && null);
    await page.locator(".gd-generate").click({ timeout: 10000 });
    await page.waitForFunction(() => /Queued \d+ scenes/.test(document.querySelector(".gd-note").textContent), null, { timeout: 60000 });
    await page.waitForFunction(() => fetch("/api/queue").then((r) => r.json())
      .then((q) => q.queue_running.length + q.queue_pending.length === 0), null, { timeout: 300000, polling: 2000 });
    generated = await page.evaluate(() => fetch("/api/history?max_items=10").then((r) => r.json()).then((h) =>
      Object.values(h).map((item) => ({ status: item.status && item.status.status_str,
        scene_index: Object.values(item.prompt[2]).filter((n) => n.class_type === "GemDirectSceneSelect").map((n) => n.inputs.scene_index)[0] }))));
  }
  const cards = await page.$$eval(".gd-card", (n) => n.map((c) => `${c.dataset.scene}:${c.querySelector(".gd-badge").textContent}`));
  const health = await page.$$eval(".gd-chip", (n) => n.map((c) => c.textContent));
  const generate = await page.locator(".gd-generate").isEnabled();
  const settings = await page.evaluate(() => ["AutoRefreshSeconds", "AssistantEndpoint"].map((k) =>
    window.comfyAPI.app.app.extensionManager.setting.get(`gemDirect.Panel.${k}`)));
  console.log(JSON.stringify({ cards, health, generateEnabled: generate, reasonWithoutWorkflow: noWorkflow, generated, settings }, null, 1));
  ok = cards.length > 0;
} catch (error) {
  console.error(`panel check failed: ${error.message}`);
} finally {
  await page.screenshot({ path: join(output, "comfyui-panel.png") });
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (problems.length) console.error(problems.join("\n"));
process.exit(ok && !problems.length ? 0 : 1);
