//! The fast paths, reviewed as an attacker and a broken upstream would use them: chat
//! and embeddings calls answered from the request context (not through axum's router)
//! refuse what every routed endpoint refuses, with the same status and error shape; a
//! reply's usage read by its one-pass scan is billed as serde reads it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// The two endpoints `server::app` answers itself, and a routed endpoint whose handler
/// reads its body with the same extractor (`Incoming`): what it answers is what the
/// router would have answered.
const FAST: [&str; 2] = ["/v1/chat/completions", "/v1/embeddings"];
const ROUTED: &str = "/v1/completions";

/// A gateway with a small body limit, so an oversized body is cheap to send.
async fn gateway(mock: &MockUpstream) -> TestGateway {
    let toml = single_provider_config(mock).replace(
        "drain_timeout = \"5s\"",
        "drain_timeout = \"5s\"\nmax_body_bytes = 4096\nbody_read_timeout = \"1s\"",
    );
    TestGateway::start(&toml).await
}

/// What a client can tell of a response: its status, the `error` object (its message
/// with the endpoint's path written as `PATH`), and whether it has a request id.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    error: Option<Value>,
    request_id: bool,
    content_type: Option<String>,
}

async fn seen(response: reqwest::Response, path: &str) -> Seen {
    let status = response.status().as_u16();
    let request_id = response.headers().contains_key("x-request-id");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let error = serde_json::from_str::<Value>(&text).ok().map(|mut v| {
        let message = v["error"]["message"].as_str().unwrap_or_default();
        let message = message
            .replace(path, "PATH")
            .replace(&path.to_uppercase(), "PATH");
        v["error"]["message"] = json!(message);
        v["error"].take()
    });
    Seen {
        status,
        error,
        request_id,
        content_type,
    }
}

/// One request a client may send, built for any endpoint path.
type Send = Box<dyn Fn(&TestGateway, &str) -> reqwest::RequestBuilder>;

fn cases() -> Vec<(&'static str, Send)> {
    // Read by each endpoint alike: a model nothing serves.
    let body = || {
        json!({"model": "nope", "input": "x", "prompt": "x", "messages": [{"role": "user", "content": "x"}]})
            .to_string()
    };
    let with = move |gw: &TestGateway, path: &str, key: &str, content_type: &str| {
        gw.client
            .post(gw.url(path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body())
    };
    let post = move |gw: &TestGateway, path: &str| with(gw, path, KEY, "application/json");
    let mut cases: Vec<(&'static str, Send)> = Vec::new();
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"] {
        let name: &'static str = Box::leak(format!("{method} with a key").into_boxed_str());
        cases.push((
            name,
            Box::new(move |gw, path| {
                gw.client
                    .request(Method::from_bytes(method.as_bytes()).unwrap(), gw.url(path))
                    .bearer_auth(KEY)
            }),
        ));
    }
    cases.push((
        "GET without a key",
        Box::new(|gw, path| gw.client.get(gw.url(path))),
    ));
    cases.push((
        "no key",
        Box::new(move |gw, path| {
            gw.client
                .post(gw.url(path))
                .header("content-type", "application/json")
                .body(body())
        }),
    ));
    cases.push((
        "a wrong key",
        Box::new(move |gw, path| with(gw, path, "bzr-not-a-key", "application/json")),
    ));
    cases.push((
        "a trailing slash",
        Box::new(move |gw, path| post(gw, &format!("{path}/"))),
    ));
    cases.push((
        "a double slash",
        Box::new(move |gw, path| post(gw, &format!("/{path}"))),
    ));
    cases.push((
        "an upper-case path",
        Box::new(move |gw, path| post(gw, &path.to_uppercase())),
    ));
    cases.push((
        "a query string",
        Box::new(move |gw, path| post(gw, &format!("{path}?api-version=1&x=%ff"))),
    ));
    cases.push((
        "text/plain",
        Box::new(move |gw, path| with(gw, path, KEY, "text/plain")),
    ));
    cases.push((
        "no content type",
        Box::new(move |gw, path| gw.client.post(gw.url(path)).bearer_auth(KEY).body(body())),
    ));
    cases.push((
        "gzip",
        Box::new(move |gw, path| post(gw, path).header("content-encoding", "gzip")),
    ));
    cases.push((
        "a declared length over the limit",
        Box::new(move |gw, path| post(gw, path).body("x".repeat(5000))),
    ));
    cases.push((
        "a chunked body over the limit",
        Box::new(move |gw, path| {
            let chunks = (0..10).map(|_| Ok::<_, std::io::Error>("y".repeat(1000)));
            post(gw, path).body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
        }),
    ));
    cases.push((
        "an empty body",
        Box::new(move |gw, path| post(gw, path).body("")),
    ));
    cases.push((
        "invalid UTF-8",
        Box::new(move |gw, path| post(gw, path).body(b"{\"model\":\"\xff\"}".to_vec())),
    ));
    cases.push((
        "not JSON",
        Box::new(move |gw, path| post(gw, path).body("{\"model\":")),
    ));
    cases.push((
        "nested past the limit",
        Box::new(move |gw, path| post(gw, path).body(format!("{{\"x\":{}", "[".repeat(200)))),
    ));
    cases.push(("an unknown model", Box::new(move |gw, path| post(gw, path))));
    cases
}

/// Every request the router would refuse on a routed endpoint is refused the same way
/// on the two endpoints answered without it, over HTTP/1.1 and HTTP/2 (prior
/// knowledge): same status, same error type, code, param and message (but for the
/// path), a request id, a JSON body.
#[tokio::test]
async fn the_fast_paths_refuse_what_the_router_refuses_alike() {
    let mock = MockUpstream::start().await;
    let mut gw = gateway(&mock).await;
    let mut differ = Vec::new();
    for http2 in [false, true] {
        if http2 {
            gw.client = reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap();
        }
        for (name, send) in cases() {
            let routed = seen(send(&gw, ROUTED).send().await.unwrap(), ROUTED).await;
            assert!(routed.request_id, "{name}: {routed:?}");
            assert!(routed.status >= 400, "{name}: {routed:?}");
            if name != "HEAD with a key" {
                assert!(routed.error.is_some(), "{name}: {routed:?}");
            }
            for path in FAST {
                let fast = seen(send(&gw, path).send().await.unwrap(), path).await;
                // The one difference allowed: an unknown model is named by its
                // endpoint's own message.
                let same = if name == "an unknown model" {
                    fast.status == routed.status
                        && fast.error.as_ref().map(|e| (&e["type"], &e["code"]))
                            == routed.error.as_ref().map(|e| (&e["type"], &e["code"]))
                } else {
                    fast == routed
                };
                if !same {
                    differ.push(format!(
                        "{name} on {path} (HTTP/2 {http2}): {fast:?}\n  routed: {routed:?}"
                    ));
                }
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(mock.received().is_empty(), "no call reached the upstream");
}

/// A method other than POST on a call endpoint is refused as on every route: 405 with
/// an `Allow` header naming POST, in OpenAI's shape.
#[tokio::test]
async fn a_wrong_method_on_a_call_endpoint_is_a_405() {
    let mock = MockUpstream::start().await;
    let gw = gateway(&mock).await;
    for path in FAST.into_iter().chain([ROUTED, "/v1/responses"]) {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let response = gw
                .client
                .request(method.clone(), gw.url(path))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.headers().get("allow").map(|v| v.to_str().unwrap()),
                Some("POST"),
                "{method} {path}"
            );
            let e = expect_error(response, 405).await;
            assert_eq!(e["code"], "method_not_allowed", "{method} {path}: {e}");
            assert_eq!(e["type"], "invalid_request_error", "{method} {path}: {e}");
        }
    }
}

/// A query string does not change what a call endpoint answers, and a request id the
/// client gave comes back on every answer, served or refused.
#[tokio::test]
async fn a_query_string_and_a_given_request_id_pass_through_the_fast_paths() {
    let mock = MockUpstream::start().await;
    let gw = gateway(&mock).await;
    let bodies = [
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        json!({"model": "text-embedding-3-small", "input": "hi"}),
    ];
    for (path, body) in FAST.into_iter().zip(bodies) {
        for (suffix, status) in [("", 200), ("?api-version=2024-10-21", 200)] {
            let response = gw
                .client
                .post(gw.url(&format!("{path}{suffix}")))
                .bearer_auth(KEY)
                .header("x-request-id", "client-given-1")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{path}{suffix}");
            assert_eq!(response.headers()["x-request-id"], "client-given-1");
            let v: Value = response.json().await.unwrap();
            assert!(v.get("error").is_none(), "{path}{suffix}: {v}");
        }
        let refused = gw
            .client
            .post(gw.url(path))
            .header("x-request-id", "client-given-2")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.headers()["x-request-id"], "client-given-2");
        expect_error(refused, 401).await;
    }
}

/// Requests answered by the fast paths are counted under their endpoint in the request
/// metrics, and their refusals in the error counter, as routed ones are.
#[tokio::test]
async fn the_fast_paths_are_counted_under_their_endpoints() {
    let mock = MockUpstream::start().await;
    let gw = gateway(&mock).await;
    for path in FAST {
        let response = gw.client.post(gw.url(path)).send().await.unwrap();
        expect_error(response, 401).await;
    }
    let text = gw.get_text("/metrics", MASTER).await;
    for path in FAST {
        let series = format!(
            "bazaar_request_duration_seconds_count{{endpoint=\"{path}\",status_class=\"4xx\"}} 1"
        );
        assert!(text.contains(&series), "{series} not in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("bazaar_errors_total{") && l.contains("authentication")),
        "{text}"
    );
}

/// A body that stalls part way is refused in time with a 400 on both fast paths, as on
/// a routed endpoint; a body cut by the client's close gets no answer but leaves the
/// gateway serving.
#[tokio::test]
async fn a_stalled_body_is_refused_in_time_on_every_call_endpoint() {
    let mock = MockUpstream::start().await;
    let gw = gateway(&mock).await;
    for path in FAST.into_iter().chain([ROUTED]) {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\":"
        );
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&reply).contains("}}") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(read.is_ok(), "{path}: no answer in 5 s");
        assert!(reply.starts_with("HTTP/1.1 400"), "{path}: {reply}");
        assert!(reply.contains("body_read_timeout"), "{path}: {reply}");

        // Cut: half a body, then the connection closes.
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        drop(tcp);
    }
    let ok = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(ok.status(), 200);
}

mod usage {
    //! A reply's usage read by the one-pass scan (`read_reply_usage`) against the same
    //! reply read by serde (`parse_usage`): the same usage, the same failure.

    use bazaar::config::presets::Quirks;
    use bazaar::providers::openai::{parse_usage, read_reply_usage};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn usage_member() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            r#""prompt_tokens""#,
            r#""completion_tokens""#,
            r#""total_tokens""#,
            r#""prompt_tokens_details""#,
            r#""completion_tokens_details""#,
            r#""prompt\u005ftokens""#,
            r#""cost""#,
            r#""x""#,
        ]);
        let value = prop::sample::select(vec![
            "5",
            "0",
            "-3",
            "2.5",
            "1e400",
            "18446744073709551615",
            "18446744073709551616",
            "null",
            r#""9""#,
            r#"{"cached_tokens":2}"#,
            r#"{"reasoning_tokens":1e400}"#,
            r#"{"reasoning_tokens":3,"reasoning_tokens":4}"#,
            "[1,2]",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        ]);
        (key, value).prop_map(|(k, v)| format!("{k}:{v}"))
    }

    fn usage() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::collection::vec(usage_member(), 0..5)
                .prop_map(|m| format!("{{{}}}", m.join(","))),
            1 => prop::sample::select(vec!["null", "[3,4,7]", "7", "\"u\"", "{}"])
                .prop_map(str::to_string),
        ]
    }

    /// A reply: its top-level members in any order, `usage` and `error` possibly given
    /// twice or escaped, other members with non-ASCII text, lone surrogates, deep values.
    fn reply() -> impl Strategy<Value = String> {
        let member = prop_oneof![
            4 => usage().prop_map(|u| format!("\"usage\":{u}")),
            1 => usage().prop_map(|u| format!("\"\\u0075sage\":{u}")),
            1 => Just(r#""error":{"message":"boom","code":"x"}"#.to_string()),
            1 => Just(r#""error":null"#.to_string()),
            2 => Just(r#""model":"m""#.to_string()),
            1 => Just(r#""model":7"#.to_string()),
            2 => Just("\"choices\":[{\"message\":{\"content\":\"h\u{e9}\u{1F600} \\ud83d\"}}]".to_string()),
            1 => Just(format!("\"deep\":{}{}", "[".repeat(140), "]".repeat(140))),
            1 => Just(r#""n":1e400"#.to_string()),
        ];
        prop::collection::vec(member, 0..5).prop_map(|m| format!("{{{}}}", m.join(",")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn a_replys_usage_is_read_as_serde_reads_it(text in reply(), reasoning_apart in any::<bool>()) {
            let quirks = Quirks { reasoning_outside_completion: reasoning_apart, ..Quirks::default() };
            let body = Bytes::from(text.clone());
            let fast = read_reply_usage("p", &body, &quirks).map(|(usage, _)| usage);
            let serde = parse_usage("p", &body, &quirks);
            match (&fast, &serde) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "{}", text),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string(), "{}", text),
                _ => prop_assert!(false, "{}: {:?} against {:?}", text, fast, serde),
            }
        }
    }
}

/// Idle upstream connections across a reload that moves a provider to another address:
/// a call after the reload reaches the new address, whether the provider's connection
/// to the old one was idle at the reload or still carrying a call (whose connection,
/// once free, goes back to the old provider's pool, never to the new one's).
#[tokio::test]
async fn a_reload_moving_a_provider_leaves_its_old_connections_behind() {
    let old = MockUpstream::start().await;
    let new = MockUpstream::start().await;
    let gw = gateway(&old).await;
    let chat = || json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(gw.post("/v1/chat/completions", chat()).await.status(), 200);
    // A call still on the old provider's connection when the reload lands.
    old.script([Step::Delay(Duration::from_millis(300))]);
    let slow = {
        let (client, url) = (gw.client.clone(), gw.url("/v1/chat/completions"));
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(KEY)
                .json(&chat())
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    old.wait_received(2).await;
    let toml = single_provider_config(&new).replace(
        "drain_timeout = \"5s\"",
        "drain_timeout = \"5s\"\nmax_body_bytes = 4096\nbody_read_timeout = \"1s\"",
    );
    let mut config = bazaar::config::Config::from_toml(&toml, &|_| None).unwrap();
    config.rebase_paths(&gw.dir);
    assert!(gw.state.reload(Ok(config)));
    assert_eq!(slow.await.unwrap(), 200);
    for _ in 0..3 {
        assert_eq!(gw.post("/v1/chat/completions", chat()).await.status(), 200);
    }
    assert_eq!(
        old.received().len(),
        2,
        "the old address got no call after the reload"
    );
    assert_eq!(new.received().len(), 3);
}
