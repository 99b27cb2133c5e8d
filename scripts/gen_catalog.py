#!/usr/bin/env python3
"""Builds config/catalog.json, bazaar's built-in model catalog, from the public
reference data in ../shared/reference (or the directory given as the first argument).

What it lists: every chat and embedding model models.dev lists for a provider bazaar has
a preset for (FIRST_PARTY + HOSTS below), grouped into one model per set of weights
(the maker's id, else the host's id without its serving suffixes), plus the hand-kept
CURATED rows whose ids stay stable and whose leaderboard names are matched by hand.
Dated ids, `-latest` ids priced like the id they stand for, the makers' own ids and
OpenRouter's vendor/model slugs become aliases; no alias shadows a model id or names
two models. Left out: image, speech, video, realtime and moderation models,
Responses-only models, free tiers and unpriced routers. It prints the counts and writes
them into README.md and docs/catalog.md.

Sources, in order of preference for each figure:
  * models.dev (2026-07-02): prices (USD per 1M tokens), context and output limits,
    capability flags (tool_call, attachment/image input, structured_output, reasoning).
  * LiteLLM 1.110.2 model_prices_and_context_window.json: fills prices, limits and
    flags models.dev lacks (cache-write prices in particular).
  * Quality priors, one 0-100 scale for every category (`general`, `coding`, `math`,
    `reasoning`), so priors compare across categories and a route's `quality_floor` means
    the same thing whatever the task:
      - `general` = clamp((LMArena text score 2025-08-04 - 1000) / 5, 0, 100): 1500 maps
        to 100, 1000 to 0. This defines the scale.
      - `coding` = the Aider polyglot pass rate (2026-05, percent of 225 exercises)
        mapped linearly onto the general scale, fitted on the models both sources score:
        coding = mean_g + (pass_rate - mean_a) * sd_g / sd_a (same mean and spread as
        `general` on those models). The fit uses the hand-matched (curated) models only;
        names matched automatically (one leaderboard entry for one generated model) are
        placed on the scale but never move it. The fitted figures are printed and kept
        in the catalog's `calibration`.
      - Where one source is missing, a measured sibling (same id, another size) predicts
        it: sibling's score + r * (known - sibling's known). Without one, the other score
        predicts it along the least-squares line of the two calibrated scores on the same
        models: missing = mean_g + r * (known - mean_g), r being their correlation.
        Predicted figures are marked "predicted" and say from what.
      - `math` and `reasoning` are derived, not measured: the mean of general and coding
        (reasoning models gain nothing extra).
    Models neither source scores have no priors ("unknown").
Missing figures stay absent ("unknown"): a price is never invented as 0, except on
local servers, whose marginal price is 0 by definition.

Every figure records its source in the entry's `sources`. Output is deterministic
(sorted keys); `version` is the reference date plus a hash of the content.
"""

import csv
import hashlib
import json
import os
import re
import statistics
import sys
from decimal import Decimal

REF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")
ROOT = os.path.join(os.path.dirname(__file__), "..")
OUT = os.path.join(ROOT, "config", "catalog.json")
# Pages that state the catalog's size; the generator writes the figures into them.
COUNTED = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "docs", "catalog.md")]
COUNTS = re.compile(r"\d+ models and \d+ offers")

REFERENCE_DATE = "2026-07-02"
MDEV = f"models.dev {REFERENCE_DATE}"
LITELLM = "litellm 1.110.2"
ARENA = "lmarena 2025-08-04"
AIDER = "aider polyglot 2026-05"

# bazaar provider id -> (models.dev provider key, litellm key prefix, tier)
PROVIDERS = {
    "openai": ("openai", "", "frontier"),
    "anthropic": ("anthropic", "", "frontier"),
    "gemini": ("google", "gemini/", "frontier"),
    "xai": ("xai", "xai/", "frontier"),
    "together": ("togetherai", "together_ai/", "open-hosted"),
    "groq": ("groq", "groq/", "open-hosted"),
    "deepinfra": ("deepinfra", "deepinfra/", "open-hosted"),
    "fireworks": ("fireworks-ai", "fireworks_ai/", "open-hosted"),
    "cerebras": ("cerebras", "cerebras/", "open-hosted"),
    "deepseek": ("deepseek", "deepseek/", "open-hosted"),
    "mistral": ("mistral", "mistral/", "open-hosted"),
    "moonshot": ("moonshotai", "moonshot/", "open-hosted"),
    "zhipu": ("zai", "zai/", "open-hosted"),
    "dashscope": ("alibaba", "dashscope/", "open-hosted"),
    "openrouter": ("openrouter", "openrouter/", "open-hosted"),
    "lmstudio": ("lmstudio", None, "local"),
    "ollama": (None, None, "local"),
    "vllm": (None, None, "local"),
}

# Whether a provider's API terms let it train on prompts (as published by each
# provider for paid API use); None where bazaar has no clear statement.
TRAINS_ON_PROMPTS = {
    "openai": False, "anthropic": False, "gemini": False, "xai": False,
    "together": False, "groq": False, "deepinfra": False, "fireworks": False, "cerebras": False,
    "mistral": False, "deepseek": True, "moonshot": None, "zhipu": None, "dashscope": None,
    "ollama": False, "vllm": False, "lmstudio": False,
}

# id, kind, aliases, arena names, aider names, offers [(provider, upstream id)]
CURATED = [
    ("gpt-4o", "chat", [], ["GPT-4o-2024-08-06"], ["gpt-4o-2024-08-06"], [("openai", "gpt-4o")]),
    ("gpt-4o-mini", "chat", [], ["GPT-4o-mini-2024-07-18"], ["gpt-4o-mini-2024-07-18"], [("openai", "gpt-4o-mini")]),
    ("gpt-4.1", "chat", [], ["GPT-4.1-2025-04-14"], ["gpt-4.1"], [("openai", "gpt-4.1")]),
    ("gpt-4.1-mini", "chat", [], ["GPT-4.1-mini-2025-04-14"], ["gpt-4.1-mini"], [("openai", "gpt-4.1-mini")]),
    ("gpt-4.1-nano", "chat", [], ["GPT-4.1-nano-2025-04-14"], ["gpt-4.1-nano"], [("openai", "gpt-4.1-nano")]),
    ("o3", "chat", [], ["o3-2025-04-16"], ["o3 (high)"], [("openai", "o3")]),
    ("o4-mini", "chat", [], ["o4-mini-2025-04-16"], ["o4-mini (high)"], [("openai", "o4-mini")]),
    ("gpt-5", "chat", [], [], ["gpt-5 (medium)"], [("openai", "gpt-5")]),
    ("gpt-5-mini", "chat", [], [], [], [("openai", "gpt-5-mini")]),
    ("text-embedding-3-small", "embedding", [], [], [], [("openai", "text-embedding-3-small")]),
    ("text-embedding-3-large", "embedding", [], [], [], [("openai", "text-embedding-3-large")]),
    ("claude-sonnet-4-5", "chat", [], [], [], [("anthropic", "claude-sonnet-4-5")]),
    ("claude-sonnet-4", "chat", [], ["Claude Sonnet 4 (20250514)"], ["claude-sonnet-4-20250514 (no thinking)"], [("anthropic", "claude-sonnet-4-20250514")]),
    ("claude-opus-4", "chat", [], ["Claude Opus 4 (20250514)"], ["claude-opus-4-20250514 (no think)"], [("anthropic", "claude-opus-4-20250514")]),
    ("claude-haiku-4-5", "chat", [], [], [], [("anthropic", "claude-haiku-4-5")]),
    ("claude-3-7-sonnet", "chat", [], ["Claude 3.7 Sonnet"], ["claude-3-7-sonnet-20250219 (no thinking)"], [("anthropic", "claude-3-7-sonnet-20250219")]),
    ("gemini-2.5-pro", "chat", [], ["Gemini-2.5-Pro"], ["gemini-2.5-pro-preview-06-05 (default think)"], [("gemini", "gemini-2.5-pro")]),
    ("gemini-2.5-flash", "chat", [], ["Gemini-2.5-Flash"], ["gemini-2.5-flash-preview-05-20 (no think)"], [("gemini", "gemini-2.5-flash")]),
    ("gemini-2.5-flash-lite", "chat", [], [], [], [("gemini", "gemini-2.5-flash-lite")]),
    ("gemini-2.0-flash", "chat", [], ["Gemini-2.0-Flash-001"], ["gemini-2.0-flash-exp"], [("gemini", "gemini-2.0-flash")]),
    ("grok-4.3", "chat", [], [], [], [("xai", "grok-4.3")]),
    ("llama-3.3-70b", "chat", [], ["Llama-3.3-70B-Instruct"], [],
     [("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"), ("groq", "llama-3.3-70b-versatile"), ("deepinfra", "meta-llama/Llama-3.3-70B-Instruct-Turbo")]),
    ("llama-3.1-8b", "chat", ["llama3.1:8b"], ["Meta-Llama-3.1-8B-Instruct"], [],
     [("groq", "llama-3.1-8b-instant"), ("ollama", "llama3.1:8b"), ("vllm", "meta-llama/Llama-3.1-8B-Instruct")]),
    ("llama-4-scout", "chat", [], ["Llama-4-Scout-17B-16E-Instruct"], [],
     [("groq", "meta-llama/llama-4-scout-17b-16e-instruct"), ("deepinfra", "meta-llama/Llama-4-Scout-17B-16E-Instruct")]),
    ("llama-4-maverick", "chat", [], ["Llama-4-Maverick-17B-128E-Instruct"], ["Llama 4 Maverick"],
     [("deepinfra", "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8")]),
    ("gpt-oss-120b", "chat", [], [], ["gpt-oss-120b (high)"],
     [("groq", "openai/gpt-oss-120b"), ("together", "openai/gpt-oss-120b"), ("deepinfra", "openai/gpt-oss-120b"),
      ("fireworks", "accounts/fireworks/models/gpt-oss-120b"), ("cerebras", "gpt-oss-120b")]),
    ("gpt-oss-20b", "chat", ["gpt-oss:20b"], [], [],
     [("groq", "openai/gpt-oss-20b"), ("together", "openai/gpt-oss-20b"), ("deepinfra", "openai/gpt-oss-20b"),
      ("fireworks", "accounts/fireworks/models/gpt-oss-20b"), ("ollama", "gpt-oss:20b"), ("vllm", "openai/gpt-oss-20b")]),
    ("deepseek-v3", "chat", ["deepseek-chat"], ["DeepSeek-V3-0324"], ["DeepSeek V3 (0324)"],
     [("deepseek", "deepseek-chat"), ("together", "deepseek-ai/DeepSeek-V3")]),
    ("deepseek-r1", "chat", ["deepseek-reasoner"], ["DeepSeek-R1-0528"], ["DeepSeek R1 (0528)"],
     [("deepseek", "deepseek-reasoner"), ("together", "deepseek-ai/DeepSeek-R1"), ("deepinfra", "deepseek-ai/DeepSeek-R1-0528")]),
    ("qwen3-8b", "chat", ["qwen3:8b"], [], [], [("dashscope", "qwen3-8b"), ("ollama", "qwen3:8b"), ("vllm", "Qwen/Qwen3-8B")]),
    ("qwen3-32b", "chat", ["qwen3:32b"], ["Qwen3-32B"], ["Qwen3 32B"], [("groq", "qwen/qwen3-32b"), ("dashscope", "qwen3-32b"), ("ollama", "qwen3:32b")]),
    ("qwen3-235b-a22b", "chat", [], ["Qwen3-235B-A22B-Instruct-2507"], ["Qwen3 235B A22B diff, no think, Alibaba API"],
     [("together", "Qwen/Qwen3-235B-A22B-Instruct-2507-tput"), ("dashscope", "qwen3-235b-a22b")]),
    ("qwen3-coder-480b", "chat", [], ["Qwen3-Coder-480B-A35B-Instruct"], [],
     [("together", "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"), ("deepinfra", "Qwen/Qwen3-Coder-480B-A35B-Instruct-Turbo"),
      ("dashscope", "qwen3-coder-480b-a35b-instruct")]),
    ("kimi-k2", "chat", [], ["kimi-k2-0711-preview"], ["Kimi K2"], [("moonshot", "kimi-k2-0711-preview")]),
    ("kimi-k2.5", "chat", [], [], [], [("moonshot", "kimi-k2.5"), ("together", "moonshotai/Kimi-K2.5"), ("deepinfra", "moonshotai/Kimi-K2.5")]),
    ("glm-4.5", "chat", [], ["GLM-4.5"], [], [("zhipu", "glm-4.5")]),
    ("glm-4.6", "chat", [], [], [], [("zhipu", "glm-4.6"), ("deepinfra", "zai-org/GLM-4.6")]),
    ("mistral-large", "chat", [], ["Mistral-Large-2411"], [], [("mistral", "mistral-large-latest")]),
    ("mistral-small", "chat", [], ["Mistral-Small-2506"], [], [("mistral", "mistral-small-latest")]),
    ("codestral", "chat", [], [], ["Codestral 25.01"], [("mistral", "codestral-latest")]),
    ("gemma-3-12b", "chat", ["gemma3:12b"], ["Gemma-3-12B-it"], [], [("ollama", "gemma3:12b"), ("vllm", "google/gemma-3-12b-it")]),
    ("gemma-3-27b", "chat", ["gemma3:27b"], ["Gemma-3-27B-it"], ["gemma-3-27b-it"], [("ollama", "gemma3:27b"), ("vllm", "google/gemma-3-27b-it")]),
]

QUANT = [(re.compile(r"fp8", re.I), "fp8"), (re.compile(r"-Turbo$"), "fp8")]


def micros(usd_per_mtok):
    """USD per million tokens -> integer micro-dollars per million tokens, exactly."""
    if usd_per_mtok is None:
        return None
    return int((Decimal(str(usd_per_mtok)) * 1_000_000).to_integral_value())


def per_token_to_mtok(v):
    return None if v is None else Decimal(str(v)) * 1_000_000


def load():
    mdev = json.load(open(os.path.join(REF, "models_dev_selected_providers.json")))["providers"]
    litellm = json.load(open(os.path.join(REF, "litellm_model_prices_and_context_window.json")))
    arena = {r["model"]: int(r["arena_score"]) for r in csv.DictReader(open(os.path.join(REF, "lmarena_text_2025-08-04.csv")))}
    aider = {}
    current = {}
    for line in open(os.path.join(REF, "aider_polyglot_leaderboard.yml")):
        if line.startswith("- "):
            current = {}
            line = "  " + line[2:]
        m = re.match(r"^  (\w+): (.*)$", line.rstrip("\n"))
        if m:
            current[m.group(1)] = m.group(2).strip()
            if "model" in current and "pass_rate_2" in current:
                aider.setdefault(current["model"], float(current["pass_rate_2"]))
    return mdev, litellm, arena, aider


def mdev_model(mdev, mkey, upstream):
    """models.dev's entry for `upstream` on provider `mkey`, with the fields it inherits
    from its `base_model` (OpenRouter's entries name the first-party model they resell)."""
    m = (mdev.get(mkey) or {}).get("models", {}).get(upstream)
    if not m:
        return {}
    base = m.get("base_model", "")
    bp, _, bm = base.partition("/")
    inherited = (mdev.get(bp) or {}).get("models", {}).get(bm) or {}
    return {**inherited, **m}


def litellm_entry(litellm, provider, upstream):
    mkey, lprefix, tier = PROVIDERS[provider]
    if lprefix is None:
        return {}
    bare = litellm.get(upstream) or {}
    # A bare key counts only when LiteLLM files it under the same provider.
    if lprefix and bare.get("litellm_provider") != lprefix.rstrip("/"):
        bare = {}
    return litellm.get(lprefix + upstream) or bare


def offer(provider, upstream, mdev, litellm):
    mkey, lprefix, tier = PROVIDERS[provider]
    out = {"provider": provider, "upstream": upstream, "tier": tier, "sources": {}}
    quant = next((q for rx, q in QUANT if rx.search(upstream)), None)
    if quant:
        out["quantization"] = quant
        out["sources"]["quantization"] = "upstream id suffix"
    tp = TRAINS_ON_PROMPTS.get(provider)
    if tp is not None:
        out["trains_on_prompts"] = tp
        out["sources"]["trains_on_prompts"] = "provider API terms (paid use), as summarised by bazaar"
    if tier == "local":
        out["price"] = {"input": 0, "output": 0}
        out["sources"]["price"] = "local server: zero marginal cost"
        if not mkey:
            return out, None
    m = mdev_model(mdev, mkey, upstream)
    lentry = litellm_entry(litellm, provider, upstream)
    price = dict(out.get("price", {}))
    cost = m.get("cost") or {}
    for field, key in [("input", "input"), ("cached_input", "cache_read"), ("cache_write", "cache_write"), ("output", "output"), ("reasoning", "reasoning")]:
        if cost.get(key) is not None:
            price[field] = micros(cost[key])
            out["sources"][f"price.{field}"] = MDEV
    for field, key in [("input", "input_cost_per_token"), ("cached_input", "cache_read_input_token_cost"),
                       ("cache_write", "cache_creation_input_token_cost"), ("output", "output_cost_per_token")]:
        if field not in price and lentry.get(key) is not None:
            price[field] = micros(per_token_to_mtok(lentry[key]))
            out["sources"][f"price.{field}"] = LITELLM
    if price:
        out["price"] = price
    limits = {}
    lim = m.get("limit") or {}
    if lim.get("context"):
        limits["context"] = lim["context"]
        out["sources"]["limits.context"] = MDEV
    elif lentry.get("max_input_tokens"):
        limits["context"] = lentry["max_input_tokens"]
        out["sources"]["limits.context"] = LITELLM
    if lim.get("output"):
        limits["max_output"] = lim["output"]
        out["sources"]["limits.max_output"] = MDEV
    elif lentry.get("max_output_tokens"):
        limits["max_output"] = lentry["max_output_tokens"]
        out["sources"]["limits.max_output"] = LITELLM
    if limits:
        out["limits"] = limits
    caps = None
    if m and "tool_call" in m:
        inputs = (m.get("modalities") or {}).get("input") or []
        caps = {"tools": bool(m.get("tool_call")), "vision": "image" in inputs or bool(m.get("attachment") and "image" in inputs),
                "json_schema": bool(m.get("structured_output", m.get("tool_call"))), "reasoning": bool(m.get("reasoning"))}
        out["sources"]["capabilities"] = MDEV
    elif lentry.get("mode") == "chat":
        caps = {"tools": bool(lentry.get("supports_function_calling")), "vision": bool(lentry.get("supports_vision")),
                "json_schema": bool(lentry.get("supports_response_schema")), "reasoning": bool(lentry.get("supports_reasoning"))}
        out["sources"]["capabilities"] = LITELLM
    if caps:
        out["capabilities"] = caps
    if not m and not lentry and tier != "local":
        out["sources"]["note"] = "no price list lists this offer: price unknown"
    return out, caps


# Providers whose models.dev listing is generated in full, in order of preference for a
# model's id: the maker's own API names it first, then the hosts.
FIRST_PARTY = ["openai", "anthropic", "gemini", "xai", "deepseek", "mistral", "moonshot", "zhipu", "dashscope"]
HOSTS = ["together", "fireworks", "deepinfra", "groq", "cerebras", "openrouter", "lmstudio"]
# Not chat: speech, transcription, images, video, realtime sessions, classifiers.
NOT_CHAT = re.compile(r"tts|whisper|transcribe|realtime|image|video|audio|moderation|prompt-guard|orpheus|imagine", re.I)
# Suffixes that name how a host serves the weights, not which weights.
HOST_SUFFIXES = ("-instruct", "-turbo", "-fp8", "-tput", "-versatile", "-instant")
DATED = re.compile(r"^(.*?)-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|0)$")


def clean(provider, upstream):
    """A provider's id as a model name: the last path segment, lowercase, without the
    host's serving suffixes (`meta-llama/Llama-3.3-70B-Instruct-Turbo` -> `llama-3.3-70b`)."""
    s = upstream.lower().split("/")[-1]
    if provider == "fireworks":
        s = re.sub(r"(\d)p(\d)", r"\1.\2", s)  # Fireworks writes 4.7 as 4p7
    suffixes = ("-instruct", "-it") + (HOST_SUFFIXES if provider in HOSTS else ())
    changed = True
    while changed:
        changed = False
        for suffix in suffixes:
            if s.endswith(suffix) and len(s) > len(suffix):
                s, changed = s[: -len(suffix)], True
    if s.startswith("meta-llama-"):
        s = s[len("meta-"):]
    return s


def key(name):
    """The grouping key of a model name: versions written with dots or dashes are one."""
    return name.replace(".", "-")


def undated(name):
    """`gpt-4o-2024-08-06` -> `gpt-4o`, `mistral-large-latest` -> `mistral-large`; None if neither."""
    m = DATED.match(name)
    return m.group(1) if m else None


def kind_of(upstream):
    return "embedding" if "embed" in upstream.lower() else "chat"


def model_kind(provider, upstream, m, lentry):
    """`chat`, `embedding`, or None for what a chat gateway cannot serve (or no list prices)."""
    if upstream.endswith(":free") or NOT_CHAT.search(upstream):
        return None
    outputs = (m.get("modalities") or {}).get("output")
    if outputs is not None and outputs != ["text"] and kind_of(upstream) == "chat":
        return None
    if lentry.get("mode") not in (None, "chat", "embedding"):
        return None  # LiteLLM: a Responses-only or non-chat model
    if (m.get("limit") or {}).get("context") == 0:
        return None
    if not m and not lentry:
        return None
    if PROVIDERS[provider][2] != "local" and not (m.get("cost") or lentry.get("input_cost_per_token") is not None):
        return None  # no price list prices it (OpenRouter's and Groq's own routers)
    stated = (m.get("cost") or {}).get("input", lentry.get("input_cost_per_token"))
    if PROVIDERS[provider][2] != "local" and stated == 0:
        return None  # a free, rate-limited tier (OpenRouter's `free` router, Gemma on Gemini)
    return kind_of(upstream)


def same_offer(a, b):
    """Two models.dev entries with the same input and output price and context window (a
    dated id and the id it is an alias of)."""
    ca, cb = a.get("cost") or {}, b.get("cost") or {}
    return (ca.get("input"), ca.get("output"), (a.get("limit") or {}).get("context")) == \
        (cb.get("input"), cb.get("output"), (b.get("limit") or {}).get("context"))


def generated_offers(mdev, litellm, pinned):
    """Every chat and embedding model models.dev lists for the generated providers, as
    (provider, upstream, kind, name, folded ids), after folding dated and `-latest` ids
    into the id they stand for when the provider prices them alike."""
    out = []
    for provider in FIRST_PARTY + HOSTS:
        mkey = PROVIDERS[provider][0]
        listed = {}
        for upstream in sorted(mdev[mkey]["models"]):
            m = mdev_model(mdev, mkey, upstream)
            kind = model_kind(provider, upstream, m, litellm_entry(litellm, provider, upstream))
            if kind:
                listed[upstream] = (m, kind)
        # Ids that differ by a date, `-latest` or `-0` and are priced alike are one
        # model: the pinned id (or else the undated one, the `-latest` one, the first)
        # stays the offer and the others become its aliases.
        family = {}
        for upstream, (m, kind) in listed.items():
            family.setdefault((undated(upstream) or upstream, kind), []).append(upstream)
        folded = {}
        for ids in family.values():
            for u in ids:
                if u in folded:
                    continue
                alike = [v for v in ids if v not in folded and same_offer(listed[u][0], listed[v][0])]
                keep = min(alike, key=lambda v: ((provider, v) not in pinned, undated(v) is not None,
                                                 not v.endswith("-latest"), v))
                dated = sorted(v for v in alike if v != keep and re.search(r"\d{4}$", v))
                if undated(keep) is not None and (provider, keep) not in pinned and not keep.endswith("-latest"):
                    continue  # one dated snapshot is not an alias of another
                if keep.endswith("-latest"):
                    dated = dated[-1:]  # `-latest` stands for the newest snapshot only
                for v in alike:
                    if v != keep and (v in dated or not re.search(r"\d{4}$", v)):
                        folded[v] = keep

        def root(u):
            return folded.get(u, u)
        extra = {}
        for u in folded:
            extra.setdefault(root(u), []).append(u)
        for upstream, (m, kind) in listed.items():
            if root(upstream) != upstream:
                continue
            if (provider, upstream) in pinned:
                out.append((provider, upstream, kind, None, sorted(extra.get(upstream, []))))
                continue
            base_model = m.get("base_model", "")
            name = clean(provider, base_model.split("/")[-1] if provider == "openrouter" and base_model else upstream)
            if name.endswith("-latest"):
                name = name[: -len("-latest")]
            out.append((provider, upstream, kind, name, sorted(extra.get(upstream, []))))
    return out


def assemble(mdev, litellm):
    """Model id -> (kind, [(provider, upstream)], aliases, arena names, aider names):
    the curated rows (ids kept stable, quality names matched by hand) plus every
    generated offer, joined to a model of the same name or grouped by name."""
    models = {}
    pinned = {}
    by_key = {}
    for mid, kind, aliases, arena_names, aider_names, offers in CURATED:
        models[mid] = {"kind": kind, "offers": list(offers), "aliases": set(aliases),
                       "arena": arena_names, "aider": aider_names, "curated": True}
        by_key.setdefault(key(mid), mid)
        for provider, upstream in offers:
            pinned[(provider, upstream)] = mid
            by_key.setdefault(key(clean(provider, upstream)), mid)
    rank = {p: i for i, p in enumerate(FIRST_PARTY + HOSTS)}
    gen = generated_offers(mdev, litellm, pinned)
    gen.sort(key=lambda g: (rank[g[0]], g[1]))
    skipped = []
    for provider, upstream, kind, name, folded in gen:
        if name is None:
            mid = pinned[(provider, upstream)]
        else:
            mid = by_key.get(key(name))
            if mid is None:
                mid = name
                by_key[key(name)] = mid
            entry = models.get(mid)
            if entry is not None and (entry["kind"] != kind or any(p == provider for p, _ in entry["offers"])):
                # The provider already serves this model under another id: its own model.
                mid = clean(provider, upstream)
                if mid in models:
                    skipped.append(f"{provider}/{upstream}")
                    continue
            if mid not in models:
                models[mid] = {"kind": kind, "offers": [], "aliases": set(), "arena": [], "aider": [], "curated": False}
            models[mid]["offers"].append((provider, upstream))
        models[mid]["aliases"].update(folded)
        if provider in FIRST_PARTY or provider == "openrouter":
            # Clients send the maker's own ids (`claude-sonnet-4-20250514`,
            # `mistral-large-latest`) and OpenRouter's vendor/model slugs.
            models[mid]["aliases"].add(upstream)
    # No alias may shadow a model id or stand for two models.
    owners = {}
    for mid, entry in models.items():
        for a in entry["aliases"]:
            owners.setdefault(a, set()).add(mid)
    for mid, entry in models.items():
        entry["aliases"] = sorted(a for a in entry["aliases"] if a not in models and owners[a] == {mid} and a != mid)
    return models, skipped


def normal_score_name(name):
    """A leaderboard's model name as a grouping key (`Llama-3.3-70B-Instruct` -> `llama-3-3-70b`)."""
    return key(clean("leaderboard", name.replace(" ", "-")))


def match_scores(models, table, field):
    """Leaderboard name for each generated model whose name one entry alone matches (an
    entry matched by hand to a curated model is not matched again)."""
    taken = {n for entry in models.values() for n in entry[field]}
    found = {}
    for name in table:
        if "(" in name or name in taken:
            continue  # an effort or setting variant: not one model's plain score
        found.setdefault(normal_score_name(name), []).append(name)
    out = {}
    for mid, entry in models.items():
        if entry["curated"] or any(a.endswith("-latest") for a in entry["aliases"]):
            continue  # a moving `-latest` name is not the model an old leaderboard entry scored
        names = found.get(key(mid), [])
        if len(names) == 1:
            out[mid] = names[0]
    return out


def arena_to_general(score):
    """LMArena text score -> the 0-100 quality scale (1000 -> 0, 1500 -> 100)."""
    return max(0.0, min(100.0, (score - 1000) / 5))


def calibrate(raw_scores):
    """Fits the Aider -> general-scale map on the models both sources score."""
    both = [(arena_to_general(s["general"][0]), s["coding"][0]) for s in raw_scores.values() if "general" in s and "coding" in s]
    g = [b[0] for b in both]
    a = [b[1] for b in both]
    r = statistics.correlation(g, a)
    return {"coding": {
        "models": len(both),
        "mean_general": round(statistics.mean(g), 3), "sd_general": round(statistics.pstdev(g), 3),
        "mean_aider": round(statistics.mean(a), 3), "sd_aider": round(statistics.pstdev(a), 3),
        "r": round(r, 3),
        "rule": "coding = mean_general + (aider - mean_aider) * sd_general / sd_aider; a missing score "
                "= mean_general + r * (the other score - mean_general)",
    }}


def clamp(v):
    return round(max(0.0, min(100.0, v)), 1)


SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b(?=$|-)")


def family(mid):
    """`gemma-3-12b` -> (`gemma-3-{}b`, 12.0): the id with its size taken out; None without one."""
    m = SIZE.search(mid)
    if not m:
        return None
    return mid[:m.start(1)] + "{}" + mid[m.end(1):], float(m.group(1))


def measured(scores, calibration):
    """A model's measured priors on the common 0-100 scale, with their sources."""
    c = calibration["coding"]
    quality, sources = {}, {}
    if "general" in scores:
        score, source = scores["general"]
        quality["general"] = clamp(arena_to_general(score))
        sources["quality.general"] = source
    if "coding" in scores:
        rate, source = scores["coding"]
        quality["coding"] = clamp(c["mean_general"] + (rate - c["mean_aider"]) * c["sd_general"] / c["sd_aider"])
        sources["quality.coding"] = f"{source}, calibrated to the common scale"
    return quality, sources


def sibling(mid, missing, known, measured_all):
    """The measured sibling (same id, another size) nearest in size that has both
    `missing` and `known` measured; ties go to the bigger one."""
    fam = family(mid)
    if not fam:
        return None
    found = []
    for other, (q, _) in measured_all.items():
        f = family(other)
        if other != mid and f and f[0] == fam[0] and missing in q and known in q:
            found.append((abs(f[1] - fam[1]), -f[1], other))
    return min(found)[2] if found else None


def priors(mid, measured_all, calibration):
    """The quality priors of one model on the common 0-100 scale, with their sources.
    A missing category is predicted from a measured sibling of the same family when
    there is one (the sibling's score moved by r times the difference of the known
    scores, so a smaller model does not outrank its measured bigger sibling), else
    from the model's own known score along the all-models line."""
    c = calibration["coding"]
    quality, sources = dict(measured_all[mid][0]), dict(measured_all[mid][1])
    if not quality:
        return quality, sources
    for missing, known in (("coding", "general"), ("general", "coding")):
        if missing in quality:
            continue
        sib = sibling(mid, missing, known, measured_all)
        if sib:
            sq = measured_all[sib][0]
            quality[missing] = clamp(sq[missing] + c["r"] * (quality[known] - sq[known]))
            sources[f"quality.{missing}"] = (
                f"predicted from sibling {sib} ({missing} {sq[missing]} + r {c['r']} x "
                f"({known} {quality[known]} - {sq[known]}))")
        else:
            quality[missing] = clamp(c["mean_general"] + c["r"] * (quality[known] - c["mean_general"]))
            sources[f"quality.{missing}"] = f"predicted from {known} (r = {c['r']} on {c['models']} models)"
    derived = round((quality["general"] + quality["coding"]) / 2, 1)
    quality["math"] = quality["reasoning"] = derived
    sources["quality.math"] = sources["quality.reasoning"] = "derived: mean of general and coding"
    return quality, sources


def main():
    mdev, litellm, arena, aider = load()
    assembled, skipped = assemble(mdev, litellm)
    arena_match = match_scores(assembled, arena, "arena")
    aider_match = match_scores(assembled, aider, "aider")
    models = {}
    raw_scores = {}
    for mid, a in sorted(assembled.items()):
        kind, aliases, offers = a["kind"], a["aliases"], a["offers"]
        arena_names = a["arena"] or ([arena_match[mid]] if mid in arena_match else [])
        aider_names = a["aider"] or ([aider_match[mid]] if mid in aider_match else [])
        entry = {"kind": kind, "offers": [], "sources": {}}
        if aliases:
            entry["aliases"] = aliases
        model_caps = None
        for provider, upstream in offers:
            o, caps = offer(provider, upstream, mdev, litellm)
            entry["offers"].append(o)
            model_caps = model_caps or caps
        # Local offers take capabilities and limits from a hosted offer of the same weights.
        for o in entry["offers"]:
            if o["tier"] == "local":
                hosted = next((h for h in entry["offers"] if h["tier"] != "local" and "limits" in h), None)
                if model_caps:
                    o["capabilities"] = model_caps
                    o["sources"]["capabilities"] = "same weights as the hosted offers"
                if hosted:
                    o["limits"] = hosted["limits"]
                    o["sources"]["limits"] = f"same weights as {hosted['provider']}/{hosted['upstream']}"
        if kind == "embedding":
            for o in entry["offers"]:
                o["capabilities"] = {"tools": False, "vision": False, "json_schema": False, "reasoning": False, "embeddings": True}
        scores = {}
        for name in arena_names:
            if name in arena:
                scores["general"] = (arena[name], f"{ARENA}: {name} = {arena[name]}")
                break
        for name in aider_names:
            if name in aider:
                scores["coding"] = (aider[name], f"{AIDER}: {name} pass_rate_2 = {aider[name]}")
                break
        raw_scores[mid] = scores
        models[mid] = entry
    # The scale is fitted on the hand-matched (curated) models only; auto-matched names
    # are placed on it, never move it.
    calibration = calibrate({mid: sc for mid, sc in raw_scores.items() if assembled[mid]["curated"]})
    measured_all = {mid: measured(scores, calibration) for mid, scores in raw_scores.items()}
    for mid in raw_scores:
        quality, sources = priors(mid, measured_all, calibration)
        if quality:
            models[mid]["quality"] = quality
            models[mid]["sources"].update(sources)
    body = json.dumps(models, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()[:8]
    catalog = {
        "version": f"{REFERENCE_DATE}+{digest}",
        "reference_date": REFERENCE_DATE,
        "notes": __doc__.strip(),
        "sources": {"models.dev": MDEV + " (MIT)", "litellm": LITELLM + " (MIT)", "lmarena": ARENA, "aider": AIDER + " (Apache-2.0)"},
        "calibration": calibration,
        "models": models,
    }
    with open(OUT, "w") as f:
        json.dump(catalog, f, indent=1, sort_keys=True)
        f.write("\n")
    offers = sum(len(m["offers"]) for m in models.values())
    unpriced = [f"{mid}@{o['provider']}" for mid, m in models.items() for o in m["offers"] if "price" not in o]
    print(f"wrote {OUT}: {len(models)} models, {offers} offers; unpriced offers: {', '.join(unpriced) or 'none'}")
    for page in COUNTED:
        text = open(page).read()
        updated = COUNTS.sub(f"{len(models)} models and {offers} offers", text)
        if updated != text:
            with open(page, "w") as f:
                f.write(updated)
            print(f"updated the counts in {os.path.relpath(page, ROOT)}")
    c = calibration["coding"]
    print(f"coding calibrated on {c['models']} models: general mean {c['mean_general']}, sd {c['sd_general']}; "
          f"Aider mean {c['mean_aider']}, sd {c['sd_aider']}; r = {c['r']}")


if __name__ == "__main__":
    main()
