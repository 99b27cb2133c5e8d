//! A batch of hostile inputs at every endpoint: each gets a clean 4xx, the process stays healthy.

use crate::common::*;

#[tokio::test]
async fn hostile_inputs_get_clean_4xx() {
    let mock = MockUpstream::start().await;
    let toml = single_provider_config(&mock).replace(
        "drain_timeout = \"5s\"",
        "drain_timeout = \"5s\"\nmax_body_bytes = 1048576",
    );
    let gw = TestGateway::start(&toml).await;
    let deep = format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":{}{}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let huge_string = format!("{{\"model\":\"{}\",\"messages\":[]}}", "m".repeat(900_000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "application/json",
            b"{\"model\": \"gpt-4o-mini\", \"messages\": [".to_vec(),
        ),
        ("application/json", deep.into_bytes()),
        ("application/json", huge_string.into_bytes()),
        ("application/json", vec![0xff, 0xfe, 0xfd, b'{', b'}']),
        ("application/json", b"null".to_vec()),
        ("application/json", b"[]".to_vec()),
        (
            "application/json",
            b"{\"model\":{\"$gt\":\"\"},\"messages\":[]}".to_vec(),
        ),
        ("application/json", "x".repeat(2_000_000).into_bytes()),
        ("text/plain", b"{\"model\":\"gpt-4o-mini\"}".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"model=gpt-4o-mini".to_vec(),
        ),
        (
            "application/json",
            b"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":{\"a\":1}}]}"
                .to_vec(),
        ),
        (
            "application/json",
            b"{\"model\":\"gpt-4o-mini\",\"input\":[[[[1]]]],\"prompt\":{}}".to_vec(),
        ),
    ];
    for path in ["/v1/chat/completions", "/v1/embeddings", "/v1/completions"] {
        for (ct, body) in &bodies {
            let resp = gw
                .client
                .post(gw.url(path))
                .bearer_auth(KEY)
                .header("content-type", *ct)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "{path} {ct} {}: {status}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            let v: serde_json::Value = resp
                .json()
                .await
                .unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
            assert!(v["error"]["message"].is_string());
        }
    }
    // A giant header: hyper refuses it; the process must stay up.
    let giant = "a".repeat(200_000);
    let _ = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("x-giant", giant)
        .bearer_auth(KEY)
        .send()
        .await;
    // A giant Authorization header is just a wrong key.
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("k".repeat(8000))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        mock.received().is_empty(),
        "nothing hostile may reach the upstream"
    );
    assert_eq!(
        gw.client
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
