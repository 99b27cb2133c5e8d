//! `POST /v1/chat/completions` and `POST /v1/route/explain`: authenticate, parse once,
//! plan, walk the plan until a backend answers, then relay the reply or the stream.
//! `serve` is that walk for any front end; a `ChatShape` says how its endpoint calls a
//! candidate and frames what comes back (OpenAI's here, Anthropic's in `messages`).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::HeaderMap;
use tokio::time::Instant;

use super::auth::Caller;
use super::body::JsonBody;
use super::meter::{admit, Metered};
use super::relay::{self, RouteHeaders};
use super::respond;
use super::state::{AppState, Runtime};
use super::RequestId;
use crate::api::openai::ChatRequest;
use crate::api::ApiError;
use crate::billing::meter::{Ending, TextShape};
use crate::providers::{Attempt, Chunk, Provider, Reply, StreamReply, UpstreamError};
use crate::router::prefs::Prefs;
use crate::router::{self, explain, fallback, CallShape, RoutePlan};

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    match handle(&state, &request_id, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/route/explain`: the plan a chat request would get, without calling any backend.
pub async fn explain(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let result = (|| {
        let runtime = state.runtime();
        let caller = state.authenticate(&headers, &runtime)?;
        let req = ChatRequest::parse(&body)?;
        let plan = plan_chat(&runtime, &state, &req, &headers, &caller)?;
        Ok::<_, ApiError>(
            Json(explain::explain(
                &plan,
                &runtime.config,
                req.estimated_prompt_tokens(),
            ))
            .into_response(),
        )
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Builds the routing plan of a chat request.
pub fn plan_chat(
    runtime: &Runtime,
    state: &AppState,
    req: &ChatRequest,
    headers: &HeaderMap,
    caller: &Caller,
) -> Result<RoutePlan, ApiError> {
    let provider_ids: Vec<&str> = runtime
        .config
        .providers
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    let prefs = Prefs::parse(&req.fields, headers, &provider_ids)?;
    let call = CallShape {
        model: &req.model,
        needs: req.needs,
        prompt_tokens: req.estimated_prompt_tokens(),
        max_tokens: req.max_tokens,
        prompt_head: &req.prompt_head,
        user: req.user.as_deref(),
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

/// How one front end calls a candidate and shapes what it answers. The rest of a chat
/// call (metering, plan, budget, fallback, live stats, ledger) is `serve`, shared.
pub trait ChatShape: Sync {
    type Framer: relay::Framer;

    /// A complete reply from `provider`, its body already in the front end's shape.
    fn call<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> impl Future<Output = Result<Reply, UpstreamError>> + Send + 'a;

    /// A stream from `provider`, whose chunks `framer` will write.
    fn call_stream<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> impl Future<Output = Result<StreamReply, UpstreamError>> + Send + 'a;

    /// The client's body for a served reply, with the call's cost where the shape has room.
    fn reply_body(&self, body: Bytes, cost: Option<u64>) -> Bytes;

    /// The framer for a stream `provider` served.
    fn framer(&self, provider: &Provider) -> Self::Framer;

    /// The shape of a reply's body as `call` returns it, for counting its text.
    fn text_shape(&self) -> TextShape {
        TextShape::OpenAi
    }
}

/// The OpenAI front end: requests and replies pass through in OpenAI's shape.
struct OpenAiShape<'r> {
    req: &'r ChatRequest,
}

impl ChatShape for OpenAiShape<'_> {
    type Framer = relay::OpenAiFramer;

    fn call<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> impl Future<Output = Result<Reply, UpstreamError>> + Send + 'a {
        provider.chat(self.req, at)
    }

    fn call_stream<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> impl Future<Output = Result<StreamReply, UpstreamError>> + Send + 'a {
        provider.chat_stream(self.req, at)
    }

    fn reply_body(&self, body: Bytes, cost: Option<u64>) -> Bytes {
        respond::openai_body(body, cost)
    }

    fn framer(&self, _provider: &Provider) -> relay::OpenAiFramer {
        relay::OpenAiFramer {
            client_wants_usage: self.req.client_wants_usage,
        }
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
    let req = ChatRequest::parse(body)?;
    let shape = OpenAiShape { req: &req };
    metered(
        state, &runtime, &caller, request_id, headers, &req, "chat", &shape,
    )
    .await
}

/// Serves a parsed chat call through `shape` and records it in the ledger, refused and
/// failed calls included.
#[allow(clippy::too_many_arguments)]
pub async fn metered<S: ChatShape>(
    state: &Arc<AppState>,
    runtime: &Arc<Runtime>,
    caller: &Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
    req: &ChatRequest,
    endpoint: &'static str,
    shape: &S,
) -> Result<Response, ApiError> {
    let metered = Metered::new(
        state,
        runtime,
        caller,
        &request_id.0,
        endpoint,
        &req.model,
        req.estimated_prompt_tokens(),
    );
    let result = serve(
        state, runtime, caller, &metered, request_id, headers, req, shape,
    )
    .await;
    if let Err(e) = &result {
        // Refused or failed calls are ledger rows too (tokens 0, nothing charged).
        metered.finish(
            None,
            Ending {
                status: e.status().as_u16(),
                error_type: Some(e.label()),
                ..Default::default()
            },
        );
    }
    result
}

/// Plans, admits and walks the plan for `req`, answering through `shape`.
#[allow(clippy::too_many_arguments)]
async fn serve<S: ChatShape>(
    state: &Arc<AppState>,
    runtime: &Arc<Runtime>,
    caller: &Caller,
    metered: &Metered,
    request_id: &RequestId,
    headers: &HeaderMap,
    req: &ChatRequest,
    shape: &S,
) -> Result<Response, ApiError> {
    caller.check_model(&req.model)?;
    let plan = plan_chat(runtime, state, req, headers, caller)?;
    let admission = admit(
        state,
        runtime,
        caller,
        &plan,
        req.estimated_prompt_tokens(),
        req.max_tokens,
    )
    .await?;
    let deadline = Instant::now() + max_total(runtime, &plan);
    let request_id = &*request_id.0;
    let settings = &runtime.config.router;

    if !req.stream {
        let served = fallback::run(
            &plan,
            &runtime.providers,
            &state.router,
            &settings.breaker,
            deadline,
            |candidate, provider| {
                shape.call(
                    provider,
                    Attempt {
                        upstream_model: &candidate.upstream,
                        request_id,
                        deadline,
                    },
                )
            },
        )
        .await
        .map_err(|e| e.error)?;
        return Ok(respond::reply(
            state,
            runtime,
            &plan,
            metered,
            admission,
            served,
            shape.text_shape(),
            |body, cost| shape.reply_body(body, cost),
        ));
    }
    let served = fallback::run(
        &plan,
        &runtime.providers,
        &state.router,
        &settings.breaker,
        deadline,
        |candidate, provider| async move {
            let reply = shape
                .call_stream(
                    provider,
                    Attempt {
                        upstream_model: &candidate.upstream,
                        request_id,
                        deadline,
                    },
                )
                .await?;
            let (first, reply) = first_chunk(reply, provider.id()).await?;
            Ok((first, reply, shape.framer(provider)))
        },
    )
    .await
    .map_err(|e| e.error)?;
    Ok(respond::stream(
        state, runtime, &plan, metered, admission, served,
    ))
}

/// Waits for the first chunk, so a stream that fails before any byte can still fall back.
pub async fn first_chunk(
    mut reply: StreamReply,
    provider: &str,
) -> Result<(Chunk, StreamReply), UpstreamError> {
    use futures_util::StreamExt;
    match reply.chunks.next().await {
        Some(Ok(chunk)) => Ok((chunk, reply)),
        Some(Err(e)) => Err(e),
        None => Err(UpstreamError::protocol(
            provider,
            "the stream ended before its first chunk",
        )),
    }
}

/// The longest total timeout among the plan's providers: the call's overall deadline.
pub fn max_total(runtime: &Runtime, plan: &RoutePlan) -> std::time::Duration {
    plan.candidates
        .iter()
        .filter_map(|c| runtime.config.providers.get(c.provider))
        .map(|p| p.timeouts.total)
        .max()
        .unwrap_or(std::time::Duration::from_secs(600))
}

/// The `x-bazaar-*` headers for the candidate that served the call.
pub fn route_headers(
    runtime: &Runtime,
    route: &str,
    candidate: &router::Candidate,
) -> RouteHeaders {
    let provider = runtime
        .config
        .providers
        .get(candidate.provider)
        .map(|p| p.id.as_str())
        .unwrap_or("");
    RouteHeaders {
        backend: format!("{provider}/{}", candidate.upstream),
        route: route.to_string(),
    }
}
