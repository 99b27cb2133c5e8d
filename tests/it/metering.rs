//! The golden metering matrix: each wire format's usage (OpenAI, Azure, Anthropic,
//! Gemini), plain and streamed, complete, cut at several points and without usage,
//! through `/v1/chat/completions` and `/v1/messages`. Every case checks the cost header,
//! the body and the ledger row against a computation written out here: the buckets the
//! fixture reports before the end (or the cut), the others counted from the text sent
//! (tiktoken's cl100k_base) or, for the prompt, at 4 characters a token plus 4; each
//! bucket × its price, rounded up to a nano-dollar, then the key's markup.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::billing::wait_rows;
use crate::common::*;

const PROMPT: &str = "Explain how a gateway meters a call whose stream was cut.";
/// The key's markup (`markup_percent = 10`), in basis points.
const MARKUP_BP: u128 = 1_000;
pub const BUCKETS: [&str; 5] = [
    "input",
    "cached_input",
    "cache_write",
    "output",
    "reasoning",
];

/// Prices in micro-dollars per million tokens; `None` falls back to input (cache) or
/// output (reasoning).
#[derive(Debug, Clone, Copy)]
struct Prices {
    input: u64,
    cached: Option<u64>,
    write: Option<u64>,
    output: u64,
    reasoning: Option<u64>,
}

const OPENAI: Prices = Prices {
    input: 2_500_000,
    cached: Some(1_250_000),
    write: None,
    output: 10_000_000,
    reasoning: Some(12_000_000),
};
const CLAUDE: Prices = Prices {
    input: 3_000_000,
    cached: Some(300_000),
    write: Some(3_750_000),
    output: 15_000_000,
    reasoning: None,
};
const GEMINI: Prices = Prices {
    input: 300_000,
    cached: Some(75_000),
    write: None,
    output: 2_500_000,
    reasoning: Some(3_500_000),
};

fn config(mock: &MockUpstream) -> String {
    format!(
        r#"
        [server]
        master_key = "{MASTER}"
        [router.breaker]
        threshold = 1000
        [providers.oai]
        preset = "openai"
        base_url = "{base}"
        api_key = "sk-o"
        catalog = false
        [providers.az]
        preset = "azure"
        base_url = "{root}"
        api_key = "sk-az"
        catalog = false
        [providers.claude]
        preset = "anthropic"
        base_url = "{base}"
        api_key = "sk-a"
        catalog = false
        [providers.gem]
        preset = "gemini"
        base_url = "{gemini}"
        api_key = "sk-g"
        catalog = false
        {models}
        [[keys]]
        name = "app"
        key = "{KEY}"
        markup_percent = 10
        "#,
        base = mock.base_url(),
        root = mock.root_url(),
        gemini = mock.gemini_base_url(),
        models = models(),
    )
}

/// The `[[models]]` tables, priced from the constants the expectations use.
fn models() -> String {
    let price = |name: &str, micros: Option<u64>| {
        micros
            .map(|m| format!("{name} = \"{}.{:06}\"\n", m / 1_000_000, m % 1_000_000))
            .unwrap_or_default()
    };
    [
        ("m-openai", "oai", "gpt-up", OPENAI),
        ("m-azure", "az", "gpt-az", OPENAI),
        ("m-claude", "claude", "claude-up", CLAUDE),
        ("m-gemini", "gem", "gemini-up", GEMINI),
        ("m-fallback", "oai", "gpt-up", OPENAI),
        ("m-fallback", "claude", "claude-up", CLAUDE),
    ]
    .into_iter()
    .map(|(id, provider, upstream, p)| {
        format!("[[models]]\nid = \"{id}\"\nprovider = \"{provider}\"\nupstream = \"{upstream}\"\n")
            + &price("input_price", Some(p.input))
            + &price("cached_input_price", p.cached)
            + &price("cache_write_price", p.write)
            + &price("output_price", Some(p.output))
            + &price("reasoning_price", p.reasoning)
    })
    .collect()
}

/// Tokens in `text` by tiktoken's cl100k_base, loaded once for the whole matrix.
fn tokens(text: &str) -> u64 {
    static BPE: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().unwrap())
        .encode_ordinary(text)
        .len() as u64
}

/// What a case must bill: each bucket as the backend reported it (`None`: never
/// reported), and the text sent, counted for the output and reasoning it did not report.
#[derive(Debug, Clone)]
struct Expect {
    reported: [Option<u64>; 5],
    output: Vec<&'static str>,
    reasoning: &'static str,
}

impl Expect {
    /// Every bucket reported.
    fn reported(buckets: [u64; 5]) -> Expect {
        Expect {
            reported: buckets.map(Some),
            output: Vec::new(),
            reasoning: "",
        }
    }

    /// The prompt side reported, the completion side counted from the text.
    fn prompt_reported(prompt: [u64; 3], output: &'static str, reasoning: &'static str) -> Expect {
        Expect {
            reported: [
                Some(prompt[0]),
                Some(prompt[1]),
                Some(prompt[2]),
                None,
                None,
            ],
            output: vec![output],
            reasoning,
        }
    }

    /// Nothing reported: everything counted.
    fn nothing_reported(output: Vec<&'static str>, reasoning: &'static str) -> Expect {
        Expect {
            reported: [None; 5],
            output,
            reasoning,
        }
    }

    /// The buckets to bill, and which of them are estimated.
    fn buckets(&self) -> ([u64; 5], Vec<&'static str>) {
        let prompt_estimate = (PROMPT.chars().count() as u64).div_ceil(4) + 4;
        // Each piece of output (one per choice) is counted on its own and summed.
        let estimates = [
            prompt_estimate,
            0,
            0,
            self.output.iter().map(|t| tokens(t)).sum(),
            tokens(self.reasoning),
        ];
        let mut billed = [0; 5];
        let mut estimated = Vec::new();
        for i in 0..5 {
            billed[i] = match self.reported[i] {
                Some(n) => n,
                None => {
                    estimated.push(BUCKETS[i]);
                    estimates[i]
                }
            };
        }
        (billed, estimated)
    }
}

/// Gemini's prompt side and thoughts reported, the output counted from the text.
fn gemini_thoughts_reported(output: &'static str) -> Expect {
    Expect {
        reported: [Some(200), Some(800), Some(0), None, Some(888)],
        output: vec![output],
        reasoning: "",
    }
}

/// Σ tokens × price per million, rounded up to a nano-dollar, then the markup.
fn cost(buckets: [u64; 5], p: Prices) -> u64 {
    let per_mtok = [
        p.input,
        p.cached.unwrap_or(p.input),
        p.write.unwrap_or(p.input),
        p.output,
        p.reasoning.unwrap_or(p.output),
    ];
    let micro_tokens: u128 = (0..5)
        .map(|i| u128::from(buckets[i]) * u128::from(per_mtok[i]))
        .sum();
    (micro_tokens.div_ceil(1000) * (10_000 + MARKUP_BP) / 10_000) as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Chat,
    Messages,
}

struct Case {
    name: String,
    front: Front,
    model: &'static str,
    prices: Prices,
    stream: bool,
    /// Extra request fields (`n`).
    extra: Value,
    step: Step,
    expect: Expect,
    /// The stream completed (not cut).
    complete: bool,
}

/// What was observed for one case.
struct Seen {
    header: Option<String>,
    /// The `usage` object the client got: a reply's; a chat stream's usage chunk; a
    /// Messages stream's `message_delta`.
    usage: Option<Value>,
}

fn request(case: &Case) -> (String, Value) {
    let mut body = match case.front {
        Front::Chat => json!({
            "model": case.model,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": case.stream,
        }),
        Front::Messages => json!({
            "model": case.model,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": case.stream,
        }),
    };
    if case.stream && case.front == Front::Chat {
        body["stream_options"] = json!({"include_usage": true});
    }
    if let Value::Object(extra) = &case.extra {
        for (k, v) in extra {
            body[k] = v.clone();
        }
    }
    let path = match case.front {
        Front::Chat => "/v1/chat/completions",
        Front::Messages => "/v1/messages",
    };
    (path.to_string(), body)
}

/// The five buckets of an OpenAI `usage` object.
pub fn openai_buckets(u: &Value) -> [u64; 5] {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let cached = n(&u["prompt_tokens_details"]["cached_tokens"]);
    let write = n(&u["cache_creation_input_tokens"]);
    let reasoning = n(&u["completion_tokens_details"]["reasoning_tokens"]);
    [
        n(&u["prompt_tokens"]) - cached - write,
        cached,
        write,
        n(&u["completion_tokens"]) - reasoning,
        reasoning,
    ]
}

/// Posts `body` to `path` with the test key as request `id`, expecting a 200 (`name`
/// says which case failed): the `x-bazaar-cost-usd` header and the response.
pub async fn call(
    gw: &TestGateway,
    path: &str,
    id: &str,
    body: &Value,
    name: &str,
) -> (Option<String>, reqwest::Response) {
    let resp = gw
        .client
        .post(gw.url(path))
        .bearer_auth(KEY)
        .header("x-request-id", id)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{name}");
    let header = resp
        .headers()
        .get("x-bazaar-cost-usd")
        .map(|v| v.to_str().unwrap().to_string());
    (header, resp)
}

async fn run(gw: &TestGateway, mock: &MockUpstream, i: usize, case: &Case) -> Seen {
    mock.script([case.step.clone()]);
    let (path, body) = request(case);
    let (header, resp) = call(gw, &path, &format!("metering-{i}"), &body, &case.name).await;
    if !case.stream {
        let body: Value = resp.json().await.unwrap();
        return Seen {
            header,
            usage: body.get("usage").cloned(),
        };
    }
    // Each SSE frame's `data:` line (Anthropic frames start with an `event:` line).
    let text = resp.text().await.unwrap();
    let data: Vec<Value> = text
        .split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let usage = match case.front {
        Front::Chat => data
            .iter()
            .rev()
            .find(|v| v["usage"].is_object())
            .map(|v| v["usage"].clone()),
        // As Anthropic's SDK sums it: `message_start`'s usage, updated by `message_delta`'s.
        Front::Messages => data
            .iter()
            .rev()
            .find(|v| v["type"] == "message_delta")
            .map(|delta| {
                let mut usage = data
                    .iter()
                    .find(|v| v["type"] == "message_start")
                    .map(|v| v["message"]["usage"].clone())
                    .unwrap_or_else(|| json!({}));
                if let (Some(into), Some(from)) =
                    (usage.as_object_mut(), delta["usage"].as_object())
                {
                    into.extend(from.clone());
                }
                usage
            }),
    };
    Seen { header, usage }
}

/// The five buckets of the `usage` object a front end wrote: OpenAI's, or Anthropic's
/// (whose output includes reasoning, so the two are compared summed).
fn body_buckets(front: Front, usage: &Value) -> [u64; 5] {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    match front {
        Front::Chat => openai_buckets(usage),
        Front::Messages => [
            n(&usage["input_tokens"]),
            n(&usage["cache_read_input_tokens"]),
            n(&usage["cache_creation_input_tokens"]),
            n(&usage["output_tokens"]),
            0,
        ],
    }
}

pub fn usd(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// Every wire format's cases, on both front ends.
fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    let fx = |file: &'static str| Step::fixture(200, file);
    let cut = |file: &'static str, events: usize| Step::FixtureCut { file, events };

    // OpenAI: 1,200 prompt tokens of which 1,024 cached; 310 completion of which 200 reasoning.
    let openai_full = || Expect::reported([176, 1024, 0, 110, 200]);
    let openai_reasoning = "The user asks about metering; answer briefly.";
    let openai_text = "Metering counts every token twice: once as reported, once as sent.";
    // Azure: 900 prompt tokens of which 768 cached, 42 completion.
    let azure_full = || Expect::reported([132, 768, 0, 42, 0]);
    // Anthropic: 25 input, 400 cache reads, 100 cache writes; 97 output (thinking included).
    let claude_full = || Expect::reported([25, 400, 100, 97, 0]);
    let claude_thinking =
        "Metering at the edges: what was reported stays as reported. The rest is counted.";
    // Gemini: 1,000 prompt tokens of which 800 cached; 12 candidates, 888 thoughts.
    let gemini_full = || Expect::reported([200, 800, 0, 12, 888]);
    let gemini_thoughts = "Counting what Gemini said so far. Thoughts are reported as they go.";
    let gemini_text = "Gemini reports its counts with every chunk.";

    for front in [Front::Chat, Front::Messages] {
        let f = match front {
            Front::Chat => "chat",
            Front::Messages => "messages",
        };
        let mut add = |name: &str,
                       model: &'static str,
                       prices: Prices,
                       stream: bool,
                       step: Step,
                       expect: Expect,
                       complete: bool| {
            cases.push(Case {
                name: format!("{f} {name}"),
                front,
                model,
                prices,
                stream,
                extra: Value::Null,
                step,
                expect,
                complete,
            });
        };
        let (o, a, c, g) = ("m-openai", "m-azure", "m-claude", "m-gemini");
        add(
            "openai plain",
            o,
            OPENAI,
            false,
            fx("metering/openai_reply.json"),
            openai_full(),
            true,
        );
        add(
            "openai plain, no usage",
            o,
            OPENAI,
            false,
            fx("metering/openai_reply_no_usage.json"),
            Expect::nothing_reported(vec![openai_text], openai_reasoning),
            true,
        );
        add(
            "openai stream",
            o,
            OPENAI,
            true,
            fx("metering/openai_stream.sse"),
            openai_full(),
            true,
        );
        add(
            "openai stream, no usage",
            o,
            OPENAI,
            true,
            fx("metering/openai_stream_no_usage.sse"),
            Expect::nothing_reported(vec![openai_text], openai_reasoning),
            true,
        );
        add(
            "openai stream cut after the role chunk",
            o,
            OPENAI,
            true,
            cut("metering/openai_stream.sse", 1),
            Expect::nothing_reported(vec![""], ""),
            false,
        );
        add(
            "openai stream cut mid-text",
            o,
            OPENAI,
            true,
            cut("metering/openai_stream.sse", 3),
            Expect::nothing_reported(vec!["Metering counts"], openai_reasoning),
            false,
        );
        add(
            "openai stream cut before its usage chunk",
            o,
            OPENAI,
            true,
            cut("metering/openai_stream.sse", 6),
            Expect::nothing_reported(vec![openai_text], openai_reasoning),
            false,
        );
        add(
            "openai stream cut after its usage chunk",
            o,
            OPENAI,
            true,
            cut("metering/openai_stream.sse", 7),
            openai_full(),
            false,
        );
        add(
            "azure plain",
            a,
            OPENAI,
            false,
            fx("metering/azure_reply.json"),
            azure_full(),
            true,
        );
        add(
            "azure stream",
            a,
            OPENAI,
            true,
            fx("metering/azure_stream.sse"),
            azure_full(),
            true,
        );
        add(
            "anthropic plain",
            c,
            CLAUDE,
            false,
            fx("metering/anthropic_reply.json"),
            claude_full(),
            true,
        );
        add(
            "anthropic stream",
            c,
            CLAUDE,
            true,
            fx("metering/anthropic_stream.sse"),
            claude_full(),
            true,
        );
        add(
            "anthropic stream cut after message_start",
            c,
            CLAUDE,
            true,
            cut("metering/anthropic_stream.sse", 1),
            Expect::prompt_reported([25, 400, 100], "", ""),
            false,
        );
        add(
            "anthropic stream cut mid-thinking",
            c,
            CLAUDE,
            true,
            cut("metering/anthropic_stream.sse", 3),
            Expect::prompt_reported(
                [25, 400, 100],
                "",
                "Metering at the edges: what was reported stays as reported.",
            ),
            false,
        );
        add(
            "anthropic stream cut mid-text",
            c,
            CLAUDE,
            true,
            cut("metering/anthropic_stream.sse", 8),
            Expect::prompt_reported(
                [25, 400, 100],
                "Reported buckets are billed as reported;",
                claude_thinking,
            ),
            false,
        );
        add(
            "anthropic stream cut after message_delta",
            c,
            CLAUDE,
            true,
            cut("metering/anthropic_stream.sse", 11),
            claude_full(),
            false,
        );
        add(
            "gemini plain",
            g,
            GEMINI,
            false,
            fx("metering/gemini_reply.json"),
            gemini_full(),
            true,
        );
        add(
            "gemini plain, no usage",
            g,
            GEMINI,
            false,
            fx("metering/gemini_reply_no_usage.json"),
            Expect::nothing_reported(vec![gemini_text], gemini_thoughts),
            true,
        );
        add(
            "gemini stream",
            g,
            GEMINI,
            true,
            fx("metering/gemini_stream.sse"),
            gemini_full(),
            true,
        );
        add(
            "gemini stream, no usage",
            g,
            GEMINI,
            true,
            fx("gemini/stream_no_usage.sse"),
            Expect::nothing_reported(vec!["Hello there."], ""),
            true,
        );
        add(
            "gemini stream cut after its first thought",
            g,
            GEMINI,
            true,
            cut("metering/gemini_stream.sse", 1),
            Expect::prompt_reported([200, 800, 0], "", "Counting what Gemini said so far."),
            false,
        );
        add(
            "gemini stream cut after thoughts were counted",
            g,
            GEMINI,
            true,
            cut("metering/gemini_stream.sse", 2),
            gemini_thoughts_reported(""),
            false,
        );
        add(
            "gemini stream cut mid-text",
            g,
            GEMINI,
            true,
            cut("metering/gemini_stream.sse", 3),
            gemini_thoughts_reported("Gemini reports"),
            false,
        );
        add(
            "gemini stream cut after candidates were counted",
            g,
            GEMINI,
            true,
            cut("metering/gemini_stream.sse", 4),
            Expect::reported([200, 800, 0, 9, 888]),
            false,
        );
    }

    // OpenAI-only shapes: several choices, tool-call arguments.
    let chat =
        |name: &str, stream: bool, extra: Value, step: Step, expect: Expect, complete| Case {
            name: format!("chat {name}"),
            front: Front::Chat,
            model: "m-openai",
            prices: OPENAI,
            stream,
            extra,
            step,
            expect,
            complete,
        };
    cases.push(chat(
        "n=2 plain",
        false,
        json!({"n": 2}),
        fx("metering/openai_reply_n2.json"),
        Expect::reported([40, 0, 0, 14, 0]),
        true,
    ));
    // Each choice's text, counted on its own: every choice once.
    let two_choices = || {
        Expect::nothing_reported(
            vec![
                "First answer: meters count.",
                " Second answer: ledgers remember.",
            ],
            "",
        )
    };
    cases.push(chat(
        "n=2 plain, no usage: every choice counted once",
        false,
        json!({"n": 2}),
        fx("metering/openai_reply_n2_no_usage.json"),
        two_choices(),
        true,
    ));
    cases.push(chat(
        "n=2 stream, no usage: every choice counted once",
        true,
        json!({"n": 2}),
        fx("metering/openai_stream_n2_no_usage.sse"),
        two_choices(),
        true,
    ));
    cases.push(chat(
        "tool call stream, no usage: arguments counted",
        true,
        Value::Null,
        fx("metering/openai_stream_tools_no_usage.sse"),
        Expect::nothing_reported(
            vec![r#"{"location": "Paris, France", "unit": "celsius"}"#],
            "",
        ),
        true,
    ));
    cases.push(chat(
        "tool call stream cut mid-arguments",
        true,
        Value::Null,
        cut("metering/openai_stream_tools_no_usage.sse", 3),
        Expect::nothing_reported(vec![r#"{"location": "Paris, France", "unit":"#], ""),
        false,
    ));
    cases
}

#[tokio::test]
async fn golden_matrix_header_body_and_ledger_agree_with_the_rule() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let cases = matrix();
    let mut seen = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        seen.push(run(&gw, &mock, i, case).await);
    }
    assert_eq!(wait_rows(&gw, cases.len() as i64).await, cases.len() as i64);
    let calls = gw.get_json("/v1/spend/calls?limit=1000", MASTER).await;
    let rows = calls["calls"].as_array().unwrap();

    let mut wrong = Vec::new();
    let mut table = String::from("case | expected nanos | ledger nanos | ratio | estimated\n");
    for (i, (case, seen)) in cases.iter().zip(&seen).enumerate() {
        let id = format!("metering-{i}");
        let row = rows
            .iter()
            .find(|r| r["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{}: no ledger row", case.name));
        let (buckets, estimated) = case.expect.buckets();
        let expected = cost(buckets, case.prices);
        let ledger_cost = row["cost_nanos"].as_u64().unwrap_or(0);
        let ledger_buckets = BUCKETS.map(|b| row["tokens"][b].as_u64().unwrap_or(0));
        let ledger_estimated: Vec<&str> = row["estimated_buckets"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        table.push_str(&format!(
            "{} | {expected} | {ledger_cost} | {:.2} | {}\n",
            case.name,
            ledger_cost as f64 / expected.max(1) as f64,
            ledger_estimated.join(" ")
        ));
        let mut check = |what: &str, ok: bool, detail: String| {
            if !ok {
                wrong.push(format!("{}: {what}: {detail}", case.name));
            }
        };
        check(
            "ledger tokens",
            ledger_buckets == buckets,
            format!("{ledger_buckets:?} != {buckets:?}"),
        );
        check(
            "ledger cost",
            ledger_cost == expected,
            format!("{ledger_cost} != {expected}"),
        );
        check(
            "estimated buckets",
            ledger_estimated == estimated,
            format!("{ledger_estimated:?} != {estimated:?}"),
        );
        check(
            "ledger estimated flag",
            row["estimated"] == !estimated.is_empty(),
            row["estimated"].to_string(),
        );
        if !case.stream {
            check(
                "x-bazaar-cost-usd",
                seen.header.as_deref() == Some(usd(expected).as_str()),
                format!("{:?} != {}", seen.header, usd(expected)),
            );
        }
        // The client gets the ledger's figures in the body: every reply; a chat stream
        // that asked for usage, whatever the backend reported; a Messages stream in its
        // `message_delta`, whenever one was written.
        let must_have_usage = !case.stream || case.front == Front::Chat || case.complete;
        match &seen.usage {
            None => check("body usage", !must_have_usage, "missing".into()),
            Some(usage) => {
                let mut want = buckets;
                if case.front == Front::Messages {
                    want = [want[0], want[1], want[2], want[3] + want[4], 0];
                }
                let got = body_buckets(case.front, usage);
                check(
                    "body usage tokens",
                    got == want,
                    format!("{got:?} != {want:?}"),
                );
                let body_cost = usage["cost"].as_f64().map(|c| (c * 1e9).round() as u64);
                check(
                    "body usage.cost",
                    body_cost == Some(expected),
                    format!("{body_cost:?} != {expected}"),
                );
                check(
                    "body usage.estimated",
                    usage["estimated"].as_bool().unwrap_or(false) != estimated.is_empty(),
                    usage["estimated"].to_string(),
                );
            }
        }
    }
    eprintln!("{table}");
    assert!(
        wrong.is_empty(),
        "{} of {} cases disagree:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// The ledger row of request `id`, once written.
pub async fn row_of(gw: &TestGateway, id: &str) -> Value {
    once_written(gw, id, || async {
        let calls = gw.get_json("/v1/spend/calls?limit=1000", MASTER).await;
        calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["request_id"] == id)
            .cloned()
    })
    .await
}

/// A first backend that fails before its first byte is not charged: the call's one row
/// names the backend that answered, at its price, and counts the failed attempt in
/// `fallbacks`; no other row is written.
#[tokio::test]
async fn a_fallback_charges_only_the_backend_that_answered() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let (claude, _) = Expect::reported([25, 400, 100, 97, 0]).buckets();
    let expected = cost(claude, CLAUDE);
    for (i, stream) in [false, true].into_iter().enumerate() {
        let file = if stream {
            "metering/anthropic_stream.sse"
        } else {
            "metering/anthropic_reply.json"
        };
        mock.script([
            Step::Status(500, r#"{"error":{"message":"down"}}"#.into()),
            Step::fixture(200, file),
        ]);
        let id = format!("fallback-{i}");
        let resp = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("x-request-id", &id)
            .json(&json!({
                "model": "m-fallback",
                "stream": stream,
                "messages": [{"role": "user", "content": PROMPT}],
                "provider": {"order": ["oai", "claude"]},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-bazaar-backend"], "claude/claude-up");
        if !stream {
            assert_eq!(resp.headers()["x-bazaar-cost-usd"], usd(expected).as_str());
        }
        resp.bytes().await.unwrap();
        let row = row_of(&gw, &id).await;
        assert_eq!(row["provider"], "claude", "{row}");
        assert_eq!(row["fallbacks"], 1, "{row}");
        assert_eq!(row["status"], 200, "{row}");
        assert_eq!(row["cost_nanos"], expected, "{row}");
    }
    let received: Vec<String> = mock.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        received.len(),
        4,
        "each call tried both backends: {received:?}"
    );
    assert_eq!(
        wait_rows(&gw, 2).await,
        2,
        "one row per call, the failed attempts on it"
    );
}

/// A client that goes away mid-stream is billed for what the backend had reported and
/// generated until the cancel reached it: the prompt side as reported in
/// `message_start` (Anthropic) or the chunks' counts (Gemini), the text it was sent
/// counted for the rest.
#[tokio::test]
async fn a_client_disconnect_bills_what_was_reported_until_the_cancel() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let cases = [
        (
            "/v1/messages",
            "m-claude",
            "metering/anthropic_stream.sse",
            8,
            "billed as reported;",
            CLAUDE,
            Expect::prompt_reported(
                [25, 400, 100],
                "Reported buckets are billed as reported;",
                "Metering at the edges: what was reported stays as reported. The rest is counted.",
            ),
        ),
        (
            "/v1/chat/completions",
            "m-gemini",
            "metering/gemini_stream.sse",
            3,
            "Gemini reports",
            GEMINI,
            gemini_thoughts_reported("Gemini reports"),
        ),
    ];
    for (i, (path, model, file, events, last_text, prices, expect)) in cases.into_iter().enumerate()
    {
        mock.script([Step::FixtureThenHang { file, events }]);
        let id = format!("gone-{i}");
        let mut resp = gw
            .client
            .post(gw.url(path))
            .bearer_auth(KEY)
            .header("x-request-id", &id)
            .json(&json!({
                "model": model,
                "max_tokens": 1024,
                "stream": true,
                "messages": [{"role": "user", "content": PROMPT}],
            }))
            .send()
            .await
            .unwrap();
        let mut got = String::new();
        while !got.contains(last_text) {
            let chunk = resp.chunk().await.unwrap().unwrap();
            got.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(resp);
        // The gateway drops the upstream call when the client goes away.
        mock.wait_closed(i + 1).await;
        let row = row_of(&gw, &id).await;
        let (buckets, estimated) = expect.buckets();
        assert_eq!(row["status"], 499, "{row}");
        assert_eq!(row["error_type"], "client_closed", "{row}");
        assert_eq!(
            BUCKETS.map(|b| row["tokens"][b].as_u64().unwrap()),
            buckets,
            "{row}"
        );
        assert_eq!(row["estimated_buckets"], json!(estimated), "{row}");
        assert_eq!(row["cost_nanos"], cost(buckets, prices), "{row}");
    }
}
