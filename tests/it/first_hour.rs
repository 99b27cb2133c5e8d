//! Issue 14, the first hour of a new user: what a newcomer meets first — the CLI help,
//! the dashboard's icon, `/v1/models`, `/metrics` at start, `/v1/messages` ids — stays right.

use std::process::Command;

use crate::common::{single_provider_config, MockUpstream, TestGateway};

#[test]
fn issue_14_serve_help_describes_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let line = help
        .lines()
        .find(|l| l.contains("--config"))
        .unwrap_or_else(|| panic!("no --config in:\n{help}"));
    // clap prints the description on the flag's line; a bare flag has nothing after it.
    let description = line.split("<CONFIG>").nth(1).unwrap_or("").trim();
    assert!(
        description.contains("config file"),
        "--config has no description:\n{help}"
    );
}

#[tokio::test]
async fn issue_14_favicon_is_served() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    for path in ["/favicon.ico", "/dashboard/favicon.svg"] {
        let resp = gw.client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "image/svg+xml",
            "{path}"
        );
        assert!(resp.text().await.unwrap().starts_with("<svg"), "{path}");
    }
    let page = gw.client.get(gw.url("/dashboard")).send().await.unwrap();
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(r#"rel="icon" type="image/svg+xml" href="/dashboard/favicon.svg""#));
}

#[tokio::test]
async fn issue_14_models_lists_routes_marked_as_routes() {
    let mock = MockUpstream::start().await;
    let toml = single_provider_config(&mock)
        + r#"
        [routes.support]
        models = ["gpt-4o-mini"]
        policy = "cheapest"
        "#;
    let gw = TestGateway::start(&toml).await;
    let resp = gw
        .client
        .get(gw.url("/v1/models"))
        .bearer_auth(crate::common::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    let entry = |id: &str| {
        data.iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {v}"))
    };
    for (route, policy) in [
        ("auto", "balanced"),
        ("cheap", "cheapest"),
        ("fast", "fastest"),
        ("support", "cheapest"),
    ] {
        let m = entry(route);
        assert_eq!(m["bazaar"]["kind"], "route", "{m}");
        assert_eq!(m["bazaar"]["policy"], policy, "{m}");
        assert_eq!(m["owned_by"], "bazaar");
    }
    assert_eq!(entry("gpt-4o-mini")["bazaar"]["kind"], "model");
    // Every entry keeps the fields OpenAI's Model object requires.
    for m in data {
        assert_eq!(m["object"], "model", "{m}");
        assert!(m["id"].is_string() && m["owned_by"].is_string() && m["created"].is_i64());
    }
}

async fn scrape(gw: &TestGateway) -> String {
    let resp = gw.client.get(gw.url("/metrics")).send().await.unwrap();
    resp.text().await.unwrap()
}

/// The metric families the docs list (docs/operations.md's table), so docs and code agree.
fn documented_families() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut families = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `bazaar_")) {
        let first_cell = line.split('|').nth(1).unwrap();
        families.extend(
            first_cell
                .split('`')
                .filter(|s| s.starts_with("bazaar_"))
                .map(str::to_string),
        );
    }
    families
}

/// A scrape as (family, labels, value) samples; histograms by their `_count` series.
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let family = name
                .strip_suffix("_count")
                .filter(|_| !l.contains("_bucket"))
                .unwrap_or(name);
            Some((family.to_string(), labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn issue_14_every_documented_metric_family_is_exported_at_start() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let text = scrape(&gw).await;
    let families = documented_families();
    assert!(families.len() >= 17, "{families:?}");
    let scraped = samples(&text);
    for family in &families {
        assert!(
            scraped.iter().any(|(f, _, _)| f == family),
            "{family} is not exported at start:\n{text}"
        );
    }
    // Counters are there at zero before anything happened.
    let zero = |family: &str, labels: &[&str]| {
        scraped.iter().any(|(f, l, v)| {
            f == family && labels.iter().all(|label| l.contains(label)) && *v == 0.0
        })
    };
    assert!(zero(
        "bazaar_errors_total",
        &[r#"error_type="rate_limit_error""#]
    ));
    assert!(zero("bazaar_fallbacks_total", &[r#"route="auto""#]));
    let backend = [r#"provider="mock""#, r#"model="gpt-4o-mini""#];
    assert!(zero(
        "bazaar_upstream_failures_total",
        &[backend[0], backend[1], r#"error="timeout""#]
    ));
    assert!(zero(
        "bazaar_cost_usd_total",
        &[backend[0], backend[1], r#"route="auto""#]
    ));
    assert!(zero(
        "bazaar_tokens_total",
        &[
            backend[0],
            backend[1],
            r#"route="gpt-4o-mini""#,
            r#"bucket="output""#
        ]
    ));
    assert!(zero("bazaar_breaker_state", &backend));
}

#[tokio::test]
async fn issue_14_metrics_label_model_with_the_public_id() {
    let mock = MockUpstream::start().await;
    let toml = format!(
        r#"
        [server]
        master_key = "{}"
        [providers.mock]
        base_url = "{}"
        api_key = "sk-upstream"
        tier = "frontier"
        [[models]]
        id = "gpt-4o-mini"
        provider = "mock"
        upstream = "gpt-4o-mini-2024-07-18"
        [[keys]]
        name = "app"
        key = "{}"
        "#,
        crate::common::MASTER,
        mock.base_url(),
        crate::common::KEY
    );
    let gw = TestGateway::start(&toml).await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.received()[0].body["model"], "gpt-4o-mini-2024-07-18");
    let text = scrape(&gw).await;
    assert!(
        !text.contains("gpt-4o-mini-2024-07-18"),
        "an upstream id is used as a label:\n{text}"
    );
    for family in [
        "bazaar_breaker_state",
        "bazaar_upstream_in_flight",
        "bazaar_upstream_duration_seconds_count",
        "bazaar_cost_usd_total",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(family) && l.contains(r#"model="gpt-4o-mini""#)),
            "{family} has no series for the public id:\n{text}"
        );
    }
}

#[tokio::test]
async fn issue_14_demo_serves_embeddings_and_its_traffic_shows_fallbacks_and_errors() {
    use bazaar::demo::run::{self, DEMO_KEY, DEMO_MASTER_KEY};
    let stop = tokio_util::sync::CancellationToken::new();
    let dir = std::env::temp_dir().join(format!("bazaar-it-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = format!("sqlite://{}", dir.join("demo.sqlite").display());
    let toml = run::start_backends("127.0.0.1:0", &ledger, stop.clone())
        .await
        .unwrap();
    let config = bazaar::config::Config::from_toml(&toml, &|_: &str| None).unwrap();
    let gw = TestGateway::start_config(config).await;

    let resp = gw
        .client
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(DEMO_KEY)
        .json(&serde_json::json!({"model": "text-embedding-3-small", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The whole mix (trial key, overloaded host, embeddings) however slow the machine.
    let gap = std::time::Duration::from_millis(25);
    let sent = run::traffic_count(gw.url(""), 120, gap, stop.clone()).await;
    assert_eq!(sent, 120);
    let rows = crate::billing::wait_rows(&gw, sent as i64 + 1).await;
    assert_eq!(rows, sent as i64 + 1, "one ledger row per call");
    let url = gw.url("/v1/spend?group_by=provider");
    let resp = gw.client.get(url).bearer_auth(DEMO_MASTER_KEY).send();
    let spend: serde_json::Value = resp.await.unwrap().json().await.unwrap();
    let fallbacks: i64 = spend["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["fallbacks"].as_i64().unwrap_or(0))
        .sum();
    assert!(fallbacks > 0, "no fallback in the demo's traffic: {spend}");
    assert!(
        spend["totals"]["errors"].as_i64().unwrap() > 0,
        "no error in the demo's traffic: {spend}"
    );
    stop.cancel();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn issue_14_catalog_priors_share_one_scale() {
    let catalog = bazaar::catalog::builtin::builtin();
    let q = |id: &str| catalog.models[id].quality;
    for (id, entry) in &catalog.models {
        let p = entry.quality;
        // A model with any prior has all four, on 0-100.
        if p.general.is_some() || p.coding.is_some() {
            for v in [p.general, p.coding, p.math, p.reasoning] {
                let v = v.unwrap_or_else(|| panic!("{id}: a category is missing: {p:?}"));
                assert!((0.0..=100.0).contains(&v), "{id}: {p:?}");
            }
            let coding_source = &entry.sources["quality.coding"];
            assert!(
                coding_source.contains("calibrated") || coding_source.starts_with("predicted"),
                "{id}: {coding_source}"
            );
        }
    }
    // Aider pass rates are no longer read as if they were on the general scale:
    // gpt-4o-mini's 3.6 % is a weak coder on the common scale, not 3.6 against others' 60s.
    let mini = q("gpt-4o-mini").coding.unwrap();
    assert!(mini > 50.0 && mini < q("gpt-4o").coding.unwrap(), "{mini}");
    assert!(q("gemma-3-27b").coding.unwrap() > 50.0);
    // A model without a coding score is predicted from its measured sibling, not from the
    // all-models line: gemma-3-12b must not out-code gemma-3-27b, which Aider measured.
    assert!(
        q("gemma-3-12b").coding.unwrap() < q("gemma-3-27b").coding.unwrap(),
        "{:?} vs {:?}",
        q("gemma-3-12b"),
        q("gemma-3-27b")
    );
    let source = &catalog.models["gemma-3-12b"].sources["quality.coding"];
    assert!(
        source.starts_with("predicted from sibling gemma-3-27b"),
        "{source}"
    );
    assert!(q("o3").coding.unwrap() > q("gpt-4.1").coding.unwrap());
}

#[tokio::test]
async fn issue_14_three_tiers_coding_route_serves_plain_and_code_requests() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/three-tiers.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let env = |name: &str| Some(format!("value-of-{name}"));
    let config = bazaar::config::Config::from_toml(&text, &env).unwrap();
    let master = env("BAZAAR_MASTER_KEY").unwrap();
    let gw = TestGateway::start_config(config).await;
    for content in [
        "Hello",
        "Write a python function that merges two sorted lists",
    ] {
        let body = serde_json::json!({"model": "coding", "messages": [{"role": "user", "content": content}]});
        let resp = gw
            .client
            .post(gw.url("/v1/route/explain"))
            .bearer_auth(&master)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{content}");
        let plan: serde_json::Value = resp.json().await.unwrap();
        assert!(plan["chosen"].is_string(), "{content}: {plan}");
    }
}

#[test]
fn issue_14_listed_preset_models_are_exactly_what_is_served() {
    let env = |name: &str| Some(format!("value-of-{name}"));
    let config = bazaar::config::Config::from_toml(
        r#"
        [providers.openai]
        api_key = "env:OPENAI_API_KEY"
        models = ["gpt-4o-mini", "gpt-4o"]
        [providers.ollama]
        models = ["qwen3:8b"]
        [providers.groq]
        api_key = "env:GROQ_API_KEY"
        "#,
        &env,
    )
    .unwrap();
    let served_by = |provider: &str| -> Vec<&str> {
        config
            .models
            .iter()
            .filter(|(_, targets)| {
                targets
                    .iter()
                    .any(|t| config.providers[t.provider].id == provider)
            })
            .map(|(id, _)| id.as_str())
            .collect()
    };
    assert_eq!(served_by("openai"), ["gpt-4o", "gpt-4o-mini"]);
    assert_eq!(served_by("ollama"), ["qwen3-8b"]);
    // A preset that lists nothing still serves its catalog models.
    assert!(served_by("groq").len() > 2, "{:?}", served_by("groq"));
}

#[tokio::test]
async fn issue_14_no_provider_says_what_to_do_never_an_empty_reason_list() {
    let toml = format!(
        "[[keys]]\nname = \"app\"\nkey = \"{}\"\n",
        crate::common::KEY
    );
    let gw = TestGateway::start(&toml).await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let body: serde_json::Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains(": ."), "{message}");
    assert!(message.contains("no provider is configured"), "{message}");
    assert!(message.contains("bazaar demo"), "{message}");
}

#[test]
fn issue_14_serve_without_provider_keys_says_so_at_start() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("bazaar-it-nokeys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // The notice comes before the gateway key line; both are printed before listening.
    let lines: Vec<String> = std::io::BufReader::new(stdout)
        .lines()
        .take(2)
        .map(Result::unwrap)
        .collect();
    child.kill().ok();
    child.wait().ok();
    std::fs::remove_dir_all(&dir).ok();
    let notice = lines
        .iter()
        .find(|l| l.starts_with("No provider is configured"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(
        notice.contains("OPENAI_API_KEY") && notice.contains("bazaar demo"),
        "{notice}"
    );
}

#[test]
fn issue_14_keys_commands_run_without_provider_secrets() {
    let dir = std::env::temp_dir().join(format!("bazaar-it-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bazaar.toml");
    std::fs::write(
        &config,
        r#"
[ledger]
url = "sqlite://keys.sqlite"

[providers.openai]
api_key = "env:OPENAI_API_KEY"
models = ["gpt-4o-mini"]

[providers.anthropic]
api_key = "env:ANTHROPIC_API_KEY"
headers = { "x-extra" = "env:EXTRA_HEADER" }
models = ["claude-haiku-4-5"]
"#,
    )
    .unwrap();
    let bazaar = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_clear()
            .output()
            .unwrap()
    };
    let created = bazaar(&["keys", "create", "--name", "ci"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let listed = bazaar(&["keys", "list"]);
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(out.contains("\"name\":\"ci\""), "{out}");
    let shown = bazaar(&["catalog", "show", "gpt-4o-mini"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    // `check` and `serve` still need the secrets: they are what would call the providers.
    let checked = bazaar(&["check"]);
    let report = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "{report}");
    assert!(report.contains("OPENAI_API_KEY is not set"), "{report}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn issue_14_check_warns_about_a_route_with_no_candidate() {
    let dir = std::env::temp_dir().join(format!("bazaar-it-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bazaar.toml");
    let write = |tier: &str| {
        let text = format!(
            "[providers.local]\nbase_url = \"http://127.0.0.1:9/v1\"\ntier = \"local\"\n\
             models = [\"qwen3-8b\"]\n\n[routes.picky]\ntiers = [\"{tier}\"]\n"
        );
        std::fs::write(&config, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(["check", "--config"])
            .arg(&config)
            .env_clear()
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let picky = write("frontier");
    assert!(
        picky.contains("warning: route `picky` cannot serve a plain request")
            && picky.contains("tier local not allowed by route"),
        "{picky}"
    );
    let fine = write("local");
    assert!(!fine.contains("warning"), "{fine}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The worked example in docs/policies.md is what the binary prints: its table is read
/// from the doc and compared with `/v1/route/explain`, and each policy's pick is checked.
#[tokio::test]
async fn issue_14_policies_worked_example_is_what_explain_prints() {
    let gw = TestGateway::start(
        r#"
[router.predictor]
enabled = false

[providers.openai]
api_key = "sk-worked-example"
models = ["gpt-4o"]

[providers.groq]
api_key = "gsk-worked-example"
models = ["llama-3.3-70b"]

[providers.ollama]
models = ["qwen3:8b"]

[[keys]]
name = "worked"
key = "bzr-worked-example"
"#,
    )
    .await;
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policies.md"),
    )
    .unwrap();
    // | openai/gpt-4o | $0.005065 | 3.8 s | 62.6 |
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| {
            l.starts_with("| openai/") || l.starts_with("| groq/") || l.starts_with("| ollama/")
        })
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows.len(),
        3,
        "the worked example's table is gone: {rows:?}"
    );
    // A 1,000-token code prompt: 3,984 characters are 996 tokens, plus 4 for the message.
    let code = "def merge(a, b):\n    return sorted(a + b)\n";
    let mut prompt = String::from("Fix this python function:\n");
    while prompt.len() < 3984 {
        prompt.push_str(code);
    }
    prompt.truncate(3984);
    let explain = |policy: &str, floor: Option<f64>| {
        let mut bazaar = serde_json::json!({"policy": policy});
        if let Some(f) = floor {
            bazaar["quality_floor"] = f.into();
        }
        let body = serde_json::json!({
            "model": "auto",
            "messages": [{"role": "user", "content": prompt}],
            "bazaar": bazaar,
        });
        gw.client
            .post(gw.url("/v1/route/explain"))
            .bearer_auth("bzr-worked-example")
            .json(&body)
            .send()
    };
    let plan: serde_json::Value = explain("balanced", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["estimated_prompt_tokens"], 1000, "{plan}");
    assert_eq!(plan["task"], "code", "{plan}");
    for row in &rows {
        let provider = row[0].split('/').next().unwrap();
        let c = plan["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["provider"] == provider)
            .unwrap_or_else(|| panic!("no {provider} candidate: {plan}"));
        let cost: f64 = c["expected_cost_usd"].as_str().unwrap().parse().unwrap();
        let latency_s = c["expected_latency_ms"].as_f64().unwrap() / 1000.0;
        let quality = c["quality"].as_f64().unwrap();
        let printed = [
            format!(
                "${}",
                if cost == 0.0 {
                    "0".into()
                } else {
                    format!("{cost:.6}")
                }
            ),
            format!("{latency_s:.1} s"),
            format!("{quality:.1}"),
        ];
        assert_eq!(
            row[1..],
            printed,
            "{provider}: the doc says {row:?}, explain prints {c}"
        );
    }
    for (policy, floor, chosen) in [
        ("cheapest", None, "ollama/"),
        ("fastest", None, "groq/"),
        ("quality", None, "openai/"),
        ("balanced", None, "groq/"),
        ("cheapest-above-quality", Some(60.0), "groq/"),
    ] {
        let plan: serde_json::Value = explain(policy, floor).await.unwrap().json().await.unwrap();
        let got = plan["chosen"].as_str().unwrap_or_default();
        assert!(
            got.starts_with(chosen),
            "{policy}: the doc says {chosen}…, explain chose {got}"
        );
    }
    // The explain sample: the doc's curl body, and every figure of the reply it shows.
    let body = doc
        .split("-d '")
        .nth(1)
        .and_then(|rest| rest.split("'\n").next())
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    let sample = doc
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let sample: serde_json::Value = serde_json::from_str(sample).unwrap();
    let resp = gw
        .client
        .post(gw.url("/v1/route/explain"))
        .bearer_auth("bzr-worked-example");
    let got: serde_json::Value = resp.json(&body).send().await.unwrap().json().await.unwrap();
    for (key, value) in sample.as_object().unwrap() {
        assert_eq!(
            &got[key], value,
            "{key}: the doc shows {value}, explain prints {got}"
        );
    }
}
