// The cost dashboard. It reads only the spend API (docs/spend-api.md) with the key the
// user enters once; the key stays in sessionStorage and travels in the Authorization
// header, never in a URL.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const KEY = "bazaar.key";
  const NANO = 1e9;
  const usd = (nanos) => "$" + (Number(nanos) / NANO).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 6 });
  const fmt = (n) => Number(n).toLocaleString("en-US");
  const palette = ["#6aa6ff", "#4cc38a", "#f5a524", "#e5484d", "#a78bfa", "#22d3ee", "#f472b6", "#94a3b8"];
  let chart = null;

  function key() { return sessionStorage.getItem(KEY) || ""; }

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + key() } });
    if (!resp.ok) {
      let msg = resp.status + "";
      try { msg = (await resp.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return resp;
  }

  function query(extra) {
    const p = new URLSearchParams();
    if ($("from").value) p.set("from", $("from").value + "T00:00:00Z");
    if ($("to").value) {
      const to = new Date($("to").value + "T00:00:00Z");
      to.setUTCDate(to.getUTCDate() + 1);
      p.set("to", to.toISOString().replace(".000", ""));
    }
    for (const [k, v] of Object.entries(extra || {})) if (v) p.set(k, v);
    return p.toString();
  }

  function rows(tbody, items) {
    tbody.replaceChildren(...items.map((cells) => {
      const tr = document.createElement("tr");
      for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
      return tr;
    }));
  }

  // Every bucket start (unix seconds) of the queried range, so sparse data draws as a
  // line through zeros and the x axis spans the range asked for, whatever the data holds.
  function bucketStarts(fromIso, toIso, step) {
    const from = Math.floor(Date.parse(fromIso) / 1000 / step) * step;
    const to = Date.parse(toIso) / 1000;
    const xs = [];
    for (let x = from; x < to; x += step) xs.push(x);
    return xs.length ? xs : [from];
  }

  function drawChart(spend, granularity) {
    const step = granularity === "hour" ? 3600 : 86400;
    const xs = bucketStarts(spend.from, spend.to, step);
    const index = new Map(xs.map((x, j) => [x, j]));
    const groups = [...new Set(spend.series.map((s) => s.group))].sort();
    // Stacked: each group's line is the running sum of the groups before it.
    const cum = xs.map(() => 0);
    const data = [xs];
    const lines = [];
    groups.forEach((g, i) => {
      const own = xs.map(() => 0);
      for (const s of spend.series) {
        const j = index.get(Date.parse(s.bucket) / 1000);
        if (s.group === g && j !== undefined) own[j] += Number(s.cost_nanos) / NANO;
      }
      data.push(own.map((v, j) => (cum[j] += v)));
      lines.push({ label: g || "(none)", stroke: palette[i % palette.length], fill: palette[i % palette.length] + "55", width: 2, value: (u, v) => v == null ? "–" : "$" + v.toFixed(6) });
    });
    // One bucket: centre it rather than let the scale invent a range around one instant.
    const range = xs.length > 1 ? [xs[0], xs[xs.length - 1]] : [xs[0] - step / 2, xs[0] + step / 2];
    const label = (v) => v == null ? "–" : new Date(v * 1000).toISOString().slice(0, granularity === "hour" ? 16 : 10).replace("T", " ");
    const el = $("chart");
    if (chart) chart.destroy();
    el.replaceChildren();
    chart = new uPlot({
      width: Math.max(400, el.clientWidth - 8), height: 260,
      // Buckets are UTC hours and days: label the axis in UTC too.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      series: [{ label: "Time (UTC)", value: (u, v) => label(v) }].concat(lines.reverse()),
      axes: [{ stroke: "#8b93a7" }, { stroke: "#8b93a7", size: 70, values: (u, vals) => vals.map((v) => "$" + v.toFixed(4)) }],
      scales: { x: { time: true, range: () => range } },
    }, [data[0]].concat(data.slice(1).reverse()), el);
    // Tests (and anything scripting the page) read what was drawn here.
    window.__bazaarChart = { groups, granularity, buckets: xs.map((x) => new Date(x * 1000).toISOString().replace(".000", "")), data, plot: chart };
  }

  async function load() {
    document.body.dataset.loaded = "0";
    $("message").textContent = "";
    const groupBy = $("group_by").value;
    const granularity = $("granularity").value;
    document.querySelectorAll(".group-label").forEach((e) => (e.textContent = groupBy));
    try {
      const spend = await (await api("/v1/spend?" + query({ group_by: groupBy, granularity }))).json();
      const t = spend.totals;
      $("total-cost").textContent = usd(t.cost_nanos);
      $("total-baseline").textContent = usd(t.baseline_cost_nanos);
      $("total-savings").textContent = usd(t.savings_nanos);
      $("savings-pct").textContent = t.baseline_cost_nanos > 0 ? (100 * t.savings_nanos / t.baseline_cost_nanos).toFixed(1) + "% less than all-frontier" : "";
      $("total-requests").textContent = fmt(t.requests);
      $("error-rate").textContent = t.requests ? (100 * t.errors / t.requests).toFixed(1) + "% errors" : "";
      rows($("groups").tBodies[0], spend.groups.map((g) => [g.group || "(none)", fmt(g.requests), usd(g.cost_nanos), usd(g.baseline_cost_nanos), t.cost_nanos ? (100 * g.cost_nanos / t.cost_nanos).toFixed(1) + "%" : "–"]));
      rows($("tokens").tBodies[0], Object.entries(t.tokens).map(([k, v]) => [k, fmt(v)]));
      drawChart(spend, granularity);
      const tiers = await (await api("/v1/spend?" + query({ group_by: "tier" }))).json();
      rows($("tiers").tBodies[0], tiers.groups.map((g) => [g.group, fmt(g.requests), tiers.totals.requests ? (100 * g.requests / tiers.totals.requests).toFixed(1) + "%" : "–"]));
      const prov = await (await api("/v1/spend?" + query({ group_by: "provider" }))).json();
      rows($("providers").tBodies[0], prov.groups.map((g) => [g.group || "(none)", fmt(g.requests), g.latency_ms_p50 ?? "–", g.latency_ms_p95 ?? "–", g.ttft_ms_p50 ?? "–", g.ttft_ms_p95 ?? "–", g.requests ? (100 * g.errors / g.requests).toFixed(1) + "%" : "–", fmt(g.fallbacks)]));
      await loadCalls();
      $("scope").textContent = "";
    } catch (e) {
      $("message").textContent = "Could not load spend: " + e.message;
    }
    // Tests (and anything scripting the page) wait on this.
    document.body.dataset.loaded = "1";
  }

  async function loadCalls() {
    const calls = await (await api("/v1/spend/calls?" + query({ limit: 50, status: $("status").value, model: $("filter-model").value.trim() }))).json();
    rows($("calls").tBodies[0], calls.calls.map((c) => [c.time.replace("T", " ").replace("Z", ""), c.key, c.route, c.provider ? c.provider + "/" + c.model : "–", c.tier || "–", fmt(c.tokens.input + c.tokens.cached_input) + " / " + fmt(c.tokens.output + c.tokens.reasoning), c.cost_nanos == null ? "unknown" : usd(c.cost_nanos) + (c.estimated ? " (est.)" : ""), c.latency_ms + " ms", c.status]));
  }

  async function exportCsv() {
    try {
      const blob = await (await api("/v1/spend/export?" + query({ format: "csv", status: $("status").value, model: $("filter-model").value.trim() }))).blob();
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "bazaar-spend.csv";
      a.click();
      URL.revokeObjectURL(a.href);
    } catch (e) {
      $("message").textContent = "Export failed: " + e.message;
    }
  }

  function show() {
    const has = !!key();
    $("app").hidden = !has;
    $("logout").hidden = !has;
    $("key").hidden = has;
    document.querySelector("#login button[type=submit]").hidden = has;
    if (has) load();
  }

  const today = new Date();
  const weekAgo = new Date(today.getTime() - 6 * 86400000);
  $("to").value = today.toISOString().slice(0, 10);
  $("from").value = weekAgo.toISOString().slice(0, 10);
  $("login").addEventListener("submit", (e) => { e.preventDefault(); sessionStorage.setItem(KEY, $("key").value.trim()); $("key").value = ""; show(); });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); show(); });
  for (const id of ["group_by", "granularity", "from", "to"]) $(id).addEventListener("change", load);
  $("refresh").addEventListener("click", load);
  $("status").addEventListener("change", loadCalls);
  $("filter-model").addEventListener("change", loadCalls);
  $("export").addEventListener("click", exportCsv);
  show();
})();
