// The API prompts the real ComfyUI frontend makes of UI-format workflows, as a Run press does:
// app.loadGraphData(workflow), then app.graphToPrompt(). Used by tests/test_comfyui_workflows.py to
// check tests/workflow_check.py's to_api_prompt against the frontend on every shipped workflow.
//
//   node tests/frontend_prompts.mjs <ComfyUI url> <workflow.json>...   -> {"<file>": {"output": ..., "errors": [...]}}
//
// Chromium: $CHROMIUM or /usr/bin/chromium, driven by playwright-core (npm ci).

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { chromium } from "playwright-core";

const [url, ...files] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "gemdirect-frontend-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, viewport: { width: 1280, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync"],
});
const result = {};
try {
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(url, { waitUntil: "domcontentloaded", timeout: 120000 });
  await page.waitForFunction(() => window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app.graph
    && window.LiteGraph && window.LiteGraph.registered_node_types
    && window.LiteGraph.registered_node_types.GemDirectStoryLoader, null, { timeout: 120000 }); // node defs are in
  for (const file of files) {
    const workflow = JSON.parse(readFileSync(file, "utf8"));
    pageErrors.length = 0;
    const converted = await page.evaluate(async (w) => {
      const app = window.comfyAPI.app.app;
      const errors = [];
      const original = console.error;
      console.error = (...args) => { errors.push(args.map(String).join(" ")); original(...args); };
      try {
        await app.loadGraphData(structuredClone(w), true, true, null);
        const { output } = await app.graphToPrompt();
        const missing = app.graph._nodes.filter((n) => n.has_errors || n.last_serialization)
          .map((n) => `${n.id} ${n.type}`);
        return { output, missing, errors };
      } finally {
        console.error = original;
      }
    }, workflow);
    result[basename(file)] = { ...converted, pageErrors: [...pageErrors] };
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result));
