// The cost dashboard in a real browser (Debian's chromium via playwright-core) against
// the real binary whose ledger is seeded with known calls. Checks totals, savings, chart
// series, grouping, date range, a virtual key's own view, CSV export, and saves a
// screenshot (to target/dashboard.png, or $DASHBOARD_SCREENSHOT: the tracked
// docs/dashboard.png is refreshed only on purpose).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { startGateway, launchBrowser, openDashboard, usd, root, MASTER, ALICE, DAY } from "./harness.js";

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

before(async () => {
  gateway = await startGateway(SEED.map(([days, key, tier, provider, model, cost, baseline], i) =>
    ({ ts_ms: startOfDay - days * DAY + 3600000 + i * 60000, key, tier, provider, model, cost, baseline })));
  base = gateway.base;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
});

const open = (key) => openDashboard(browser, base, key);

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
  assert.deepEqual(page.problems, []);
  const shot = process.env.DASHBOARD_SCREENSHOT ?? join(root, "target", "dashboard.png");
  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
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
