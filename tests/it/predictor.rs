//! The quality predictor end to end: explain shows each candidate's prior, predicted
//! quality and the features that moved it; the floor policy picks the best predicted
//! candidate when none reaches the floor; per-request weights steer `balanced`.

use serde_json::json;

use crate::common::*;

/// The RouteLLM pair (known to the embedded weights) behind one mock, and a route over it.
async fn pair() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let toml = format!(
        r#"
        [providers.frontier]
        base_url = "{0}"
        tier = "frontier"
        [providers.hosted]
        base_url = "{0}"
        tier = "open-hosted"
        [[models]]
        id = "gpt-4-1106-preview"
        provider = "frontier"
        input_price = 10
        output_price = 30
        quality = 80.27
        [[models]]
        id = "mixtral-8x7b-instruct"
        provider = "hosted"
        upstream = "mistralai/Mixtral-8x7B-Instruct-v0.1"
        input_price = 0.24
        output_price = 0.24
        quality = 68.02
        [routes.pair]
        models = ["gpt-4-1106-preview", "mixtral-8x7b-instruct"]
        policy = "cheapest-above-quality"
        quality_floor = 50
        [[keys]]
        name = "app"
        key = "{KEY}"
        "#,
        mock.base_url()
    );
    let gw = TestGateway::start(&toml).await;
    (mock, gw)
}

fn ask(prompt: &str) -> serde_json::Value {
    json!({"model": "pair", "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]})
}

async fn explain(gw: &TestGateway, body: serde_json::Value) -> serde_json::Value {
    let resp = gw.post("/v1/route/explain", body).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn candidate<'a>(v: &'a serde_json::Value, model: &str) -> &'a serde_json::Value {
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == model)
        .unwrap()
}

#[tokio::test]
async fn explain_shows_prior_prediction_and_features() {
    let (_mock, gw) = pair().await;
    let v = explain(&gw, ask("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether?")).await;
    assert_eq!(v["predictor"], "embedded");
    let weak = candidate(&v, "mixtral-8x7b-instruct");
    assert_eq!(weak["prior"], 68.02);
    assert_eq!(weak["learned"], true);
    let q = weak["quality"].as_f64().unwrap();
    assert!(q > 0.0 && q < 100.0 && q != 68.02, "{weak}");
    let features = weak["top_features"].as_array().unwrap();
    assert!(!features.is_empty() && features.len() <= 5);
    assert!(features[0]["feature"].is_string() && features[0]["effect"].is_number());
    // Another prompt, another prediction; the same prompt, the same one.
    let other = explain(&gw, ask("Write a short poem about autumn leaves.")).await;
    assert_ne!(
        candidate(&other, "mixtral-8x7b-instruct")["quality"],
        weak["quality"]
    );
    let again = explain(&gw, ask("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether?")).await;
    assert_eq!(
        candidate(&again, "mixtral-8x7b-instruct")["quality"],
        weak["quality"]
    );
}

#[tokio::test]
async fn a_floor_nobody_reaches_goes_to_the_best_predicted() {
    let (_mock, gw) = pair().await;
    let mut body = ask("What is 17 times 23?");
    body["bazaar"] = json!({"quality_floor": 99.75});
    let v = explain(&gw, body.clone()).await;
    let strong = candidate(&v, "gpt-4-1106-preview")["quality"]
        .as_f64()
        .unwrap();
    let weak = candidate(&v, "mixtral-8x7b-instruct")["quality"]
        .as_f64()
        .unwrap();
    let best = if strong >= weak {
        "gpt-4-1106-preview"
    } else {
        "mixtral-8x7b-instruct"
    };
    assert_eq!(candidate(&v, best)["verdict"], "chosen");
    let resp = gw.post("/v1/chat/completions", body).await;
    assert_eq!(
        resp.status(),
        200,
        "a floor above every candidate is not an error"
    );
    // A fractional floor just under the weak model's prediction keeps it.
    let mut low = ask("What is 17 times 23?");
    low["bazaar"] = json!({"quality_floor": (weak - 0.5).max(0.0)});
    let v = explain(&gw, low).await;
    assert_eq!(candidate(&v, "mixtral-8x7b-instruct")["verdict"], "chosen");
}

#[tokio::test]
async fn request_weights_steer_balanced() {
    let (_mock, gw) = pair().await;
    let mut body = ask("Explain the causes of the French Revolution in detail.");
    body["max_tokens"] = json!(4000);
    body["bazaar"] = json!({"policy": "balanced", "weights": {"quality": 1, "cost": 0}});
    let v = explain(&gw, body.clone()).await;
    assert_eq!(candidate(&v, "gpt-4-1106-preview")["verdict"], "chosen");
    body["bazaar"] = json!({"policy": "balanced", "weights": {"quality": 0, "cost": 1}});
    let v = explain(&gw, body).await;
    assert_eq!(candidate(&v, "mixtral-8x7b-instruct")["verdict"], "chosen");
}
