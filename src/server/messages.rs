//! `POST /v1/messages`: Anthropic's Messages API in front of every backend, so a client
//! using the official `anthropic` SDK gets the same routing, fallback and metering as
//! chat. The request is translated to OpenAI's shape once, for routing and for
//! OpenAI-compatible and Gemini backends, whose replies and chunks are translated back;
//! an Anthropic backend gets the client's own body and answers it untranslated.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;

use super::body::Incoming;
use super::call::{self, Asked, Planning, Shape};
use super::chat;
use super::relay::Framer;
use super::state::AppState;
use crate::api::anthropic::stream::EventWriter;
use crate::api::anthropic::{error_body, MessagesRequest};
use crate::api::ApiError;
use crate::billing::meter::{with_billed_usage, Billed, BodyShape};
use crate::providers::{Attempt, Chunk, Provider, Reply, StreamReply, UpstreamError};
use crate::router::RoutePlan;

pub async fn create(State(state): State<Arc<AppState>>, incoming: Incoming) -> Response {
    let beta = incoming.headers.get("anthropic-beta").cloned();
    let parse = |body: &[u8]| {
        let req = MessagesRequest::parse(body)?;
        Ok(MessagesShape { req, beta })
    };
    call::handle(&state, incoming, parse)
        .await
        .unwrap_or_else(anthropic_error)
}

/// An `ApiError` with its status and headers, in Anthropic's error shape (the SDK reads
/// `error.type` and `error.message`).
pub fn anthropic_error(error: ApiError) -> Response {
    let body = error_body(error.status().as_u16(), &error.to_string());
    let mut response = error.into_response();
    *response.body_mut() = Body::from(body);
    response
}

struct MessagesShape {
    req: MessagesRequest,
    beta: Option<HeaderValue>,
}

impl Shape for MessagesShape {
    type Framer = MessagesFramer;

    fn asked(&self) -> Asked<'_> {
        Asked::chat(&self.req.chat, "messages")
    }

    fn plan(&self, cx: Planning<'_>) -> Result<RoutePlan, ApiError> {
        chat::plan_chat(cx.runtime, cx.state, &self.req.chat, cx.headers, cx.caller)
    }

    fn call<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> impl Future<Output = Result<Reply, UpstreamError>> + Send + 'a {
        provider.messages(&self.req, at, self.beta.as_ref())
    }

    fn call_stream<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> impl Future<Output = Result<StreamReply, UpstreamError>> + Send + 'a {
        provider.messages_stream(&self.req, at, self.beta.as_ref())
    }

    fn reply_body(&self, body: Bytes, billed: &Billed) -> Bytes {
        with_billed_usage(&body, billed, BodyShape::Anthropic)
            .map(Bytes::from)
            .unwrap_or(body)
    }

    fn text_shape(&self) -> BodyShape {
        BodyShape::Anthropic
    }

    fn framer(&self, provider: &Provider) -> MessagesFramer {
        if provider.speaks_messages() {
            MessagesFramer::Native
        } else {
            MessagesFramer::Translated(Box::new(EventWriter::new(&self.req.chat.model)))
        }
    }
}

/// Anthropic's stream framing: frames from an Anthropic backend pass through; OpenAI
/// chunks from any other backend are rewritten as Messages events. Either way the
/// `message_delta` usage carries the call's `cost` (and, when the backend reported no
/// usage, the estimated counts with `estimated: true`).
enum MessagesFramer {
    Native,
    Translated(Box<EventWriter>),
}

/// One SSE frame (`event:` and one `data:` line) with its data's `usage` rewritten to
/// what the call was billed; `None` when the frame has no JSON object to rewrite.
fn frame_with_billed_usage(frame: &[u8], billed: &Billed) -> Option<Vec<u8>> {
    let start = memchr::memmem::find(frame, b"data: ")? + b"data: ".len();
    let end = start + memchr::memchr(b'\n', &frame[start..])?;
    let data = with_billed_usage(&frame[start..end], billed, BodyShape::Anthropic)?;
    Some([&frame[..start], &data, &frame[end..]].concat())
}

fn put_error(out: &mut BytesMut, body: &[u8]) {
    out.put_slice(b"event: error\ndata: ");
    out.put_slice(body);
    out.put_slice(b"\n\n");
}

impl Framer for MessagesFramer {
    fn chunk(&mut self, chunk: &Chunk, cost: Option<u64>, out: &mut BytesMut) -> bool {
        match self {
            MessagesFramer::Native => {
                // `message_delta`, whose usage is complete, gets the call's cost.
                let billed = chunk
                    .usage
                    .filter(|u| u.is_reported())
                    .map(|usage| Billed { usage, cost });
                match billed.and_then(|b| frame_with_billed_usage(&chunk.data, &b)) {
                    Some(frame) => out.put_slice(&frame),
                    None => out.put_slice(&chunk.data),
                }
                true
            }
            MessagesFramer::Translated(writer) => {
                let before = out.len();
                if let Err(detail) = writer.chunk(&chunk.data, chunk.usage, out) {
                    let message = format!("The backend's stream cannot be translated: {detail}.");
                    writer.error(&error_body(502, &message), out);
                }
                out.len() > before
            }
        }
    }

    fn error(&mut self, error: &ApiError, _billed: Option<&Billed>, out: &mut BytesMut) {
        let body = error_body(error.status().as_u16(), &error.to_string());
        match self {
            MessagesFramer::Native => put_error(out, &body),
            MessagesFramer::Translated(writer) => writer.error(&body, out),
        }
    }

    fn end(&mut self, billed: Option<&Billed>, out: &mut BytesMut) {
        if let MessagesFramer::Translated(writer) = self {
            writer.finish(
                out,
                billed.map(|b| b.usage_json(None, BodyShape::Anthropic)),
            );
        }
    }

    fn text_shape(&self) -> BodyShape {
        match self {
            MessagesFramer::Native => BodyShape::Anthropic,
            MessagesFramer::Translated(_) => BodyShape::OpenAi,
        }
    }
}
