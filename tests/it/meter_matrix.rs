//! Metering across the endpoints the golden matrix (`metering.rs`) does not walk:
//! `/v1/completions`, `/v1/embeddings` and `/v1/responses`, plain and streamed, and chat
//! streams with and without the client's `stream_options.include_usage`. Each cell's
//! ledger row (tokens, cost), `x-bazaar-cost-usd`, the client's `usage` must match a
//! price worked out here from the config; at the end `/v1/spend`'s totals and the
//! Prometheus token and cost counters must equal the sum of the rows.

use serde_json::{json, Value};

use crate::billing::wait_rows;
use crate::common::*;
use crate::metering::{call, openai_buckets, row_of, usd, BUCKETS};

/// Micro-dollars per million tokens: input, cached input, output, reasoning.
const PRICE: [u64; 4] = [2_000_000, 500_000, 8_000_000, 9_000_000];
/// The embedding model's input price.
const EMBED_PRICE: u64 = 130_000;
/// The key's markup (`markup_percent = 25`), in basis points.
const MARKUP_BP: u64 = 2_500;

/// TOML: a provider `id` of `preset` at `base`.
fn provider(id: &str, preset: &str, base: &str) -> String {
    format!("[providers.{id}]\npreset = \"{preset}\"\nbase_url = \"{base}\"\napi_key = \"sk\"\ncatalog = false\n")
}

/// TOML: model `id` served by `provider`, with each `(field, micro-dollars per Mtok)`.
fn model(id: &str, provider: &str, prices: &[(&str, u64)]) -> String {
    let mut toml =
        format!("[[models]]\nid = \"{id}\"\nprovider = \"{provider}\"\nupstream = \"{id}-up\"\n");
    for (field, micros) in prices {
        toml += &format!("{field} = \"{}\"\n", *micros as f64 / 1e6);
    }
    toml
}

/// The gateway: `providers` and `models` (TOML), the master key and the test key with
/// `markup_percent`.
fn gateway_toml(providers: &str, models: &str, markup_percent: u64) -> String {
    format!(
        "[server]\nmaster_key = \"{MASTER}\"\n{providers}{models}\
         [[keys]]\nname = \"app\"\nkey = \"{KEY}\"\nmarkup_percent = {markup_percent}\n"
    )
}

fn config(mock: &MockUpstream) -> String {
    let [input, cached, output, reasoning] = PRICE;
    let base = mock.base_url();
    gateway_toml(
        &(provider("oai", "openai", &base) + &provider("claude", "anthropic", &base)),
        &(model(
            "m-gpt",
            "oai",
            &[
                ("input_price", input),
                ("cached_input_price", cached),
                ("output_price", output),
                ("reasoning_price", reasoning),
            ],
        ) + &model("m-embed", "oai", &[("input_price", EMBED_PRICE)])
            + &model(
                "m-claude",
                "claude",
                &[
                    ("input_price", input),
                    ("cached_input_price", cached),
                    ("output_price", output),
                ],
            )),
        MARKUP_BP / 100,
    )
}

/// Σ tokens × price, rounded up to a nano-dollar, then the markup.
fn cost(buckets: [u64; 5], embed: bool) -> u64 {
    let per_mtok = if embed {
        [EMBED_PRICE, EMBED_PRICE, EMBED_PRICE, 0, 0]
    } else {
        [PRICE[0], PRICE[1], PRICE[0], PRICE[2], PRICE[3]]
    };
    let micro: u64 = (0..5).map(|i| buckets[i] * per_mtok[i]).sum();
    micro.div_ceil(1000) * (10_000 + MARKUP_BP) / 10_000
}

/// An OpenAI usage object: 1,300 prompt tokens of which 1,024 cached; 90 completion of
/// which 64 reasoning. Billed as [276, 1024, 0, 26, 64].
const USAGE: &str = r#"{"prompt_tokens":1300,"completion_tokens":90,"total_tokens":1390,"prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":64}}"#;
const USAGE_BUCKETS: [u64; 5] = [276, 1024, 0, 26, 64];

fn completion_reply() -> String {
    format!(
        r#"{{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-up","choices":[{{"index":0,"text":"Metered.","finish_reason":"stop","logprobs":null}}],"usage":{USAGE}}}"#
    )
}

fn completion_stream() -> String {
    format!(
        "data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"gpt-up\",\"choices\":[{{\"index\":0,\"text\":\"Metered.\",\"finish_reason\":null,\"logprobs\":null}}]}}\n\n\
         data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"gpt-up\",\"choices\":[{{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\",\"logprobs\":null}}]}}\n\n\
         data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"gpt-up\",\"choices\":[],\"usage\":{USAGE}}}\n\n\
         data: [DONE]\n\n"
    )
}

fn chat_stream() -> String {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"c-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-up\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    chunk(r#"{"role":"assistant","content":""}"#, "null")
        + &chunk(r#"{"content":"Metered."}"#, "null")
        + &chunk("{}", r#""stop""#)
        + &format!(
            "data: {{\"id\":\"c-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-up\",\"choices\":[],\"usage\":{USAGE}}}\n\n"
        )
        + "data: [DONE]\n\n"
}

fn embeddings_reply() -> String {
    r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]},{"object":"embedding","index":1,"embedding":[0.3,0.4]}],"model":"embed-up","usage":{"prompt_tokens":37,"total_tokens":37}}"#.into()
}

fn raw(body: String, stream: bool) -> Step {
    Step::Raw {
        status: 200,
        headers: vec![(
            "content-type".into(),
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            }
            .into(),
        )],
        body,
    }
}

struct Cell {
    name: String,
    path: &'static str,
    body: Value,
    step: Step,
    stream: bool,
    embed: bool,
    buckets: [u64; 5],
    /// The client sees a `usage` object (every reply; a stream that asked for it).
    client_usage: bool,
}

fn cells() -> Vec<Cell> {
    let chat_reply = format!(
        r#"{{"id":"c-1","object":"chat.completion","created":1,"model":"gpt-up","choices":[{{"index":0,"message":{{"role":"assistant","content":"Metered."}},"finish_reason":"stop"}}],"usage":{USAGE}}}"#
    );
    let mut cells = Vec::new();
    // Chat and completions: plain, then streamed with `include_usage` true, absent and
    // false; the client sees usage in a stream only when it asked for it.
    let endpoints = [
        (
            "chat",
            "/v1/chat/completions",
            "messages",
            chat_reply,
            chat_stream(),
        ),
        (
            "completions",
            "/v1/completions",
            "prompt",
            completion_reply(),
            completion_stream(),
        ),
    ];
    for (name, path, field, reply, stream_body) in endpoints {
        let prompt = if field == "messages" {
            json!([{"role": "user", "content": "meter me"}])
        } else {
            json!("meter me")
        };
        for include in [None, Some(Some(true)), Some(None), Some(Some(false))] {
            let stream = include.is_some();
            let mut body = json!({"model": "m-gpt", field: prompt, "stream": stream});
            if let Some(Some(include)) = include {
                body["stream_options"] = json!({"include_usage": include});
            }
            cells.push(Cell {
                name: format!(
                    "{name} {}",
                    match include {
                        None => "plain".to_string(),
                        Some(None) => "stream, no stream_options".to_string(),
                        Some(Some(b)) => format!("stream, include_usage {b}"),
                    }
                ),
                path,
                body,
                step: raw(
                    if stream {
                        stream_body.clone()
                    } else {
                        reply.clone()
                    },
                    stream,
                ),
                stream,
                embed: false,
                buckets: USAGE_BUCKETS,
                client_usage: include.is_none() || include == Some(Some(true)),
            });
        }
    }
    cells.push(Cell {
        name: "embeddings".into(),
        path: "/v1/embeddings",
        body: json!({"model": "m-embed", "input": ["meter", "me"]}),
        step: raw(embeddings_reply(), false),
        stream: false,
        embed: true,
        buckets: [37, 0, 0, 0, 0],
        client_usage: true,
    });
    for (stream, file) in [
        (false, "openai/responses_reply.json"),
        (true, "openai/responses_stream.sse"),
    ] {
        cells.push(Cell {
            name: format!("responses, stream {stream}"),
            path: "/v1/responses",
            body: json!({"model": "m-gpt", "input": "meter me", "stream": stream}),
            step: Step::fixture(200, file),
            stream,
            embed: false,
            buckets: [12, 0, 0, 7, 0],
            client_usage: true,
        });
    }
    cells
}

/// The five buckets of a client-visible usage object: OpenAI's chat/completions/
/// embeddings shape, or the Responses API's (`input_tokens`, `output_tokens`).
fn client_buckets(u: &Value) -> [u64; 5] {
    if u.get("input_tokens").is_none() {
        return openai_buckets(u);
    }
    openai_buckets(&json!({
        "prompt_tokens": u["input_tokens"],
        "prompt_tokens_details": {"cached_tokens": u["input_tokens_details"]["cached_tokens"]},
        "completion_tokens": u["output_tokens"],
        "completion_tokens_details": {"reasoning_tokens": u["output_tokens_details"]["reasoning_tokens"]},
    }))
}

/// The last `usage` object a stream carried: a chunk's, or a Responses event's
/// `response.usage`.
fn stream_usage(text: &str) -> Option<Value> {
    text.split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            [&v["usage"], &v["response"]["usage"]]
                .into_iter()
                .find(|u| u.is_object())
                .cloned()
        })
        .last()
}

/// A counter's value in a Prometheus exposition, summed over its series matching every
/// label in `labels`.
fn counter(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn meter_matrix_endpoints_streams_spend_and_counters_agree() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let cells = cells();
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        mock.script([cell.step.clone()]);
        let id = format!("matrix-{i}");
        let (header, resp) = call(&gw, cell.path, &id, &cell.body, &cell.name).await;
        let text = resp.text().await.unwrap();
        let usage = if cell.stream {
            stream_usage(&text)
        } else {
            serde_json::from_str::<Value>(&text).unwrap()["usage"]
                .as_object()
                .map(|u| Value::Object(u.clone()))
        };
        seen.push((header, usage));
        // A stream is billed from the backend's report: the backend is asked for it
        // whatever the client asked.
        if cell.stream && cell.path != "/v1/responses" {
            let sent = mock.received().last().unwrap().body.clone();
            if sent["stream_options"]["include_usage"] != true {
                wrong.push(format!(
                    "{}: upstream not asked for usage: {sent}",
                    cell.name
                ));
            }
        }
    }
    assert_eq!(wait_rows(&gw, cells.len() as i64).await, cells.len() as i64);
    let calls = gw.get_json("/v1/spend/calls?limit=1000", MASTER).await;
    let rows = calls["calls"].as_array().unwrap();

    let mut sum_buckets = [0u64; 5];
    let mut sum_cost = 0u64;
    for (i, (cell, (header, usage))) in cells.iter().zip(&seen).enumerate() {
        let mut check = |what: &str, ok: bool, detail: String| {
            if !ok {
                wrong.push(format!("{}: {what}: {detail}", cell.name));
            }
        };
        let expected = cost(cell.buckets, cell.embed);
        let Some(row) = rows
            .iter()
            .find(|r| r["request_id"] == format!("matrix-{i}").as_str())
        else {
            check("ledger row", false, "missing".into());
            continue;
        };
        let tokens = BUCKETS.map(|b| row["tokens"][b].as_u64().unwrap_or(0));
        let row_cost = row["cost_nanos"].as_u64().unwrap_or(0);
        for b in 0..5 {
            sum_buckets[b] += tokens[b];
        }
        sum_cost += row_cost;
        check(
            "ledger tokens",
            tokens == cell.buckets,
            format!("{tokens:?} != {:?}", cell.buckets),
        );
        check(
            "ledger cost",
            row_cost == expected,
            format!("{row_cost} != {expected}"),
        );
        check(
            "ledger estimated",
            row["estimated"] == false,
            row.to_string(),
        );
        if !cell.stream {
            check(
                "x-bazaar-cost-usd",
                header.as_deref() == Some(usd(expected).as_str()),
                format!("{header:?} != {}", usd(expected)),
            );
        }
        match usage {
            None => check("client usage", !cell.client_usage, "missing".into()),
            Some(u) if !cell.client_usage => {
                check("client usage", false, format!("not asked for: {u}"))
            }
            Some(u) => {
                let got = client_buckets(u);
                check(
                    "client usage tokens",
                    got == cell.buckets,
                    format!("{got:?} != {:?}", cell.buckets),
                );
                let body_cost = u["cost"].as_f64().map(|c| (c * 1e9).round() as u64);
                check(
                    "client usage.cost",
                    body_cost == Some(expected),
                    format!("{body_cost:?} != {expected}"),
                );
            }
        }
    }

    let want_cost: u64 = cells.iter().map(|c| cost(c.buckets, c.embed)).sum();
    let spend = gw.get_json("/v1/spend", MASTER).await;
    let totals = &spend["totals"];
    let mut check = |what: &str, ok: bool, detail: String| {
        if !ok {
            wrong.push(format!("totals: {what}: {detail}"));
        }
    };
    check(
        "ledger rows' cost",
        sum_cost == want_cost,
        format!("{sum_cost} != {want_cost}"),
    );
    check(
        "/v1/spend cost_nanos",
        totals["cost_nanos"] == want_cost,
        format!("{} != {want_cost}", totals["cost_nanos"]),
    );
    check(
        "/v1/spend requests",
        totals["requests"] == cells.len(),
        totals["requests"].to_string(),
    );
    let metrics = gw.get_text("/metrics", MASTER).await;
    for (b, name) in BUCKETS.iter().enumerate() {
        let label = format!("bucket=\"{name}\"");
        let got = counter(&metrics, "bazaar_tokens_total", &[&label]);
        check(
            &format!("bazaar_tokens_total {name}"),
            got == sum_buckets[b] as f64,
            format!("{got} != {}", sum_buckets[b]),
        );
    }
    let got = counter(&metrics, "bazaar_cost_usd_total", &[]);
    check(
        "bazaar_cost_usd_total",
        (got - want_cost as f64 / 1e9).abs() < 1e-9,
        format!("{got} != {}", want_cost as f64 / 1e9),
    );
    assert!(
        wrong.is_empty(),
        "{} disagreements:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Anthropic bills a cache write by its time to live: 1.25× the input price for 5
/// minutes, 2× for an hour (`usage.cache_creation.ephemeral_5m_input_tokens` /
/// `ephemeral_1h_input_tokens`; `cache_creation_input_tokens` is their sum). An hour's
/// writes are billed at the model's 1-hour price, twice the input price when unset.
#[tokio::test]
async fn anthropic_cache_writes_are_billed_by_their_time_to_live() {
    let mock = MockUpstream::start().await;
    let prices = [
        ("input_price", 3_000_000),
        ("cached_input_price", 300_000),
        ("cache_write_price", 3_750_000),
        ("output_price", 15_000_000),
    ];
    let gw = TestGateway::start(&gateway_toml(
        &provider("claude", "anthropic", &mock.base_url()),
        &model("m-claude", "claude", &prices),
        0,
    ))
    .await;
    mock.script([raw(
        r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-up","content":[{"type":"text","text":"Cached."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":2000},"cache_read_input_tokens":0,"output_tokens":20}}"#.into(),
        false,
    )]);
    let body = json!({"model": "m-claude", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "cache me"}]});
    let (header, _) = call(&gw, "/v1/messages", "cache-ttl", &body, "1h cache writes").await;
    // 10 × $3 + 1,000 × $3.75 + 2,000 × $6 (2 × input) + 20 × $15, per million.
    let want = (10 * 3_000_000 + 1_000 * 3_750_000 + 2_000 * 6_000_000 + 20 * 15_000_000u64) / 1000;
    assert_eq!(header.as_deref(), Some(usd(want).as_str()));
    assert_eq!(row_of(&gw, "cache-ttl").await["cost_nanos"], want);
    // The same usage in a stream, asked for as chat: the split comes in `message_start`.
    let start = r#"{"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"claude-up","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":2000},"cache_read_input_tokens":0,"output_tokens":1}}}"#;
    let sse = format!(
        "event: message_start\ndata: {start}\n\n\
         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Cached.\"}}}}\n\n\
         event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":20}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    );
    mock.script([raw(sse, true)]);
    let body = json!({"model": "m-claude", "stream": true,
                      "messages": [{"role": "user", "content": "cache me"}]});
    let (_, resp) = call(
        &gw,
        "/v1/chat/completions",
        "cache-ttl-stream",
        &body,
        "1h stream",
    )
    .await;
    let text = resp.text().await.unwrap();
    let row = row_of(&gw, "cache-ttl-stream").await;
    assert_eq!(row["cost_nanos"], want, "{row}\n{text}");
}

/// An upstream error after the backend reported usage: the call is billed what was
/// reported, the rest counted from the text sent, and the client sees the same figures.
#[tokio::test]
async fn an_upstream_error_after_usage_bills_what_was_reported() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let hel = tiktoken_rs::cl100k_base()
        .unwrap()
        .encode_ordinary("Hel")
        .len() as u64;
    let openai_error = chat_stream().replace(
        "data: [DONE]\n\n",
        "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
    );
    let cells = [
        (
            "openai chat stream, error after the usage chunk",
            "/v1/chat/completions",
            "m-gpt",
            raw(openai_error, true),
            USAGE_BUCKETS,
            vec![],
        ),
        (
            "anthropic messages stream, overloaded after message_start",
            "/v1/messages",
            "m-claude",
            Step::fixture(200, "anthropic/stream_overloaded.sse"),
            [25, 0, 0, hel, 0],
            vec!["output", "reasoning"],
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (name, path, model, step, buckets, estimated)) in cells.into_iter().enumerate() {
        mock.script([step]);
        let id = format!("error-after-usage-{i}");
        let body = json!({
            "model": model,
            "max_tokens": 64,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "meter me"}],
        });
        let (_, resp) = call(&gw, path, &id, &body, name).await;
        let text = resp.text().await.unwrap();
        let row = row_of(&gw, &id).await;
        let tokens = BUCKETS.map(|b| row["tokens"][b].as_u64().unwrap_or(0));
        let want = cost(buckets, false);
        if tokens != buckets
            || row["cost_nanos"] != want
            || row["estimated_buckets"] != json!(estimated)
        {
            wrong.push(format!(
                "{name}: row {row}, want {buckets:?} {want} {estimated:?}\n{text}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Gemini's `batchEmbedContents` reports no usage: every bucket is estimated, and the
/// client's `usage`, the cost header and the ledger row show the same estimate.
#[tokio::test]
async fn gemini_embeddings_show_the_client_what_the_ledger_bills() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&gateway_toml(
        &provider("gem", "gemini", &mock.gemini_base_url()),
        &model("m-gem-embed", "gem", &[("input_price", EMBED_PRICE)]),
        25,
    ))
    .await;
    let body = json!({"model": "m-gem-embed", "input": ["meter this call", "and this one"]});
    let (header, resp) = call(
        &gw,
        "/v1/embeddings",
        "gem-embed",
        &body,
        "gemini embeddings",
    )
    .await;
    let usage = resp.json::<Value>().await.unwrap()["usage"].clone();
    let row = row_of(&gw, "gem-embed").await;
    let tokens = BUCKETS.map(|b| row["tokens"][b].as_u64().unwrap_or(0));
    let nanos = row["cost_nanos"].as_u64().unwrap();
    assert!(tokens[0] > 0, "{row}");
    assert_eq!(row["estimated_buckets"], json!(BUCKETS), "{row}");
    assert_eq!(nanos, cost(tokens, true), "{row}");
    assert_eq!(header.as_deref(), Some(usd(nanos).as_str()));
    assert_eq!(
        openai_buckets(&usage),
        tokens,
        "client usage {usage}, row {row}"
    );
    assert_eq!(
        usage["cost"].as_f64().map(|c| (c * 1e9).round() as u64),
        Some(nanos),
        "{usage}"
    );
}
