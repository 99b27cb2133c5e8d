//! The end of every call's data path, shared by all endpoints: report the attempt to
//! the router's live stats, bill it (ledger row, budget settlement), and build the
//! client's response — the JSON reply with its cost, or the stream that bills itself
//! when it ends, however it ends.

use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;

use super::chat::route_headers;
use super::meter::{cost_header, served_by, Admission, Metered};
use super::relay;
use super::state::{AppState, Runtime};
use crate::api::ErrorLabel;
use crate::billing::cost::cost_nanos;
use crate::billing::meter::{with_usage_cost, Ending, SentText, TextShape};
use crate::providers::{Chunk, Reply, StreamReply};
use crate::router::fallback::Served;
use crate::router::RoutePlan;

/// Bills a complete reply and returns it with `x-bazaar-cost-usd`; `body` writes the
/// client's body from the reply's and the cost (OpenAI's adds `usage.cost`); the reply's
/// text, in `text_shape`, is counted if the backend reported no usage.
#[allow(clippy::too_many_arguments)]
pub fn reply(
    state: &Arc<AppState>,
    runtime: &Runtime,
    plan: &RoutePlan,
    metered: &Metered,
    admission: Admission,
    served: Served<'_, Reply>,
    text_shape: TextShape,
    body: impl FnOnce(Bytes, Option<u64>) -> Bytes,
) -> Response {
    let settings = &runtime.config.router;
    let route = route_headers(runtime, &plan.route, served.candidate);
    let reply = served.value;
    let ttft = served.attempt.first_byte;
    served.attempt.finish(
        &state.router,
        &settings.breaker,
        settings.affinity_ttl,
        reply.usage.map(|u| u.completion_tokens()),
        Some(reply.meta),
        None,
    );
    let by = served_by(state, runtime, &plan.route, served.candidate);
    let ending = Ending {
        usage: reply.usage,
        // Counted only when the backend reported no usage.
        sent: match reply.usage {
            Some(_) => SentText::default(),
            None => SentText::of(text_shape, &reply.body),
        },
        answered: true,
        status: 200,
        ttft: Some(ttft),
        fallbacks: served.failed_attempts,
        ..Default::default()
    };
    let cost = metered.finish(Some(&by), ending);
    admission.settle(cost);
    let mut response = relay::json(body(reply.body, cost), &route);
    response
        .headers_mut()
        .insert("x-bazaar-cost-usd", cost_header(cost));
    response
}

/// The OpenAI body of a reply: with `usage.cost`, as OpenRouter's.
pub fn openai_body(body: Bytes, cost: Option<u64>) -> Bytes {
    with_usage_cost(&body, cost)
        .map(Bytes::from)
        .unwrap_or(body)
}

/// Relays a stream whose first chunk has arrived, framed by `framer`; the call is billed
/// when the stream ends — completed, cut by the upstream (estimated) or abandoned.
pub fn stream<R: relay::Framer>(
    state: &Arc<AppState>,
    runtime: &Runtime,
    plan: &RoutePlan,
    metered: &Metered,
    admission: Admission,
    served: Served<'_, (Chunk, StreamReply, R)>,
) -> Response {
    let route = route_headers(runtime, &plan.route, served.candidate);
    let (first, reply, framer) = served.value;
    let attempt = served.attempt;
    let (ttft, fallbacks, meta) = (attempt.first_byte, served.failed_attempts, reply.meta);
    let by = served_by(state, runtime, &plan.route, served.candidate);
    let (price, markup_bp) = (by.price, metered.meter.markup_bp);
    let usage_cost: relay::UsageCost = Box::new(move |u| cost_nanos(u, &price, markup_bp));
    let (state, settings, meter) = (
        state.clone(),
        runtime.config.router.clone(),
        metered.clone_for_stream(),
    );
    relay::sse(
        first,
        reply.chunks,
        framer,
        usage_cost,
        &route,
        move |end| {
            if let Some(e) = &end.error {
                tracing::warn!(
                    error = %e.label(),
                    chunks = end.chunks,
                    "Stream failed after its first byte: {e}"
                );
            }
            let output = end
                .usage
                .filter(|u| u.is_reported())
                .map(|u| u.completion_tokens());
            attempt.finish(
                &state.router,
                &settings.breaker,
                settings.affinity_ttl,
                output,
                Some(meta),
                end.error.as_ref(),
            );
            let (status, error_type) = match (&end.error, end.client_gone) {
                (Some(e), _) => (502, Some(e.label())),
                (None, true) => (499, Some(ErrorLabel::ClientClosed)),
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
            let cost = meter.finish(Some(&by), ending);
            admission.settle(cost);
        },
    )
}
