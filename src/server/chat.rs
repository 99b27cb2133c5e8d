//! `POST /v1/chat/completions` and `POST /v1/route/explain`, and `OpenAiShape`: how the
//! OpenAI front end (chat, completions, embeddings) plans, calls a candidate and frames
//! its stream for `call::serve`. `plan_chat` builds the plan of a chat request (also for
//! `/v1/messages`, whose request is a chat request inside).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use tokio::time::Instant;

use super::auth::Caller;
use super::body::{Incoming, JsonBody};
use super::call::{self, Asked, Planning, Shape};
use super::embeddings::plan_passthrough;
use super::relay;
use super::state::{AppState, Runtime};
use super::RequestId;
use crate::api::openai::{ChatRequest, PassthroughRequest};
use crate::api::rewrite::UsageAt;
use crate::api::ApiError;
use crate::billing::meter::{served_with_billed_usage, Billed, BodyShape};
use crate::providers::{Attempt, Provider, Reply, StreamReply, UpstreamError};
use crate::router::prefs::Prefs;
use crate::router::{self, explain, CallShape, RoutePlan};
use bytes::Bytes;

pub async fn completions(State(state): State<Arc<AppState>>, incoming: Incoming) -> Response {
    let parse = |body: &[u8]| Ok(OpenAiShape::Chat(ChatRequest::parse(body)?));
    call::handle(&state, incoming, parse)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A call endpoint's handler for a request that `server::app` hands over itself, its id
/// given, instead of through axum's router (which, per call, matches the path again,
/// stores the matched path and an empty parameter list in the request's extensions,
/// boxes the route's service and future, and formats `Content-Length`, which hyper
/// writes itself): the same extractor, handler and answer. One function per endpoint,
/// not one generic over the handler, whose future copied the handler's into itself
/// (docs/performance.md).
macro_rules! routed {
    ($(#[$doc:meta])* $name:ident => $handler:path) => {
        $(#[$doc])*
        pub fn $name(
            state: Arc<AppState>,
            request_id: RequestId,
            req: axum::extract::Request,
        ) -> Pin<Box<dyn Future<Output = Response> + Send>> {
            // Made in its box, as axum makes a handler's future: the call's future is large.
            Box::pin(async move {
                match Incoming::read(req, &state, Some(request_id)).await {
                    Ok(incoming) => $handler(State(state), incoming).await,
                    Err(refused) => refused.into_response(),
                }
            })
        }
    };
}

routed!(
    /// `completions` for `POST /v1/chat/completions`.
    completions_routed => completions
);
routed!(
    /// `embeddings::embeddings` for `POST /v1/embeddings`.
    embeddings_routed => super::embeddings::embeddings
);

/// `POST /v1/route/explain`: the plan a chat request would get, without calling any
/// backend. A Responses body (`input` and no `messages`) is planned as `/v1/responses`
/// plans it: on its chat translation, its `previous_response_id` conversation included.
pub async fn explain(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let result = async {
        let runtime = state.runtime();
        let caller = state.authenticate(&headers, &runtime)?;
        let req = if is_responses_body(&body)? {
            let store = state.responses.get().cloned();
            super::responses::parse(store.as_deref(), &caller, &body)
                .await
                .map_err(|(_, e)| e)?
                .chat
        } else {
            ChatRequest::parse(&body)?
        };
        let plan = plan_chat(&runtime, &state, &req, &headers, &caller)?;
        Ok::<_, ApiError>(
            Json(explain::explain(
                &plan,
                &runtime.config,
                req.estimated_prompt_tokens(),
                &req.predict_view,
            ))
            .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Whether an explain body is a Responses request rather than a chat one.
fn is_responses_body(body: &[u8]) -> Result<bool, ApiError> {
    let fields = crate::api::openai::RawObject::parse(body)?;
    Ok(fields.get("input").is_some() && fields.get("messages").is_none())
}

/// Builds the routing plan of a chat request.
pub fn plan_chat(
    runtime: &Runtime,
    state: &AppState,
    req: &ChatRequest,
    headers: &HeaderMap,
    caller: &Caller,
) -> Result<RoutePlan, ApiError> {
    let prefs = Prefs::parse(&req.fields, headers, &runtime.config.providers)?;
    let call = CallShape {
        headers: Some(headers),
        ..CallShape::of(req)
    };
    router::build_plan(
        &runtime.config,
        &state.router,
        &call,
        &prefs,
        &caller.limits(),
        Instant::now(),
    )
}

/// The OpenAI front end, for its three endpoints: requests and replies pass through in
/// OpenAI's shape.
pub enum OpenAiShape {
    Chat(ChatRequest),
    Completions(PassthroughRequest),
    Embeddings(PassthroughRequest),
}

impl Shape for OpenAiShape {
    type Framer = relay::OpenAiFramer;

    fn asked(&self) -> Asked<'_> {
        let (endpoint, req) = match self {
            OpenAiShape::Chat(req) => return Asked::chat(req, "chat"),
            OpenAiShape::Completions(req) => ("completions", req),
            OpenAiShape::Embeddings(req) => ("embeddings", req),
        };
        Asked {
            endpoint,
            model: &req.model,
            prompt_tokens: req.estimated_prompt_tokens(),
            max_tokens: req.max_tokens,
            choices: req.n,
            stream: req.stream,
            prompt_head: "",
        }
    }

    fn plan(&self, cx: Planning<'_>) -> Result<RoutePlan, ApiError> {
        match self {
            OpenAiShape::Chat(req) => plan_chat(cx.runtime, cx.state, req, cx.headers, cx.caller),
            OpenAiShape::Completions(req) | OpenAiShape::Embeddings(req) => {
                plan_passthrough(cx.runtime, cx.state, req, cx.caller)
            }
        }
    }

    async fn call<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> Result<Reply, UpstreamError> {
        match self {
            OpenAiShape::Chat(req) => provider.chat(req, at).await,
            OpenAiShape::Completions(req) => provider.completions(req, at).await,
            OpenAiShape::Embeddings(req) => provider.embeddings(req, at).await,
        }
    }

    async fn call_stream<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> Result<StreamReply, UpstreamError> {
        match self {
            OpenAiShape::Chat(req) => provider.chat_stream(req, at).await,
            OpenAiShape::Completions(req) => provider.completions_stream(req, at).await,
            // Embeddings never stream: `PassthroughRequest::parse_embeddings` refuses it.
            OpenAiShape::Embeddings(_) => Err(UpstreamError::unsupported(
                provider.id(),
                "stream",
                "embeddings do not stream",
            )),
        }
    }

    fn served_body(&self, body: Bytes, usage_at: Option<&UsageAt>, billed: &Billed) -> Bytes {
        served_with_billed_usage(body, usage_at, billed, BodyShape::OpenAi)
    }

    fn framer(&self, _provider: &Provider) -> relay::OpenAiFramer {
        relay::OpenAiFramer::new(match self {
            OpenAiShape::Chat(req) => req.client_wants_usage,
            OpenAiShape::Completions(req) | OpenAiShape::Embeddings(req) => req.client_wants_usage,
        })
    }
}
