//! One call, walked the same way for every endpoint (chat, completions, embeddings,
//! messages): the handler authenticates and parses; `serve` checks the key may use the
//! model, plans, admits the call through billing, lets the router walk the plan, and
//! writes the reply or the stream. A front end is a `Shape` — how it plans, calls one
//! candidate and frames what comes back — so `/v1/responses` would be one more shape.

use std::future::Future;
use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use tokio::time::Instant;

use super::auth::Caller;
use super::body::Incoming;
use super::relay::{self, Framer, RouteHeaders};
use super::state::{AppState, Runtime};
use super::RequestId;
use crate::api::openai::ChatRequest;
use crate::api::rewrite::UsageAt;
use crate::api::ApiError;
use crate::billing::admission::{Admission, Ask, Offer, Outcome};
use crate::billing::meter::{
    local_price, plausible, reference_price, with_billed_usage, Billed, BodyShape, CallMeter,
    Ending, SentText, ServedBy,
};
use crate::providers::{Attempt, Provider, Reply, StreamReply, UpstreamError};
use crate::router::fallback::{self, Walk};
use crate::router::{Candidate, RoutePlan};

/// What the walk needs to know of a parsed request, whatever its front end.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The endpoint label of the ledger row.
    pub endpoint: &'static str,
    /// The model or route the client asked for.
    pub model: &'a str,
    /// The prompt's estimated size in tokens.
    pub prompt_tokens: u64,
    /// The output cap the client set, if any.
    pub max_tokens: Option<u64>,
    /// Choices generated (`n`): each may produce up to `max_tokens`.
    pub choices: u64,
    /// The client asked for a stream.
    pub stream: bool,
    /// The head of the prompt the router reads (empty where it reads none).
    pub prompt_head: &'a str,
}

impl<'a> Asked<'a> {
    /// A chat request, as `endpoint` received it.
    pub fn chat(req: &'a ChatRequest, endpoint: &'static str) -> Asked<'a> {
        Asked {
            endpoint,
            model: &req.model,
            prompt_tokens: req.estimated_prompt_tokens(),
            max_tokens: req.max_tokens,
            choices: req.n,
            stream: req.stream,
            prompt_head: &req.prompt_head,
        }
    }
}

/// What planning may read: the gateway, the call's runtime, its caller and headers.
#[derive(Clone, Copy)]
pub struct Planning<'a> {
    pub state: &'a AppState,
    pub runtime: &'a Runtime,
    pub caller: &'a Caller,
    pub headers: &'a HeaderMap,
}

/// How one front end plans, calls a candidate and shapes what it answers.
pub trait Shape: Sync {
    type Framer: Framer;

    /// The request, as the walk needs it.
    fn asked(&self) -> Asked<'_>;

    /// The routing plan of this request.
    fn plan(&self, cx: Planning<'_>) -> Result<RoutePlan, ApiError>;

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

    /// The client's body for a served reply, with what the call billed where the shape
    /// has room: OpenAI's `usage` with `cost`, as OpenRouter's, and the estimated counts
    /// when the backend reported none, unless a shape says otherwise.
    fn reply_body(&self, body: Bytes, billed: &Billed) -> Bytes {
        with_billed_usage(&body, billed, BodyShape::OpenAi)
            .map(Bytes::from)
            .unwrap_or(body)
    }

    /// `reply_body` for a reply whose provider said where its usage object is
    /// (`Reply::usage_at`); a shape whose bodies are OpenAI's as the provider returned
    /// them splices the cost in there rather than reading the body again.
    fn served_body(&self, body: Bytes, usage_at: Option<&UsageAt>, billed: &Billed) -> Bytes {
        let _ = usage_at;
        self.reply_body(body, billed)
    }

    /// The framer for a stream `provider` serves.
    fn framer(&self, provider: &Provider) -> Self::Framer;

    /// The shape of a reply's body as `call` returns it, for counting its text.
    fn text_shape(&self) -> BodyShape {
        BodyShape::OpenAi
    }
}

/// One request on its way, created once: who calls, the plan, when it must be over, and
/// what billing holds for it.
pub struct Call {
    pub caller: Caller,
    pub plan: RoutePlan,
    pub deadline: Instant,
    pub admission: Admission,
}

/// A request from its raw body, its caller already authenticated by the body extractor
/// (401 comes before any parsing error): parses the body into its front end's shape
/// and serves it.
pub async fn handle<S: Shape>(
    state: &Arc<AppState>,
    incoming: Incoming,
    parse: impl FnOnce(&[u8]) -> Result<S, ApiError>,
) -> Result<Response, ApiError> {
    let shape = parse(&incoming.body)?;
    let Incoming {
        request_id,
        headers,
        caller,
        runtime,
        ..
    } = incoming;
    serve(state, &runtime, caller, &request_id, &headers, &shape).await
}

/// Serves one parsed request through `shape`; every outcome, refusals included, is one
/// ledger row.
pub async fn serve<S: Shape>(
    state: &Arc<AppState>,
    runtime: &Arc<Runtime>,
    caller: Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
    shape: &S,
) -> Result<Response, ApiError> {
    let asked = shape.asked();
    let mut admission = state.billing.open(
        CallMeter {
            ts_ms: 0,
            request_id: request_id.0.clone(),
            key_name: caller.name.clone(),
            key_id: caller.shared_key_id(),
            team: caller.team.clone(),
            endpoint: asked.endpoint,
            route: asked.model.into(),
            markup_bp: caller.markup_bp,
            prompt_tokens_estimate: asked.prompt_tokens,
        },
        &runtime.config.catalog.version,
    );
    let cx = Planning {
        state,
        runtime,
        caller: &caller,
        headers,
    };
    let plan = match admit(cx, shape, &mut admission).await {
        Ok(plan) => plan,
        Err(e) => {
            admission.finish(Outcome::Failed(&e));
            return Err(e);
        }
    };
    if let Some(learn) = state.learn.get() {
        let keep = runtime.config.router.keep_prompts;
        learn.note_call(
            &request_id.0,
            caller.key_id(),
            keep.then_some(asked.prompt_head),
        );
    }
    let call = Call {
        deadline: fallback::deadline(&runtime.config, &plan),
        caller,
        plan,
        admission,
    };
    walk(state, runtime, call, &request_id.0, shape).await
}

/// Everything before the first attempt: the plan (with the key's allow-lists), admission.
async fn admit<S: Shape>(
    cx: Planning<'_>,
    shape: &S,
    admission: &mut Admission,
) -> Result<RoutePlan, ApiError> {
    let asked = shape.asked();
    // The plan refuses (403) any model the key may not use, fallbacks included.
    let plan = shape.plan(cx)?;
    let ask = Ask {
        key: cx.caller.key.as_deref(),
        config: &cx.runtime.config,
        prompt_tokens: asked.prompt_tokens,
        max_tokens: asked.max_tokens,
        choices: asked.choices,
    };
    let offers = plan.candidates.iter().map(|c| Offer {
        price: c.facts.price,
        max_output: c.facts.limits.max_output,
    });
    admission.admit(ask, offers).await?;
    Ok(plan)
}

/// Lets the router walk the call's plan, then bills and writes what came back.
async fn walk<S: Shape>(
    state: &Arc<AppState>,
    runtime: &Arc<Runtime>,
    call: Call,
    request_id: &str,
    shape: &S,
) -> Result<Response, ApiError> {
    let Call {
        plan,
        deadline,
        admission,
        ..
    } = call;
    let walk = Walk {
        plan: &plan,
        providers: &runtime.providers,
        router: &state.router,
        settings: &runtime.config.router,
        deadline,
        request_id,
    };
    if !shape.asked().stream {
        let served = match fallback::reply(walk, |p, at| shape.call(p, at)).await {
            Ok(served) => served,
            Err(exhausted) => {
                admission.finish(Outcome::Failed(&exhausted.error));
                return Err(exhausted.error);
            }
        };
        let route = route_headers(runtime, &plan.route, served.candidate);
        let reply = served.value;
        // Counted only when the backend reported no usage it can be billed on (none, or
        // one the meter will not believe), off the async workers.
        let mut sent = match reply.usage {
            Some(u) if u.is_reported() && plausible(&u) => SentText::default(),
            _ => SentText::of(shape.text_shape(), &reply.body),
        };
        sent.count_off_worker().await;
        let ending = Ending {
            usage: reply.usage,
            sent,
            answered: true,
            status: 200,
            ttft: Some(served.ttft),
            fallbacks: served.failed_attempts,
            ..Default::default()
        };
        let by = served_by(state, runtime, &plan, served.candidate);
        let billed = admission.finish(Outcome::Served { by, ending });
        let body = shape.served_body(reply.body, reply.usage_at.as_ref(), &billed);
        let mut response = relay::json(body, route);
        response
            .headers_mut()
            .insert(relay::X_BAZAAR_COST_USD, cost_header(billed.cost));
        return Ok(response);
    }
    let served = match fallback::stream(walk, |p, at| shape.call_stream(p, at)).await {
        Ok(served) => served,
        Err(exhausted) => {
            admission.finish(Outcome::Failed(&exhausted.error));
            return Err(exhausted.error);
        }
    };
    let route = route_headers(runtime, &plan.route, served.candidate);
    let by = served_by(state, runtime, &plan, served.candidate);
    let usage_cost: relay::UsageCost = Box::new(admission.pricer(by.price));
    let framer = shape.framer(&runtime.providers[served.candidate.provider]);
    let (ttft, fallbacks) = (served.ttft, served.failed_attempts);
    let streamed = served.value;
    Ok(relay::sse(
        streamed.first,
        streamed.rest,
        framer,
        usage_cost,
        route,
        move |end| {
            if let Some(e) = &end.error {
                tracing::warn!(
                    error = %e.label(),
                    chunks = end.chunks,
                    "Stream failed after its first byte: {e}"
                );
            }
            let (status, error_type) = match (&end.error, end.client_gone) {
                (Some(e), _) => (502, Some(e.label())),
                (None, true) => (499, Some(crate::api::ErrorLabel::ClientClosed)),
                (None, false) => (200, None),
            };
            let ending = Ending {
                usage: end.usage,
                sent: end.sent,
                answered: true,
                status,
                error_type,
                ttft: Some(ttft),
                fallbacks,
                ..Default::default()
            };
            admission.finish(Outcome::Served { by, ending })
        },
    ))
}

/// Who served a call and at what price (a local server with a running cost is priced at
/// its measured throughput), with the savings reference's price.
fn served_by(
    state: &AppState,
    runtime: &Runtime,
    plan: &RoutePlan,
    candidate: &Candidate,
) -> ServedBy {
    let config = &runtime.config;
    let provider = config.providers.get(candidate.provider);
    let provider_id = provider.map(|p| p.id.as_str()).unwrap_or("");
    // Only a provider with a running cost is priced by its throughput: the others do not
    // take the stats lock.
    let running_cost = provider.filter(|p| p.cost_per_hour_micros.is_some());
    let local = running_cost.and_then(|p| {
        let tps = state
            .router
            .stats
            .backend(provider_id, &candidate.upstream)
            .snapshot(Instant::now())
            .tokens_per_sec
            .unwrap_or(0.0);
        local_price(p, tps)
    });
    let series = state.router.metrics.target_series(
        &candidate.series,
        provider_id,
        &candidate.model,
        candidate.facts.tier.as_str(),
    );
    ServedBy {
        provider: series.provider.clone(),
        series: Some(series),
        model: candidate.model.clone(),
        tier: candidate.facts.tier,
        price: local.unwrap_or(candidate.facts.price),
        // Most routes name no reference of their own (the plan has the route's): the
        // runtime has its price.
        reference_price: match plan.reference {
            None => runtime.default_reference_price,
            Some(_) => reference_price(config, &plan.route),
        },
    }
}

/// The `x-bazaar-*` headers for the candidate that served the call.
fn route_headers(runtime: &Runtime, route: &str, candidate: &Candidate) -> RouteHeaders {
    let provider = runtime
        .config
        .providers
        .get(candidate.provider)
        .map(|p| p.id.as_str())
        .unwrap_or("");
    RouteHeaders::of_target(provider, candidate, route)
}

/// The `x-bazaar-cost-usd` header value: USD with nine decimals (as `usd` writes it),
/// or `unknown`; written on the stack without `fmt`, so the value is the only allocation.
fn cost_header(cost: Option<u64>) -> http::HeaderValue {
    let unknown = || http::HeaderValue::from_static("unknown");
    let Some(c) = cost else {
        return unknown();
    };
    // u64::MAX nano-dollars is 11 digits, a point and 9 decimals.
    let mut buf = [0u8; 32];
    let mut whole = itoa::Buffer::new();
    let dollars = whole.format(c / 1_000_000_000).as_bytes();
    let point = dollars.len();
    buf[..point].copy_from_slice(dollars);
    buf[point] = b'.';
    let mut nanos = c % 1_000_000_000;
    for digit in buf[point + 1..point + 10].iter_mut().rev() {
        *digit = b'0' + (nanos % 10) as u8;
        nanos /= 10;
    }
    http::HeaderValue::from_bytes(&buf[..point + 10]).unwrap_or_else(|_| unknown())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::cost::usd;

    #[test]
    fn the_cost_header_says_what_usd_writes() {
        for c in [
            0,
            1,
            10,
            100_000_000,
            999_999_999,
            1_000_000_000,
            1_500_000,
            123_456_789_012,
            u64::MAX,
        ] {
            assert_eq!(cost_header(Some(c)).to_str().unwrap(), usd(c));
        }
        assert_eq!(cost_header(None).to_str().unwrap(), "unknown");
    }

    #[test]
    fn route_headers_name_the_backend_and_the_route() {
        let h = RouteHeaders::new("groq", "llama-3.1-8b", "cheap");
        assert_eq!(h.backend.unwrap(), "groq/llama-3.1-8b");
        assert_eq!(h.route.unwrap(), "cheap");
        assert!(RouteHeaders::new("p", "m", "bad\nroute").route.is_none());
    }

    #[test]
    fn a_targets_headers_are_made_once_and_name_the_route_asked() {
        let toml = "[providers.p]\nbase_url = \"http://127.0.0.1:1/v1\"\ntier = \"local\"\nmodels = [\"m1\"]\ncatalog = false\n";
        let config = crate::config::Config::from_toml(toml, &|_| None).unwrap();
        let target = &config.models["m1"][0];
        for _ in 0..2 {
            let h = RouteHeaders::of_target("p", target, "m1");
            assert_eq!(h.backend.unwrap(), "p/m1");
            assert_eq!(h.route.unwrap(), "m1");
        }
        let h = RouteHeaders::of_target("p", target, "cheap");
        assert_eq!(h.backend.unwrap(), "p/m1");
        assert_eq!(h.route.unwrap(), "cheap");
        assert!(RouteHeaders::of_target("p", target, "bad\nroute")
            .route
            .is_none());
    }
}
