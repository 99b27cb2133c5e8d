// The cost dashboard in a real browser (Debian's chromium via playwright-core) against
// the real binary whose ledger is seeded with known calls (through the spill file the
// ledger replays at start). Checks totals, savings, chart series, grouping, date range,
// a virtual key's own view, CSV export, and saves a screenshot.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = process.env.BAZAAR_BIN ?? join(root, "target", "debug", "bazaar");
const MASTER = "bzr-dash-master";
const ALICE = "bzr-dash-alice";
const DAY = 86400000;
const now = Date.now();
const startOfDay = now - (now % DAY);

// Known calls: [days ago, key, tier, provider, model, cost, baseline].
const SEED = [
  [0, "alice", "frontier", "openai", "gpt-4o", 4000000, 4000000],
  [0, "alice", "open-hosted", "groq", "llama-3.3-70b", 500000, 3000000],
  [1, "bob", "local", "ollama", "qwen3-8b", 0, 2000000],
  [1, "bob", "open-hosted", "together", "llama-3.3-70b", 700000, 3500000],
  [2, "alice", "frontier", "openai", "gpt-4o", 6000000, 6000000],
  [10, "bob", "frontier", "openai", "gpt-4o", 9000000, 9000000],
];
const sum = (rows, i) => rows.reduce((a, r) => a + r[i], 0);
const recent = SEED.filter((r) => r[0] <= 6);

let gateway, browser, base;

const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), "bazaar-dash-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const spill = SEED.map(([days, key, tier, provider, model, cost, baseline], i) =>
    JSON.stringify({
      ts_ms: startOfDay - days * DAY + 3600000 + i * 60000, request_id: `seed-${i}`, key_name: key, team: key === "alice" ? "web" : "ops",
      route: "auto", provider, model, tier, endpoint: "chat", input_tokens: 100 * (i + 1), cached_input_tokens: 0, cache_write_tokens: 0,
      output_tokens: 50 * (i + 1), reasoning_tokens: 0, cost_nanos: cost, baseline_cost_nanos: baseline, catalog_version: "seed",
      estimated: false, latency_ms: 200 + i * 100, ttft_ms: 100 + i * 10, status: 200, error_type: null, fallbacks: 0,
    })).join("\n") + "\n";
  writeFileSync(join(dir, "ledger.sqlite.spill.jsonl"), spill);
  writeFileSync(join(dir, "bazaar.toml"), `[server]\nlisten = "127.0.0.1:${port}"\nmaster_key = "${MASTER}"\n[ledger]\nurl = "sqlite://ledger.sqlite"\n[[keys]]\nname = "alice"\nkey = "${ALICE}"\nteam = "web"\n[[keys]]\nname = "bob"\nkey = "bzr-dash-bob"\nteam = "ops"\n`);
  gateway = spawn(bin, ["serve", "--config", join(dir, "bazaar.toml")], { stdio: "ignore" });
  for (let i = 0; i < 400; i++) {
    try {
      const r = await fetch(`${base}/v1/spend?from=${Math.floor((now - 30 * DAY) / 1000)}`, { headers: { authorization: `Bearer ${MASTER}` } });
      if (r.ok && (await r.json()).totals.requests === SEED.length) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  gateway?.kill("SIGTERM");
});

const usd = (nanos) => "$" + (nanos / 1e9).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 6 });

async function open(key) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  await page.goto(`${base}/dashboard`);
  await page.fill("#key", key);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("body[data-loaded='1']");
  return page;
}

test("totals, savings and chart series match the seeded ledger", async () => {
  const page = await open(MASTER);
  assert.equal(await page.textContent("#total-cost"), usd(sum(recent, 5)));
  assert.equal(await page.textContent("#total-baseline"), usd(sum(recent, 6)));
  assert.equal(await page.textContent("#total-savings"), usd(sum(recent, 6) - sum(recent, 5)));
  assert.equal(await page.textContent("#total-requests"), String(recent.length));
  const chart = await page.evaluate(() => window.__bazaarChart);
  assert.deepEqual(chart.groups, ["frontier", "local", "open-hosted"]);
  // Stacked series: the last group's line ends at the day's total.
  const lastDay = chart.data[chart.data.length - 1].at(-1);
  const today = recent.filter((r) => r[0] === 0);
  assert.ok(Math.abs(lastDay - sum(today, 5) / 1e9) < 1e-12, `${lastDay}`);
  // The key is never in a URL.
  assert.ok(!page.url().includes(MASTER));
  mkdirSync(join(root, "docs"), { recursive: true });
  await page.screenshot({ path: join(root, "docs", "dashboard.png"), fullPage: true });
  await page.close();
});

test("grouping and date range switch the view", async () => {
  const page = await open(MASTER);
  await page.selectOption("#group_by", "provider");
  await page.waitForSelector("body[data-loaded='1']");
  assert.equal(await page.textContent("#groups tbody tr td"), "openai");
  const chart = await page.evaluate(() => window.__bazaarChart);
  assert.deepEqual(chart.groups, ["groq", "ollama", "openai", "together"]);
  // Widen the range to include the call from ten days ago.
  const from = new Date(now - 12 * DAY).toISOString().slice(0, 10);
  await page.fill("#from", from);
  await page.dispatchEvent("#from", "change");
  await page.waitForFunction((n) => document.body.dataset.loaded === "1" && document.querySelector("#total-requests").textContent === String(n), SEED.length);
  assert.equal(await page.textContent("#total-cost"), usd(sum(SEED, 5)));
  const rows = await page.$$eval("#calls tbody tr", (trs) => trs.length);
  assert.equal(rows, SEED.length);
  await page.close();
});

test("a virtual key sees only its own spend", async () => {
  const page = await open(ALICE);
  const alice = recent.filter((r) => r[1] === "alice");
  assert.equal(await page.textContent("#total-requests"), String(alice.length));
  assert.equal(await page.textContent("#total-cost"), usd(sum(alice, 5)));
  const keys = await page.$$eval("#calls tbody tr td:nth-child(2)", (tds) => [...new Set(tds.map((t) => t.textContent))]);
  assert.deepEqual(keys, ["alice"]);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
  assert.equal(download.suggestedFilename(), "bazaar-spend.csv");
  await page.close();
});
