#!/usr/bin/env python3
"""Converts router-data CSVs into the `prompt,model,score,cost,task,weight` rows that
`bazaar router train` and `bazaar router eval` read.

    scripts/router_rows.py routellm_mmlu_train.csv [--weight W] [more.csv ...] > rows.csv

Understands the RouteLLM files (`mixtral_correct`, `gpt4_correct`; `subject` becomes
the task) and RouterBench-style files (`score:<model>` and `cost_usd:<model>`
columns; `eval_name` becomes the task). `--weight W` gives the prompts of the files
after it the weight W in a fit (default 1; evaluation counts every prompt once).
Standard library only.
"""
import csv
import os
import sys

ROUTELLM = {"mixtral_correct": "mixtral-8x7b-instruct", "gpt4_correct": "gpt-4-1106-preview"}


def rows(path):
    task_default = os.path.basename(path).split("_")[1] if "_" in os.path.basename(path) else ""
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            prompt = r["prompt"]
            task = r.get("subject") or r.get("eval_name") or task_default
            for col, model in ROUTELLM.items():
                if col in r:
                    yield prompt, model, r[col], "", task
            for col, score in r.items():
                if col.startswith("score:"):
                    model = col[len("score:"):]
                    yield prompt, model, score, r.get("cost_usd:" + model, ""), task


def main(argv):
    args = argv[1:]
    if not args:
        sys.stderr.write(__doc__)
        return 2
    csv.field_size_limit(1 << 30)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["prompt", "model", "score", "cost", "task", "weight"])
    weight = "1"
    while args:
        arg = args.pop(0)
        if arg == "--weight":
            if not args:
                sys.stderr.write("--weight needs a value\n")
                return 2
            weight = args.pop(0)
            if not float(weight) >= 0:
                sys.stderr.write(f"--weight {weight}: not a non-negative number\n")
                return 2
            continue
        for row in rows(arg):
            out.writerow(row + (weight,))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
