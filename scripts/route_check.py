#!/usr/bin/env python3
"""Routing quality checked from outside, through the HTTP API, beside `bazaar router eval`.

    scripts/route_check.py --set gsm8k [--folds 5] [--seed 17] [--bin target/debug/bazaar]
    scripts/route_check.py --set mmlu --shipped          # the embedded weights, every row
    scripts/route_check.py --set routerbench --folds 5   # 11 models, costs from the rows

For each fold (prompts split as `bazaar router eval --seed S` splits them) it writes the
other folds' rows (plus the other RouteLLM set, as the shipped weights are fitted on
both), fits them with `bazaar router train`, starts `bazaar serve` on 127.0.0.1 with a
config that loads those weights with `[router.predictor] file`, and sweeps
`bazaar.quality_floor` over the held-out prompts through `POST /v1/route/explain` (each
prompt one user message, `x-request-id` fixed per prompt), reading the chosen model.
The floor sweep is 0..100 step 1; a prompt is asked at both ends of a span of floors and
the span is split only where the answers differ (under `cheapest-above-quality` two
floors that choose the same model choose it at every floor between: the set reaching a
higher floor is a subset of the set reaching a lower one); `--every-floor` asks all 101.
From the decisions and the rows' correctness it computes APGR, CPT(50%), CPT(80%)
(RouteLLM) and AIQ with the cost at the best single model's accuracy (RouterBench), and
runs `bazaar router eval --weights <the fold's weights>` on the same held-out rows with the
same config to print both side by side. `--shipped` uses the embedded weights on every
row: in-sample for the RouteLLM sets (the shipped weights were fitted on them).

Weights and rows go to a temporary directory (`--work`, default under /tmp) and are
deleted at the end unless `--keep`: RouterBench rows and anything fitted on them must
not enter the repository. Standard library only.
"""
import argparse
import csv
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(REPO, "..", "shared", "router-data")
MASK = (1 << 64) - 1
MASTER = "bzr-routecheck-master"

PAIR = [  # id, input $/Mtok, output $/Mtok, quality (MMLU, GSM8K), tier
    ("gpt-4-1106-preview", 10.0, 30.0, {"mmlu": 80.27, "gsm8k": 84.75}, "frontier"),
    ("mixtral-8x7b-instruct", 0.24, 0.24, {"mmlu": 68.02, "gsm8k": 63.20}, "open-hosted"),
]
# RouterBench subset: prices of the rows' time (router-data README), training accuracy.
RB = [
    ("gpt-4-1106-preview", 10.0, 30.0, 87.94, "frontier"),
    ("gpt-3.5-turbo-1106", 1.0, 2.0, 72.43, "frontier"),
    ("claude-v2", 8.0, 24.0, 54.42, "frontier"),
    ("claude-v1", 8.0, 24.0, 72.24, "frontier"),
    ("claude-instant-v1", 0.8, 2.4, 66.85, "frontier"),
    ("llama-2-70b-chat", 0.9, 0.9, 61.36, "open-hosted"),
    ("mixtral-8x7b-chat", 0.6, 0.6, 73.88, "open-hosted"),
    ("yi-34b-chat", 0.8, 0.8, 77.05, "open-hosted"),
    ("code-llama-34b", 0.776, 0.776, 61.09, "open-hosted"),
    ("mistral-7b-chat", 0.2, 0.2, 58.10, "open-hosted"),
    ("wizardlm-13b", 0.3, 0.3, 56.78, "open-hosted"),
]
FILES = {
    "mmlu": "routellm_mmlu_train.csv",
    "gsm8k": "routellm_gsm8k_train.csv",
    "routerbench": "routerbench3_train.csv",
}
EXTRA = {"mmlu": "gsm8k", "gsm8k": "mmlu"}


# ------------------------------------------------------------------ rows and folds


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def folds(n, k, seed):
    """`bazaar router eval`'s folds: a seeded shuffle, fold = position mod k."""
    idx = list(range(n))
    s = seed & MASK
    for i in range(n - 1, 0, -1):
        s, r = splitmix(s)
        j = r % (i + 1)
        idx[i], idx[j] = idx[j], idx[i]
    fold = [0] * n
    for pos, p in enumerate(idx):
        fold[p] = pos % k
    return fold


def read_rows(path):
    """The rows `scripts/router_rows.py` writes, grouped by prompt in first-seen order."""
    csv.field_size_limit(1 << 30)
    order, by = [], {}
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            p = r["prompt"]
            if p not in by:
                by[p] = []
                order.append(p)
            by[p].append(r)
    return order, by


def write_rows(path, prompts, by, append=False):
    with open(path, "a" if append else "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if not append:
            w.writerow(["prompt", "model", "score", "cost", "task", "weight"])
        for p in prompts:
            for r in by[p]:
                w.writerow([r["prompt"], r["model"], r["score"], r["cost"], r["task"], r["weight"]])


def convert(set_name, data, out):
    with open(out, "w", encoding="utf-8") as f:
        subprocess.run(
            [sys.executable, os.path.join(HERE, "router_rows.py"), os.path.join(data, FILES[set_name])],
            stdout=f,
            check=True,
        )


# ------------------------------------------------------------------ metrics (eval's definitions)


def apgr(points, weak, strong):
    band = strong - weak
    p = sorted(list(points) + [(0.0, weak), (1.0, strong)])
    return sum((b[0] - a[0]) * ((a[1] - weak) + (b[1] - weak)) / 2.0 / band for a, b in zip(p, p[1:]))


def cpt(points, weak, strong, target):
    band = strong - weak
    p = [(x, (q - weak) / band) for x, q in points] + [(0.0, 0.0), (1.0, 1.0)]
    p.sort(key=lambda t: (t[0], -t[1]))
    target -= 1e-12
    if p[0][1] >= target:
        return p[0][0]
    for (x0, y0), (x1, y1) in zip(p, p[1:]):
        if y1 >= target:
            if y1 <= y0 or x1 <= x0:
                return x1
            return x0 + (x1 - x0) * min(1.0, max(0.0, (target - y0) / (y1 - y0)))
    return 1.0


def hull(points):
    p = sorted(points, key=lambda t: (t[0], -t[1]))
    kept, best = [], float("-inf")
    for c, q in p:
        if q > best:
            kept.append((c, q))
        best = max(best, q)
    h = []
    for pt in kept:
        while len(h) >= 2:
            a, b = h[-2], h[-1]
            if (b[0] - a[0]) * (pt[1] - a[1]) - (b[1] - a[1]) * (pt[0] - a[0]) >= 0:
                h.pop()
            else:
                break
        h.append(pt)
    return h


def aiq(points, c_min, c_max):
    h = hull(points)

    def at(c):
        if c <= h[0][0]:
            return h[0][1]
        for a, b in zip(h, h[1:]):
            if c <= b[0]:
                t = (c - a[0]) / max(b[0] - a[0], 1e-300)
                return a[1] + t * (b[1] - a[1])
        return h[-1][1]

    xs = sorted([c_min, c_max] + [c for c, _ in h if c_min < c < c_max])
    return sum((b - a) * (at(a) + at(b)) / 2.0 for a, b in zip(xs, xs[1:])) / (c_max - c_min)


def figures(models, score, cost, choice):
    """choice[floor][prompt] = model index; score/cost[prompt][model]."""
    n = len(score)
    singles = [
        (sum(cost[p][m] for p in range(n)) / n, sum(score[p][m] for p in range(n)) / n)
        for m in range(len(models))
    ]
    strong = None
    if len(models) == 2:
        strong = 1 if singles[1][1] > singles[0][1] else 0
    pts = []
    for ch in choice:
        c = sum(cost[p][ch[p]] for p in range(n)) / n
        q = sum(score[p][ch[p]] for p in range(n)) / n
        s = sum(1 for p in range(n) if ch[p] == strong) / n
        pts.append((c, q, s))
    out = {}
    c_min = min(c for c, _ in singles)
    c_max = max(c for c, _ in singles)
    out["AIQ"] = aiq([(c, q) for c, q, _ in pts], c_min, c_max)
    best = max(q for _, q in singles)
    at = [c * 1000 for c, q, _ in pts if q >= best - 1e-12]
    out["$/1k at best"] = min(at) if at else None
    if strong is not None:
        w, st = singles[1 - strong][1], singles[strong][1]
        share = [(s, q) for _, q, s in pts]
        out["APGR"] = apgr(share, w, st)
        out["CPT(50%)"] = cpt(share, w, st, 0.5)
        out["CPT(80%)"] = cpt(share, w, st, 0.8)
    return out


# ------------------------------------------------------------------ config and server


def config_toml(set_name, workdir, weights, predictor=True):
    lines = [
        "[server]",
        'master_key = "env:BAZAAR_MASTER_KEY"',
        "[ledger]",
        f'url = "sqlite://{os.path.join(workdir, "ledger.sqlite")}"',
        "[router.predictor]",
        f"enabled = {'true' if predictor else 'false'}",
    ]
    if weights:
        lines.append(f'file = "{weights}"')
    lines += [
        "[providers.f]",
        'base_url = "http://127.0.0.1:9/v1"',
        'tier = "frontier"',
        "[providers.h]",
        'base_url = "http://127.0.0.1:9/v1"',
        'tier = "open-hosted"',
    ]
    if set_name == "routerbench":
        models = [(m, i, o, q, t) for m, i, o, q, t in RB]
    else:
        models = [(m, i, o, q[set_name], t) for m, i, o, q, t in PAIR]
    for m, i, o, q, t in models:
        prov = "f" if t == "frontier" else "h"
        lines += [
            "[[models]]",
            f'id = "{m}"',
            f'provider = "{prov}"',
            f"input_price = {i}",
            f"output_price = {o}",
            f"quality = {q}",
        ]
    ids = ", ".join(f'"{m[0]}"' for m in models)
    lines += ["[routes.eval]", f"models = [{ids}]", 'policy = "cheapest-above-quality"', "quality_floor = 50"]
    return "\n".join(lines) + "\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, config, workdir):
        self.port = free_port()
        env = dict(os.environ, BAZAAR_MASTER_KEY=MASTER)
        self.log = open(os.path.join(workdir, f"serve-{self.port}.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", config, "--listen", f"127.0.0.1:{self.port}"],
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(600):  # up to 60 s for the port to answer
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("serve did not listen within 60 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.calls = 0

    def chosen(self, prompt, floor, request_id):
        body = json.dumps(
            {
                "model": "eval",
                "messages": [{"role": "user", "content": prompt}],
                "bazaar": {"policy": "cheapest-above-quality", "quality_floor": floor},
            }
        )
        headers = {
            "authorization": f"Bearer {MASTER}",
            "content-type": "application/json",
            "x-request-id": request_id,
        }
        for attempt in range(2):
            try:
                self.conn.request("POST", "/v1/route/explain", body, headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        self.calls += 1
        if resp.status != 200:
            raise RuntimeError(f"explain: HTTP {resp.status}: {data[:300]!r}")
        out = json.loads(data)
        costs = {c["model"]: float(c["expected_cost_usd"]) for c in out["candidates"] if "expected_cost_usd" in c}
        for c in out["candidates"]:
            if c.get("verdict") == "chosen":
                return c["model"], costs
        raise RuntimeError(f"explain chose nothing: {data[:300]!r}")


def sweep(client, prompt, floors, request_id, every):
    """The chosen model at every floor (index into floors), and the expected costs."""
    got, costs = {}, {}

    def ask(i):
        if i not in got:
            got[i], c = client.chosen(prompt, floors[i], request_id)
            costs.update(c)
        return got[i]

    if every:
        for i in range(len(floors)):
            ask(i)
    else:
        spans = [(0, len(floors) - 1)]
        while spans:
            lo, hi = spans.pop()
            if ask(lo) == ask(hi):
                for i in range(lo + 1, hi):
                    got[i] = got[lo]
            elif hi - lo > 1:
                mid = (lo + hi) // 2
                spans += [(lo, mid), (mid, hi)]
    return [got[i] for i in range(len(floors))], costs


def http_decisions(binary, config, workdir, prompts, models, floors, every, threads):
    server = Server(binary, config, workdir)
    try:
        choice = [[0] * len(prompts) for _ in floors]
        expected = [None] * len(prompts)
        index = {m: i for i, m in enumerate(models)}
        errors, calls = [], []

        def work(part):
            client = Client(server.port)
            try:
                for p in part:
                    ch, costs = sweep(client, prompts[p][1], floors, f"route-check-{prompts[p][0]}", every)
                    for fi, m in enumerate(ch):
                        choice[fi][p] = index[m]
                    expected[p] = [costs.get(m, 0.0) for m in models]
            except Exception as e:  # reported after the join
                errors.append(e)
            calls.append(client.calls)

        ts = [threading.Thread(target=work, args=(range(t, len(prompts), threads),)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise errors[0]
        return choice, expected, sum(calls)
    finally:
        server.stop()


# ------------------------------------------------------------------ eval beside it


def run_eval(binary, config, data, weights, floors_arg):
    out = subprocess.run(
        [binary, "router", "eval", "--data", data, "--config", config, "--route", "eval",
         "--weights", weights, "--floors", floors_arg, "--balanced", "false", "--bootstrap", "20"],
        capture_output=True, text=True, env=dict(os.environ, BAZAAR_MASTER_KEY=MASTER),
    )
    if out.returncode != 0:
        raise RuntimeError(f"router eval failed ({out.returncode}): {out.stderr.strip()}")
    out = out.stdout
    for line in out.splitlines():
        if line.startswith("predictor "):
            vals = []
            for tok in line[len("predictor"):].split("]"):
                if "[" in tok:
                    vals.append(float(tok.split("[")[0].replace("%", "").strip()))
            rest = line.split("]")[-1].strip()
            if len(vals) == 4:
                return {"APGR": vals[0], "CPT(50%)": vals[1] / 100, "CPT(80%)": vals[2] / 100, "AIQ": vals[3]}
            at = None if "not reached" in rest else float(rest.lstrip("$"))
            return {"AIQ": vals[0], "$/1k at best": at}
    raise RuntimeError("no predictor line in eval output:\n" + out)


def fmt(v, key):
    if v is None:
        return "not reached"
    if key.startswith("CPT"):
        return f"{100 * v:.1f} %"
    if key.startswith("$"):
        return f"${v:.3f}"
    return f"{v:.3f}"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=sorted(FILES), required=True)
    ap.add_argument("--data", default=DATA, help="the router-data directory")
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "debug", "bazaar"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-fold", type=int, default=None, help="run this fold only")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--shipped", action="store_true", help="embedded weights, every row (in-sample for RouteLLM)")
    ap.add_argument("--limit", type=int, default=0, help="check only the first N held-out prompts of a fold")
    ap.add_argument("--every-floor", action="store_true", help="ask all 101 floors, no span splitting")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv[1:])
    # The gateway is started from the work directory: a relative --bin would not be found there.
    a.bin = os.path.abspath(a.bin)
    if a.shipped and a.set == "routerbench":
        ap.error("the shipped weights do not know the RouterBench models; run it cross-validated")

    work = a.work or tempfile.mkdtemp(prefix="route-check-")
    os.makedirs(work, exist_ok=True)
    start = time.time()
    try:
        rows = os.path.join(work, "rows.csv")
        convert(a.set, a.data, rows)
        order, by = read_rows(rows)
        models = sorted({r["model"] for p in order for r in by[p]})
        extra_order, extra_by = [], {}
        if a.set in EXTRA:
            extra = os.path.join(work, "extra.csv")
            convert(EXTRA[a.set], a.data, extra)
            extra_order, extra_by = read_rows(extra)
        floors = [float(f) for f in range(101)]
        n = len(order)
        fold = folds(n, a.folds, a.seed)
        runs = [None] if a.shipped else [k for k in range(a.folds) if a.only_fold in (None, k)]
        keys = ["AIQ", "$/1k at best"] if a.set == "routerbench" else ["APGR", "CPT(50%)", "CPT(80%)", "AIQ"]
        print(f"{a.set}: {n} prompts, models {', '.join(models)}; "
              f"{'shipped weights, every row (in-sample)' if a.shipped else f'{a.folds} folds, seed {a.seed}'}")
        table = []
        for k in runs:
            t0 = time.time()
            held = [p for p in range(n) if k is None or fold[p] == k]
            if a.limit:
                held = held[: a.limit]
            held_rows = os.path.join(work, f"held-{k}.csv")
            write_rows(held_rows, [order[p] for p in held], by)
            if k is None:
                weights = os.path.join(REPO, "src", "catalog", "predictor", "routellm.bzq")
                serve_cfg = config_toml(a.set, work, None)
            else:
                train_rows = os.path.join(work, f"train-{k}.csv")
                write_rows(train_rows, [order[p] for p in range(n) if fold[p] != k], by)
                if extra_order:
                    write_rows(train_rows, extra_order, extra_by, append=True)
                weights = os.path.join(work, f"fold-{k}.bzq")
                subprocess.run([a.bin, "router", "train", "--data", train_rows, "--out", weights],
                               check=True, stdout=subprocess.DEVNULL)
                serve_cfg = config_toml(a.set, work, weights)
            cfg = os.path.join(work, f"serve-{k}.toml")
            with open(cfg, "w") as f:
                f.write(serve_cfg)
            eval_cfg = os.path.join(work, f"eval-{k}.toml")
            with open(eval_cfg, "w") as f:
                f.write(config_toml(a.set, work, None, predictor=False))
            prompts = [(p, order[p]) for p in held]
            choice, expected, calls = http_decisions(a.bin, cfg, work, prompts, models, floors, a.every_floor, a.threads)
            score, cost = [], []
            for i, p in enumerate(held):
                # A prompt listed twice counts its mean score and its last cost, as `router eval` does.
                sc = {m: [float(r["score"]) for r in by[order[p]] if r["model"] == m] for m in models}
                co = {m: [float(r["cost"]) for r in by[order[p]] if r["model"] == m and r["cost"]] for m in models}
                score.append([sum(sc[m]) / len(sc[m]) if sc[m] else 0.0 for m in models])
                cost.append([co[m][-1] if co[m] else expected[i][j] for j, m in enumerate(models)])
            via_http = figures(models, score, cost, [[ch[p] for p in range(len(held))] for ch in choice])
            via_eval = run_eval(a.bin, eval_cfg, held_rows, weights, "0:100:1")
            label = "all" if k is None else str(k)
            table.append((label, via_http, via_eval))
            print(f"fold {label}: {len(held)} prompts, {calls} explain calls, {time.time() - t0:.0f} s")
            for key in keys:
                print(f"  {key:<14} http {fmt(via_http.get(key), key):<12} eval {fmt(via_eval.get(key), key)}")
            sys.stdout.flush()
        if len(table) > 1:
            print("mean over folds:")
            for key in keys:
                hv = [t[1].get(key) for t in table]
                ev = [t[2].get(key) for t in table]
                mean = lambda v: None if any(x is None for x in v) else sum(v) / len(v)
                print(f"  {key:<14} http {fmt(mean(hv), key):<12} eval {fmt(mean(ev), key)}")
        print(f"total {time.time() - start:.0f} s; work dir {work}{'' if a.keep else ' (removed)'}")
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
