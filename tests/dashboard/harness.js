// Shared by the dashboard's browser tests: the real binary on a free loopback port, its
// ledger seeded with known calls (through the spill file the ledger replays at start),
// and Debian's chromium driven by playwright-core.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = process.env.BAZAAR_BIN ?? join(root, "target", "debug", "bazaar");
export const MASTER = "bzr-dash-master";
export const ALICE = "bzr-dash-alice";
export const HOUR = 3600000;
export const DAY = 86400000;

const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

/// A ledger row for the spill file. `call`: { ts_ms, key, tier, provider, model, cost, baseline }.
function row(call, i) {
  return {
    ts_ms: call.ts_ms, request_id: `seed-${i}`, key_name: call.key, key_id: `config:${call.key}`, team: call.key === "alice" ? "web" : "ops",
    route: "auto", provider: call.provider, model: call.model, tier: call.tier, endpoint: "chat",
    input_tokens: 100 * (i + 1), cached_input_tokens: 0, cache_write_tokens: 0, output_tokens: 50 * (i + 1),
    reasoning_tokens: 0, cost_nanos: call.cost, baseline_cost_nanos: call.baseline, catalog_version: "seed",
    estimated: false, latency_ms: 200 + i * 100, ttft_ms: 100 + i * 10, status: 200, error_type: null, fallbacks: 0,
  };
}

/// Starts the gateway on a ledger holding exactly `calls`; resolves once the spend API
/// counts them all. Returns { base, stop }; `stop` resolves once the gateway has exited
/// and its directory is removed.
export async function startGateway(calls) {
  const dir = mkdtempSync(join(tmpdir(), "bazaar-dash-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  writeFileSync(join(dir, "ledger.sqlite.spill.jsonl"), calls.map((c, i) => JSON.stringify(row(c, i))).join("\n") + "\n");
  writeFileSync(join(dir, "bazaar.toml"), `[server]\nlisten = "127.0.0.1:${port}"\nmaster_key = "${MASTER}"\n[ledger]\nurl = "sqlite://ledger.sqlite"\n[[keys]]\nname = "alice"\nkey = "${ALICE}"\nteam = "web"\n[[keys]]\nname = "bob"\nkey = "bzr-dash-bob"\nteam = "ops"\n`);
  const gateway = spawn(bin, ["serve", "--config", join(dir, "bazaar.toml")], { stdio: "ignore" });
  const since = Math.floor((Math.min(...calls.map((c) => c.ts_ms)) - DAY) / 1000);
  for (let i = 0; i < 400; i++) {
    try {
      const r = await fetch(`${base}/v1/spend?from=${since}`, { headers: { authorization: `Bearer ${MASTER}` } });
      if (r.ok && (await r.json()).totals.requests === calls.length) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  const stop = async () => {
    const exited = gateway.exitCode === null ? new Promise((r) => gateway.once("exit", r)) : null;
    gateway.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  return { base, stop };
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
  });
}

/// Opens the dashboard with `key` and waits until it has loaded. Console errors and
/// failed requests are collected in `page.problems` (a page should have none).
export async function openDashboard(browser, base, key) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  page.problems = [];
  page.on("console", (m) => { if (m.type() === "error") page.problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) page.problems.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${base}/dashboard`);
  await page.fill("#key", key);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("body[data-loaded='1']");
  return page;
}

export const usd = (nanos) => "$" + (nanos / 1e9).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 6 });
