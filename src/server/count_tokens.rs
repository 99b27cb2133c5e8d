//! `POST /v1/messages/count_tokens`: Anthropic's token count for a Messages body. When the
//! route's first candidate is an Anthropic backend, its own `count_tokens` answers;
//! otherwise the gateway's tokenizer estimates it. `x-bazaar-token-count` says which
//! (`provider` or `estimated`). No ledger row: nothing is generated or billed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::value::RawValue;

use super::body::JsonBody;
use super::chat::plan_chat;
use super::messages::anthropic_error;
use super::state::AppState;
use super::RequestId;
use crate::api::anthropic::MessagesRequest;
use crate::api::openai::RawObject;
use crate::api::ApiError;
use crate::providers::{Attempt, Provider};

pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    match handle(&state, &request_id, &headers, &body).await {
        Ok(response) => response,
        Err(e) => anthropic_error(e),
    }
}

async fn handle(
    state: &Arc<AppState>,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
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
    if let Some(candidate) = plan.candidates.first() {
        if let Some(Provider::Anthropic(anthropic)) = runtime.providers.get(candidate.provider) {
            let at = Attempt {
                upstream_model: &candidate.upstream,
                request_id: &request_id.0,
                deadline,
            };
            match anthropic.count_tokens(&native, at, beta).await {
                Ok(body) => {
                    let backend = format!(
                        "{}/{}",
                        anthropic_id(&runtime, candidate.provider),
                        candidate.upstream
                    );
                    return Ok(counted(body, "provider", Some(backend)));
                }
                // The estimate below still answers the client; the backend's refusal is logged.
                Err(e) => tracing::warn!("The backend's token count failed; estimating: {e}"),
            }
        }
    }
    let text = prompt_text(body);
    let tokens = tokio::task::spawn_blocking(move || crate::billing::tokens::count(&text))
        .await
        .map_err(|e| ApiError::bad_request(format!("The token count failed: {e}.")))?;
    let body = serde_json::json!({ "input_tokens": tokens }).to_string();
    Ok(counted(Bytes::from(body), "estimated", None))
}

fn anthropic_id(runtime: &super::state::Runtime, provider: usize) -> &str {
    runtime
        .providers
        .get(provider)
        .map(|p| p.id())
        .unwrap_or("")
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
