//! The OpenAI-compatible endpoints end to end: what the client gets, and what was forwarded.

use serde_json::json;

use crate::common::*;

async fn setup() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    (mock, gw)
}

#[tokio::test]
async fn chat_is_forwarded_with_unknown_fields_and_provider_key() {
    let (mock, gw) = setup().await;
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 42, "logprobs": true, "user": "u-1", "metadata": {"a": "b"},
        "response_format": {"type": "json_object"},
        "x_vendor_extension": {"nested": [1, 2, 3]}
    });
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "req-abc-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-abc-123");
    assert_eq!(resp.headers()["x-bazaar-backend"], "mock/gpt-4o-mini");
    assert_eq!(resp.headers()["x-bazaar-route"], "gpt-4o-mini");
    let reply: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert!(reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello"));

    let got = &mock.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.body, body, "forwarded body must equal the client's");
    assert_eq!(
        got.headers["authorization"],
        "Bearer sk-upstream-secret-123"
    );
    assert_eq!(got.headers["x-request-id"], "req-abc-123");
}

#[tokio::test]
async fn request_id_is_generated_when_absent() {
    let (_mock, gw) = setup().await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
}

#[tokio::test]
async fn stream_hides_usage_chunk_unless_asked() {
    let (mock, gw) = setup().await;
    let resp = gw
        .post("/v1/chat/completions", json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-bazaar-backend"], "mock/gpt-4o-mini");
    let events = sse_events(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap())
        .inspect(|c| assert!(c["usage"].is_null(), "usage chunk leaked: {c}"))
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(text.starts_with("Hello!"));
    // The gateway asked for usage itself.
    assert_eq!(
        mock.received()[0].body["stream_options"]["include_usage"],
        true
    );

    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let events = sse_events(resp).await;
    let usage: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn streamed_tool_call_deltas_arrive_intact() {
    let (_mock, gw) = setup().await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "weather?"}],
                   "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}),
        )
        .await;
    let events = sse_events(resp).await;
    let mut args = String::new();
    let mut name = None;
    for e in &events[..events.len() - 1] {
        let c: serde_json::Value = serde_json::from_str(e).unwrap();
        if let Some(call) = c["choices"][0]["delta"]["tool_calls"].get(0) {
            if let Some(n) = call["function"]["name"].as_str() {
                name = Some(n.to_string());
            }
            args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    let parsed: serde_json::Value = serde_json::from_str(&args).unwrap();
    assert_eq!(parsed["location"], "Paris");
}

#[tokio::test]
async fn n_choices_and_images_pass_through() {
    let (mock, gw) = setup().await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "n": 3, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}),
        )
        .await;
    let reply: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(reply["choices"].as_array().unwrap().len(), 3);
    assert_eq!(
        mock.received()[0].body["messages"][0]["content"][1]["type"],
        "image_url"
    );
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let (_mock, gw) = setup().await;
    let resp = gw
        .post(
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert!(v["data"][0]["embedding"].is_array());
    let resp = gw
        .post(
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "a", "encoding_format": "base64"}),
        )
        .await;
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["data"][0]["embedding"].is_string());
}

#[tokio::test]
async fn legacy_completions_plain_and_streamed() {
    let (_mock, gw) = setup().await;
    let resp = gw
        .post(
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    let resp = gw
        .post(
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "stream": true}),
        )
        .await;
    let events = sse_events(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert!(events.len() > 3);
}

#[tokio::test]
async fn models_lists_what_config_serves() {
    let (_mock, gw) = setup().await;
    let resp = gw
        .client
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["bazaar"]["kind"] == "model")
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gpt-3.5-turbo-instruct",
            "gpt-4o-mini",
            "text-embedding-3-small"
        ]
    );
    assert_eq!(v["data"][0]["owned_by"], "mock");
}

#[tokio::test]
async fn health_and_readiness() {
    let (_mock, gw) = setup().await;
    assert_eq!(
        gw.client
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        gw.client
            .get(gw.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gw.state.set_ready(false);
    assert_eq!(
        gw.client
            .get(gw.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let mock = MockUpstream::with_spec(bazaar::demo::sim::SimSpec {
        tokens_per_sec: 20.0,
        reply: "word ".repeat(200),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let mut resp = gw
        .post("/v1/chat/completions", json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(resp);
    // The upstream stream (10 s long) is dropped as soon as the client goes away.
    tokio::time::timeout(std::time::Duration::from_secs(5), mock.wait_closed(1))
        .await
        .expect("upstream stream still open");
    // The gateway keeps serving after the client went away.
    let resp = gw
        .post("/v1/chat/completions", json!({"model": "gpt-4o-mini", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn shutdown_lets_an_inflight_stream_finish() {
    let mock = MockUpstream::with_spec(bazaar::demo::sim::SimSpec {
        tokens_per_sec: 50.0,
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&single_provider_config(&mock)).await;
    let resp = gw
        .post("/v1/chat/completions", json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let state = gw.state.clone();
    let shutdown = tokio::spawn(gw.shutdown());
    let events = sse_events(resp).await;
    assert_eq!(
        events.last().unwrap(),
        "[DONE]",
        "the stream in flight finished"
    );
    assert!(!state.is_ready(), "readiness turns off at once");
    shutdown.await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_exposition_after_scripted_calls() {
    let (mock, gw) = setup().await;
    gw.post(
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .bytes()
    .await
    .unwrap();
    mock.script([Step::Status(500, "{}".into())]);
    gw.post(
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .bytes()
    .await
    .unwrap();
    gw.post(
        "/v1/chat/completions",
        json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .bytes()
    .await
    .unwrap();
    let text = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Parse the exposition: `name{labels} value` lines.
    let sample = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())
            .flatten()
        })
    };
    assert_eq!(
        sample(
            "bazaar_request_duration_seconds_count",
            &[
                ("endpoint", "/v1/chat/completions"),
                ("status_class", "2xx")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            "bazaar_request_duration_seconds_count",
            &[
                ("endpoint", "/v1/chat/completions"),
                ("status_class", "5xx")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample("bazaar_errors_total", &[("error_type", "not_found_error")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            "bazaar_upstream_failures_total",
            &[
                ("provider", "mock"),
                ("model", "gpt-4o-mini"),
                ("error", "upstream_5xx")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            "bazaar_upstream_duration_seconds_count",
            &[
                ("provider", "mock"),
                ("model", "gpt-4o-mini"),
                ("tier", "frontier")
            ]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            "bazaar_tokens_total",
            &[("bucket", "output"), ("route", "gpt-4o-mini")]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        sample("bazaar_unpriced_calls_total", &[("provider", "mock")]).is_some(),
        "the mock model has no price"
    );
    assert_eq!(
        sample("bazaar_breaker_state", &[("provider", "mock")]),
        Some(0.0)
    );
    assert!(sample("bazaar_ledger_queue_depth", &[]).is_some());
    // No key material or client strings in labels.
    assert!(!text.contains(KEY) && !text.contains("nope"));
}
