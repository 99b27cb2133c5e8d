// Issue 14: "Spend over time" on a ledger holding a single hour of calls. The x axis must
// span the range asked for (not a few years around one instant), every bucket of it must
// be drawn (zeros where nothing was spent), and the legend must show the bucket under
// the cursor (never 1970 for "no point"), in the day and hour views and over a long range.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway, launchBrowser, openDashboard, MASTER, HOUR, DAY } from "./harness.js";

const now = Date.now();
// Two hours ago, so it is in the past and inside the default range (the last 7 days).
const SEEDED_HOUR = now - (now % HOUR) - 2 * HOUR;
const CALLS = [
  { ts_ms: SEEDED_HOUR + 60000, key: "alice", tier: "frontier", provider: "openai", model: "gpt-4o", cost: 3000000, baseline: 3000000 },
  { ts_ms: SEEDED_HOUR + 120000, key: "alice", tier: "open-hosted", provider: "groq", model: "llama-3.3-70b", cost: 500000, baseline: 2500000 },
  { ts_ms: SEEDED_HOUR + 180000, key: "bob", tier: "open-hosted", provider: "together", model: "llama-3.3-70b", cost: 700000, baseline: 2500000 },
];
const TOTAL = CALLS.reduce((a, c) => a + c.cost, 0) / 1e9;
const today = now - (now % DAY);
const weekAgo = today - 6 * DAY;
const iso = (ms, n) => new Date(ms).toISOString().slice(0, n).replace("T", " ");

let gateway, browser;

before(async () => {
  gateway = await startGateway(CALLS);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
});

// What the page drew: the series, and the x scale uPlot actually used.
const drawn = (page) => page.evaluate(() => {
  const c = window.__bazaarChart;
  return { buckets: c.buckets, data: c.data, min: c.plot.scales.x.min, max: c.plot.scales.x.max };
});
const legend = (page) => page.$$eval(".u-legend .u-series", (rows) => rows.map((r) => r.querySelector(".u-value")?.textContent ?? ""));

// Moves the mouse over the bucket starting at `ms` and returns the legend.
async function hover(page, ms) {
  const { x, y } = await page.evaluate((sec) => {
    const plot = window.__bazaarChart.plot;
    const box = plot.over.getBoundingClientRect();
    // A bucket at the axis end sits on the plot's edge: stay a pixel inside it.
    const pos = Math.min(Math.max(plot.valToPos(sec, "x"), 1), box.width - 2);
    return { x: box.left + pos, y: box.top + box.height / 2 };
  }, ms / 1000);
  await page.mouse.move(x, y);
  await page.waitForFunction(() => document.querySelector(".u-legend .u-series .u-value")?.textContent !== "–");
  return legend(page);
}

async function view(page, granularity, from) {
  if (from !== undefined) {
    await page.fill("#from", iso(from, 10));
    await page.dispatchEvent("#from", "change");
    await page.waitForSelector("body[data-loaded='1']");
  }
  await page.selectOption("#granularity", granularity);
  await page.waitForFunction((g) => document.body.dataset.loaded === "1" && window.__bazaarChart?.granularity === g, granularity);
  return drawn(page);
}

test("issue 14: day view of a single hour spans the week, one bucket holds the spend", async () => {
  const page = await openDashboard(browser, gateway.base, MASTER);
  const chart = await view(page, "day");
  assert.equal(chart.buckets.length, 7);
  assert.equal(chart.min, weekAgo / 1000);
  assert.equal(chart.max, today / 1000);
  const seededDay = SEEDED_HOUR - (SEEDED_HOUR % DAY);
  const top = chart.data[chart.data.length - 1];
  chart.buckets.forEach((b, j) => {
    const expected = Date.parse(b) === seededDay ? TOTAL : 0;
    assert.ok(Math.abs(top[j] - expected) < 1e-12, `${b}: ${top[j]}`);
  });
  // Nothing under the cursor: the legend says so instead of inventing 1970.
  const idle = await legend(page);
  assert.ok(!idle.some((v) => v.includes("1970")), idle.join(" | "));
  const over = await hover(page, seededDay);
  assert.equal(over[0], iso(seededDay, 10));
  assert.ok(over.includes("$" + TOTAL.toFixed(6)), over.join(" | "));
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("issue 14: hour view of a single hour has every hour of the range", async () => {
  const page = await openDashboard(browser, gateway.base, MASTER);
  const chart = await view(page, "hour");
  assert.equal(chart.buckets.length, 7 * 24);
  assert.equal(chart.min, weekAgo / 1000);
  assert.equal(chart.max, (today + DAY - HOUR) / 1000);
  const top = chart.data[chart.data.length - 1];
  const nonzero = chart.buckets.filter((b, j) => top[j] !== 0);
  assert.deepEqual(nonzero, [new Date(SEEDED_HOUR).toISOString().replace(".000", "")]);
  const over = await hover(page, SEEDED_HOUR);
  assert.equal(over[0], iso(SEEDED_HOUR, 16));
  assert.ok(over.includes("$" + TOTAL.toFixed(6)), over.join(" | "));
  assert.deepEqual(page.problems, []);
  await page.close();
});

test("issue 14: a long range keeps the axis on the range asked for", async () => {
  const page = await openDashboard(browser, gateway.base, MASTER);
  const from = today - 400 * DAY;
  const chart = await view(page, "day", from);
  assert.equal(chart.buckets.length, 401);
  assert.equal(chart.min, from / 1000);
  assert.equal(chart.max, today / 1000);
  assert.deepEqual(page.problems, []);
  await page.close();
});
