//! `POST /v1/messages/count_tokens`: Anthropic's token count for a Messages body. When the
//! route's first candidate is an Anthropic backend, its own `count_tokens` answers;
//! otherwise the gateway's tokenizer estimates it. `x-bazaar-token-count` says which
//! (`provider` or `estimated`). No ledger row: nothing is generated or billed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderValue;
use serde_json::value::RawValue;

use super::body::Incoming;
use super::chat::plan_chat;
use super::messages::anthropic_error;
use super::state::AppState;
use crate::api::anthropic::MessagesRequest;
use crate::api::openai::RawObject;
use crate::api::ApiError;
use crate::providers::Attempt;

pub async fn count_tokens(State(state): State<Arc<AppState>>, incoming: Incoming) -> Response {
    handle(&state, &incoming)
        .await
        .unwrap_or_else(anthropic_error)
}

async fn handle(state: &Arc<AppState>, incoming: &Incoming) -> Result<Response, ApiError> {
    let (request_id, headers, body) = (&incoming.request_id, &incoming.headers, &incoming.body);
    let runtime = state.runtime();
    let caller = state.authenticate(headers, &runtime)?;
    let native = RawObject::parse(body)?;
    // A count request has no `max_tokens`; the Messages parser wants one to translate.
    let one = RawValue::from_string("1".into())
        .map_err(|e| ApiError::bad_request(format!("internal: {e}")))?;
    let model: String = native
        .typed("model", "a string")?
        .ok_or_else(|| ApiError::invalid("model", "`model` is required."))?;
    let mut with_max = Vec::with_capacity(body.len() + 16);
    native.write_with(&mut with_max, &model, &[("max_tokens", &one)]);
    let req = MessagesRequest::parse(&with_max)?;
    let plan = plan_chat(&runtime, state, &req.chat, headers, &caller)?;
    let deadline = crate::router::fallback::deadline(&runtime.config, &plan);
    let beta = headers.get("anthropic-beta");
    let first = plan.candidates.first().and_then(|candidate| {
        let provider = runtime.providers.get(candidate.provider)?;
        Some((candidate, provider))
    });
    if let Some((candidate, provider)) = first {
        let at = Attempt {
            upstream_model: &candidate.upstream,
            request_id: &request_id.0,
            deadline,
        };
        match provider.count_tokens(&native, at, beta).await {
            Some(Ok(body)) => {
                let backend = format!("{}/{}", provider.id(), candidate.upstream);
                return Ok(counted(body, "provider", Some(backend)));
            }
            // The estimate below still answers the client; the backend's refusal is logged.
            Some(Err(e)) => tracing::warn!("The backend's token count failed; estimating: {e}"),
            None => {}
        }
    }
    let text = prompt_text(body);
    let tokens = tokio::task::spawn_blocking(move || crate::billing::tokens::count(&text))
        .await
        .map_err(|e| ApiError::bad_request(format!("The token count failed: {e}.")))?;
    let body = serde_json::json!({ "input_tokens": tokens }).to_string();
    Ok(counted(Bytes::from(body), "estimated", None))
}

fn counted(body: Bytes, how: &'static str, backend: Option<String>) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-bazaar-token-count", HeaderValue::from_static(how));
    if let Some(v) = backend.and_then(|b| HeaderValue::from_str(&b).ok()) {
        h.insert("x-bazaar-backend", v);
    }
    response.into_response()
}

/// Every string a model reads in a Messages body: system, message and tool-result text,
/// tool inputs and tool definitions (as JSON), joined.
pub fn prompt_text(body: &[u8]) -> String {
    fn walk(v: &serde_json::Value, key: &str, out: &mut String) {
        match v {
            serde_json::Value::String(s) if !["type", "model", "id", "role"].contains(&key) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, key, out)),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k == "source" || k == "cache_control" {
                        continue;
                    }
                    walk(v, k, out);
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        for key in ["system", "messages", "tools"] {
            if let Some(v) = map.get(key) {
                if key == "tools" {
                    out.push_str(&v.to_string());
                } else {
                    walk(v, key, &mut out);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_text_has_what_the_model_reads() {
        let text = prompt_text(
            br#"{"model":"m","system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"hello there"},
            {"type":"image","source":{"type":"base64","data":"AAAA"}}]},{"role":"assistant","content":"hi"}],
            "tools":[{"name":"f","input_schema":{"type":"object"}}]}"#,
        );
        assert!(text.contains("Be brief.") && text.contains("hello there") && text.contains("hi"));
        assert!(text.contains("\"name\":\"f\""));
        assert!(!text.contains("AAAA") && !text.contains("user"));
    }
}
