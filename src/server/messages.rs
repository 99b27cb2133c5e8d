//! `POST /v1/messages`: Anthropic's Messages API in front of every backend, so a client
//! using the official `anthropic` SDK gets the same routing, fallback and metering as
//! chat. The request is translated to OpenAI's shape once, for routing and for
//! OpenAI-compatible and Gemini backends, whose replies and chunks are translated back;
//! an Anthropic backend gets the client's own body and answers it untranslated.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};

use super::body::JsonBody;
use super::chat::{self, ChatShape};
use super::relay::Framer;
use super::state::AppState;
use super::RequestId;
use crate::api::anthropic::stream::EventWriter;
use crate::api::anthropic::{error_body, reply, MessagesRequest, NativeOnly};
use crate::api::ApiError;
use crate::billing::meter::TextShape;
use crate::providers::{Attempt, Chunk, Provider, Reply, StreamReply, UpstreamError};

pub async fn create(
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
    let req = MessagesRequest::parse(body)?;
    let shape = MessagesShape {
        req: &req,
        beta: headers.get("anthropic-beta").cloned(),
    };
    chat::metered(
        state, &runtime, &caller, request_id, headers, &req.chat, "messages", &shape,
    )
    .await
}

/// An `ApiError` with its status and headers, in Anthropic's error shape (the SDK reads
/// `error.type` and `error.message`).
pub fn anthropic_error(error: ApiError) -> Response {
    let body = error_body(error.status().as_u16(), &error.to_string());
    let mut response = error.into_response();
    *response.body_mut() = Body::from(body);
    response
}

struct MessagesShape<'r> {
    req: &'r MessagesRequest,
    beta: Option<HeaderValue>,
}

impl MessagesShape<'_> {
    /// Refuses a non-Anthropic backend when the request holds what only Anthropic takes.
    fn translatable(&self, provider: &Provider) -> Result<(), UpstreamError> {
        translatable(self.req.native_only.as_ref(), provider)
    }
}

/// Refuses a translated call to `provider` when the request holds a field (`only`) that
/// only its own wire format's backends take.
pub fn translatable(only: Option<&NativeOnly>, provider: &Provider) -> Result<(), UpstreamError> {
    match only {
        Some(only) => Err(UpstreamError::unsupported(
            provider.id(),
            only.field.clone(),
            only.detail.clone(),
        )),
        None => Ok(()),
    }
}

impl ChatShape for MessagesShape<'_> {
    type Framer = MessagesFramer;

    async fn call<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> Result<Reply, UpstreamError> {
        if let Provider::Anthropic(anthropic) = provider {
            return anthropic
                .messages(&self.req.native, at, self.beta.as_ref())
                .await;
        }
        self.translatable(provider)?;
        let reply = provider.chat(&self.req.chat, at).await?;
        let body = reply::from_openai(&reply.body, reply.usage)
            .map_err(|detail| UpstreamError::protocol(provider.id(), detail))?;
        Ok(Reply {
            body: Bytes::from(body),
            ..reply
        })
    }

    async fn call_stream<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> Result<StreamReply, UpstreamError> {
        match provider {
            Provider::Anthropic(anthropic) => {
                anthropic
                    .messages_stream(&self.req.native, at, self.beta.as_ref())
                    .await
            }
            other => {
                self.translatable(other)?;
                other.chat_stream(&self.req.chat, at).await
            }
        }
    }

    fn reply_body(&self, body: Bytes, _cost: Option<u64>) -> Bytes {
        body
    }

    fn text_shape(&self) -> TextShape {
        TextShape::Anthropic
    }

    fn framer(&self, provider: &Provider) -> MessagesFramer {
        match provider {
            Provider::Anthropic(_) => MessagesFramer::Native,
            _ => MessagesFramer::Translated(Box::new(EventWriter::new(&self.req.chat.model))),
        }
    }
}

/// Anthropic's stream framing: frames from an Anthropic backend pass through; OpenAI
/// chunks from any other backend are rewritten as Messages events.
enum MessagesFramer {
    Native,
    Translated(Box<EventWriter>),
}

fn put_error(out: &mut BytesMut, body: &[u8]) {
    out.put_slice(b"event: error\ndata: ");
    out.put_slice(body);
    out.put_slice(b"\n\n");
}

impl Framer for MessagesFramer {
    fn chunk(&mut self, chunk: &Chunk, _cost: Option<u64>, out: &mut BytesMut) -> bool {
        match self {
            MessagesFramer::Native => {
                out.put_slice(&chunk.data);
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

    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        let body = error_body(error.status().as_u16(), &error.to_string());
        match self {
            MessagesFramer::Native => put_error(out, &body),
            MessagesFramer::Translated(writer) => writer.error(&body, out),
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        if let MessagesFramer::Translated(writer) = self {
            writer.finish(out);
        }
    }

    fn text_shape(&self) -> TextShape {
        match self {
            MessagesFramer::Native => TextShape::Anthropic,
            MessagesFramer::Translated(_) => TextShape::OpenAi,
        }
    }
}
