//! `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`: OpenAI's Responses API
//! in front of every backend, on the shared chat flow (routing, fallback, budgets,
//! metering, ledger). A backend whose preset serves Responses gets the client's body
//! (model rewritten, `previous_response_id` resolved); every other backend gets its
//! Chat Completions translation, whose reply and chunks are translated back. Stored
//! conversations are read only when the request names a `previous_response_id`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use serde_json::value::RawValue;

use super::auth::Caller;
use super::body::Incoming;
use super::call::{self, Asked, Planning, Shape};
use super::chat;
use super::relay::Framer;
use super::responses_store::{ResponseStore, Stored};
use super::state::{AppState, Runtime};
use super::{PathParam, RequestId};
use crate::api::openai::RawObject;
use crate::api::responses::items::{self, ItemsQuery};
use crate::api::responses::reply::{self, BilledUsage, FailedWith, ResponseOut, Status};
use crate::api::responses::stream::StreamWriter;
use crate::api::responses::{new_id, ResponsesRequest};
use crate::api::{ApiError, ReplyError, Usage};
use crate::billing::admission::Outcome;
use crate::billing::cost::usd_number;
use crate::billing::meter::{response_with_billed_usage, Billed, CallMeter};
use crate::providers::{Attempt, Chunk, Provider, Reply, StreamReply, UpstreamError};
use crate::router::RoutePlan;

pub async fn create(State(state): State<Arc<AppState>>, incoming: Incoming) -> Response {
    handle(&state, &incoming)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn not_found(id: &str, param: Option<&str>) -> ApiError {
    ApiError::NotFound {
        message: format!(
            "Response with id '{}' not found.",
            id.chars().take(200).collect::<String>()
        ),
        param: param.map(str::to_string),
        code: None,
    }
}

fn store_down(e: sqlx::Error) -> ApiError {
    tracing::warn!("Reading stored responses failed: {e}");
    ApiError::Unavailable {
        message: "Stored responses cannot be read right now; try again shortly.".into(),
        retry_after: None,
    }
}

async fn handle(state: &Arc<AppState>, incoming: &Incoming) -> Result<Response, ApiError> {
    let (request_id, headers, body) = (&incoming.request_id, &incoming.headers, &incoming.body);
    let runtime = state.runtime();
    let caller = state.authenticate(headers, &runtime)?;
    let store = state.responses.get().cloned();
    let req = match parse(store.as_deref(), &caller, body).await {
        Ok(req) => req,
        Err((model, e)) => {
            // Refused before routing: still one ledger row, as every call.
            refused(state, &runtime, &caller, request_id, &model, &e);
            return Err(e);
        }
    };
    let shape = ResponsesShape {
        id: new_id("resp"),
        store: store.filter(|_| req.store),
        key_id: caller.key_id().to_string(),
        req: &req,
    };
    call::serve(state, &runtime, caller, request_id, headers, &shape).await
}

/// Parses the body, loading the stored conversation it continues; on failure, the
/// model it named (for the ledger) and the error.
pub(super) async fn parse(
    store: Option<&ResponseStore>,
    caller: &Caller,
    body: &[u8],
) -> Result<ResponsesRequest, (String, ApiError)> {
    let fields = RawObject::parse(body).map_err(|e| (String::new(), e))?;
    let model = fields
        .typed::<String>("model", "a string")
        .ok()
        .flatten()
        .unwrap_or_default();
    let fail = |e| (model.clone(), e);
    let previous = ResponsesRequest::previous_id(&fields).map_err(fail)?;
    let history = match (&previous, store) {
        (None, _) => None,
        (Some(id), None) => return Err(fail(not_found(id, Some("previous_response_id")))),
        (Some(id), Some(store)) => match store.load(caller.key_id(), id).await {
            Ok(Some(stored)) => Some(stored),
            Ok(None) => return Err(fail(not_found(id, Some("previous_response_id")))),
            Err(e) => return Err(fail(store_down(e))),
        },
    };
    let history = match &history {
        Some(h) => Some(serde_json::from_str::<&RawValue>(&h.items).map_err(|e| {
            fail(ApiError::bad_request(format!(
                "The stored conversation is unreadable: {e}."
            )))
        })?),
        None => None,
    };
    ResponsesRequest::from_fields(fields, history).map_err(fail)
}

fn refused(
    state: &Arc<AppState>,
    runtime: &Runtime,
    caller: &Caller,
    request_id: &RequestId,
    model: &str,
    e: &ApiError,
) {
    let meter = CallMeter {
        ts_ms: 0,
        request_id: request_id.0.clone(),
        key_name: caller.name.clone(),
        key_id: caller.shared_key_id(),
        team: caller.team.clone(),
        endpoint: "responses",
        route: model.into(),
        markup_bp: caller.markup_bp,
        prompt_tokens_estimate: 0,
    };
    let admission = state.billing.open(meter, &runtime.config.catalog.version);
    admission.finish(Outcome::Failed(e));
}

/// The caller and the store of responses, for a request about stored response `id`
/// (a 404 when responses are not kept).
fn stored_responses<'s>(
    state: &'s AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Caller, &'s Arc<ResponseStore>), ApiError> {
    let runtime = state.runtime();
    let caller = state.authenticate(headers, &runtime)?;
    let store = state.responses.get().ok_or_else(|| not_found(id, None))?;
    Ok((caller, store))
}

/// The stored response `id` of the caller's key (a 404 for any other).
async fn load_stored(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<Arc<Stored>, ApiError> {
    let (caller, store) = stored_responses(state, headers, id)?;
    store
        .load(caller.key_id(), id)
        .await
        .map_err(store_down)?
        .ok_or_else(|| not_found(id, None))
}

/// `GET /v1/responses/{id}`: a stored response, to the key that created it.
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathParam(id): PathParam,
) -> Response {
    let result = async {
        let stored = load_stored(&state, &headers, &id).await?;
        Ok::<_, ApiError>(json(Bytes::from(stored.response.clone())))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/responses/{id}/input_items`: a page of the items a stored response was
/// generated from, to the key that created it.
pub async fn input_items(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathParam(id): PathParam,
    query: Result<Query<ItemsQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let Query(query) =
            query.map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}")))?;
        let page = query.page()?;
        let stored = load_stored(&state, &headers, &id).await?;
        let list = items::input_items(&id, &stored.response, &stored.items, &page)?;
        Ok::<_, ApiError>(json(Bytes::from(list.to_string())))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /v1/responses/{id}`: forgets a stored response of the caller's key.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathParam(id): PathParam,
) -> Response {
    let result = async {
        let (caller, store) = stored_responses(&state, &headers, &id)?;
        if !store
            .delete(caller.key_id(), &id)
            .await
            .map_err(store_down)?
        {
            return Err(not_found(&id, None));
        }
        let body = serde_json::json!({"id": id, "object": "response.deleted", "deleted": true});
        Ok::<_, ApiError>(json(Bytes::from(body.to_string())))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn json(body: Bytes) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

struct ResponsesShape<'r> {
    req: &'r ResponsesRequest,
    /// The id of a translated response (a native backend names its own).
    id: String,
    /// The caller's key id: the stored response's owner.
    key_id: String,
    /// Where the response is kept, when the client asked to store it.
    store: Option<Arc<ResponseStore>>,
}

impl ResponsesShape<'_> {
    fn translatable(&self, provider: &Provider) -> Result<(), UpstreamError> {
        provider.translatable(self.req.native_only.as_ref())
    }

    /// A failure of the chat translation's call, naming the field the client sent
    /// (`input[2].content[1]`, not `messages[3].content[1]`): the error path only.
    fn translated_error(&self, mut e: UpstreamError) -> UpstreamError {
        if let Some(param) = e.param.take() {
            e.param = Some(self.req.responses_param(&param));
        }
        e
    }

    fn keep(&self, id: String, response: Vec<u8>, output: &str) {
        if let Some(store) = &self.store {
            let items = reply::join_arrays(self.req.items().get(), output);
            store.save(&self.key_id, id, response, items);
        }
    }

    fn keeper(&self) -> Option<Keeper> {
        self.store.as_ref().map(|store| Keeper {
            store: store.clone(),
            key_id: self.key_id.clone(),
        })
    }
}

impl Shape for ResponsesShape<'_> {
    type Framer = ResponsesFramer;

    fn asked(&self) -> Asked<'_> {
        Asked::chat(&self.req.chat, "responses")
    }

    fn plan(&self, cx: Planning<'_>) -> Result<RoutePlan, ApiError> {
        chat::plan_chat(cx.runtime, cx.state, &self.req.chat, cx.headers, cx.caller)
    }

    async fn call<'a>(
        &'a self,
        provider: &'a Provider,
        at: Attempt<'a>,
    ) -> Result<Reply, UpstreamError> {
        let protocol = |e: ReplyError| UpstreamError::protocol(provider.id(), e.to_string());
        if provider.speaks_responses() {
            let reply = provider
                .responses(self.req.native_body(at.upstream_model), at)
                .await?;
            if self.store.is_some() {
                // Kept by `reply_body`, with the billed usage; it must be readable.
                reply::read_native(&reply.body).map_err(protocol)?;
            }
            return Ok(reply);
        }
        self.translatable(provider)?;
        let reply = provider
            .chat(&self.req.chat, at)
            .await
            .map_err(|e| self.translated_error(e))?;
        let t = reply::from_chat(&reply.body, &self.req.echo.namespaced).map_err(protocol)?;
        let model = if t.model.is_empty() {
            self.req.chat.model.as_str()
        } else {
            t.model.as_str()
        };
        let created = reply::unix_now();
        let body = ResponseOut::new(
            &self.id,
            created,
            model,
            &self.req.echo,
            t.status,
            &t.output,
            reply.usage,
            None,
        );
        let body = body.to_vec();
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
        if provider.speaks_responses() {
            return provider
                .responses_stream(self.req.native_body(at.upstream_model), at)
                .await;
        }
        self.translatable(provider)?;
        provider
            .chat_stream(&self.req.chat, at)
            .await
            .map_err(|e| self.translated_error(e))
    }

    /// The response with its billed usage, kept as the client got it.
    fn reply_body(&self, body: Bytes, billed: &Billed) -> Bytes {
        let body = response_with_billed_usage(&body, billed)
            .map(Bytes::from)
            .unwrap_or(body);
        if self.store.is_some() {
            if let Ok(read) = reply::read_native(&body) {
                self.keep(read.id, body.to_vec(), &read.output);
            }
        }
        body
    }

    fn framer(&self, provider: &Provider) -> ResponsesFramer {
        let items: Option<Arc<str>> = self
            .store
            .as_ref()
            .map(|_| Arc::from(self.req.items().get()));
        if provider.speaks_responses() {
            return ResponsesFramer::Native(Box::new(NativeFramer {
                keeper: self.keeper(),
                items,
                model: self.req.chat.model.clone(),
                echo: self.req.echo.clone(),
                events: 0,
                id: None,
            }));
        }
        ResponsesFramer::Translated(
            Box::new(StreamWriter::new(
                self.id.clone(),
                &self.req.chat.model,
                self.req.echo.clone(),
                items,
            )),
            self.keeper(),
        )
    }
}

/// Saves finished streams for the key that made them.
struct Keeper {
    store: Arc<ResponseStore>,
    key_id: String,
}

/// A native backend's stream: its frames as they are, read for the finished response
/// (to store it) and its id (for a `response.failed` of our own if it is cut).
struct NativeFramer {
    keeper: Option<Keeper>,
    items: Option<Arc<str>>,
    model: String,
    echo: Arc<crate::api::responses::Echo>,
    /// Frames forwarded: the upstream numbers its events from 0, so the next number.
    events: u64,
    id: Option<String>,
}

/// Responses' stream framing: frames from a backend serving Responses pass through;
/// chat chunks from any other backend are rewritten as Responses events.
enum ResponsesFramer {
    Native(Box<NativeFramer>),
    Translated(Box<StreamWriter>, Option<Keeper>),
}

/// Where the JSON of the `data:` line of one SSE frame starts and ends.
fn frame_data_at(frame: &[u8]) -> Option<(usize, usize)> {
    let start = memchr::memmem::find(frame, b"data: ")? + 6;
    let len = memchr::memchr(b'\n', &frame[start..]).unwrap_or(frame.len() - start);
    Some((start, start + len))
}

/// The JSON of a `data:` line of one SSE frame.
fn frame_data(frame: &[u8]) -> Option<&[u8]> {
    frame_data_at(frame).map(|(start, end)| &frame[start..end])
}

/// Ends a translated stream: the last event (`response.completed` or `…incomplete`) and
/// the response kept for storing carry the usage the call was `billed`.
pub fn finish_billed(writer: &mut StreamWriter, billed: Option<&Billed>, out: &mut BytesMut) {
    let usage = billed.map(|b| billed_usage(writer.usage(), b));
    writer.finish_with_usage(out, usage.as_ref());
}

/// Translates one chat chunk into the Responses events it makes: a usage-only chunk
/// (the adapter read it) is not parsed again.
pub fn translate_chunk(
    writer: &mut StreamWriter,
    chunk: &Chunk,
    out: &mut BytesMut,
) -> Result<(), ReplyError> {
    match chunk.usage {
        Some(usage) if chunk.usage_only => writer.usage_chunk(&chunk.data, usage, out),
        usage => writer.chunk(&chunk.data, usage, out),
    }
}

/// The usage object of a stream's last event, as `Billed::responses_usage_json` has it
/// (the backend's `reported` counts when it reported every bucket, else the billed ones),
/// built without a map: it is written once per stream.
fn billed_usage(reported: Option<Usage>, b: &Billed) -> BilledUsage {
    let counts = match reported {
        Some(reported) if b.usage.is_reported() => reported,
        _ => b.usage,
    };
    BilledUsage::new(&counts, !b.usage.is_reported(), b.cost.map(usd_number))
}

/// A `response.completed` (or `…incomplete`) frame with its response's `usage` saying
/// what the call was billed (`cost`, and `estimated` when the gateway counted), as
/// chat and messages replies carry it; `None` when the frame has no response object.
pub fn completed_with_billed_usage(frame: &[u8], billed: &Billed) -> Option<Vec<u8>> {
    let (start, end) = frame_data_at(frame)?;
    let event = RawObject::parse(&frame[start..end]).ok()?;
    let response = response_with_billed_usage(event.get("response")?.get().as_bytes(), billed)?;
    let response = RawValue::from_string(String::from_utf8(response).ok()?).ok()?;
    let mut out = Vec::with_capacity(frame.len() + 64);
    out.extend_from_slice(&frame[..start]);
    event.write_with(&mut out, "", &[("response", &*response)]);
    out.extend_from_slice(&frame[end..]);
    Some(out)
}

impl NativeFramer {
    /// Reads one event as forwarded (`frame`) of `chunk`.
    fn observe(&mut self, chunk: &Chunk, frame: &[u8]) {
        self.events += 1;
        let first = self.id.is_none();
        // Only the first event (for the id) and the last (usage, to store) are parsed.
        if !first && chunk.usage.is_none() {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Event<'a> {
            #[serde(borrow)]
            response: Option<&'a RawValue>,
        }
        let Some(event) = frame_data(frame)
            .and_then(|d| serde_json::from_slice::<Event>(d).ok())
            .and_then(|e| e.response)
        else {
            return;
        };
        let Ok(read) = reply::read_native(event.get().as_bytes()) else {
            return;
        };
        if first {
            self.id = Some(read.id.clone());
        }
        if chunk.usage.is_some() {
            if let (Some(keeper), Some(items)) = (&self.keeper, self.items.take()) {
                let items = reply::join_arrays(&items, &read.output);
                keeper.store.save(
                    &keeper.key_id,
                    read.id,
                    event.get().as_bytes().to_vec(),
                    items,
                );
            }
        }
    }

    fn fail(&mut self, message: &str, out: &mut BytesMut) {
        let id = self.id.clone().unwrap_or_else(|| new_id("resp"));
        let error = FailedWith {
            code: "server_error",
            message: message.to_string(),
        };
        let response = ResponseOut::new(
            &id,
            reply::unix_now(),
            &self.model,
            &self.echo,
            Status::Failed,
            &[],
            None,
            Some(&error),
        );
        let event = serde_json::json!({
            "type": "response.failed",
            "sequence_number": self.events,
            "response": response,
        });
        out.put_slice(b"event: response.failed\ndata: ");
        let _ = serde_json::to_writer((&mut *out).writer(), &event);
        out.put_slice(b"\n\n");
    }
}

impl Framer for ResponsesFramer {
    fn chunk(&mut self, chunk: &Chunk, cost: Option<u64>, out: &mut BytesMut) -> bool {
        match self {
            ResponsesFramer::Native(native) => {
                // `response.completed`, whose usage is complete, gets the call's cost.
                let billed = chunk
                    .usage
                    .filter(|u| u.is_reported())
                    .map(|usage| Billed { usage, cost });
                let frame = billed.and_then(|b| completed_with_billed_usage(&chunk.data, &b));
                let frame = frame.as_deref().unwrap_or(&chunk.data);
                native.observe(chunk, frame);
                out.put_slice(frame);
                true
            }
            ResponsesFramer::Translated(writer, _) => {
                let before = out.len();
                if let Err(detail) = translate_chunk(writer, chunk, out) {
                    writer.fail(
                        &format!("The backend's stream cannot be translated: {detail}."),
                        out,
                    );
                }
                out.len() > before
            }
        }
    }

    fn error(&mut self, error: &ApiError, _billed: Option<&Billed>, out: &mut BytesMut) {
        let message = error.to_string();
        match self {
            ResponsesFramer::Native(native) => native.fail(&message, out),
            ResponsesFramer::Translated(writer, _) => writer.fail(&message, out),
        }
    }

    fn end(&mut self, billed: Option<&Billed>, out: &mut BytesMut) {
        if let ResponsesFramer::Translated(writer, keeper) = self {
            finish_billed(writer, billed, out);
            if let (Some(keeper), Some(done)) = (keeper.as_ref(), writer.take_finished()) {
                keeper
                    .store
                    .save(&keeper.key_id, done.id, done.response, done.items);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::responses::reply::ResponsesUsage;
    use crate::api::usage::Buckets;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn billed_usage_is_written_as_billing_writes_it(
            counts in proptest::array::uniform5(0u64..5_000_000_000),
            reported in proptest::option::of(proptest::array::uniform5(0u64..1_000_000)),
            estimated in 0u8..32,
            cost in proptest::option::of(any::<u64>()),
        ) {
            let usage = |c: [u64; 5], estimated: u8| Usage {
                input: c[0],
                cached_input: c[1],
                cache_write: c[2], cache_write_1h: 0,
                output: c[3],
                reasoning: c[4],
                estimated: Buckets::from_bits(estimated),
            };
            let billed = Billed { usage: usage(counts, estimated), cost };
            let reported = reported.map(|r| usage(r, 0));
            let raw = reported
                .map(|u| serde_json::value::to_raw_value(&ResponsesUsage::from_usage(&u)).unwrap());
            let expected = serde_json::to_string(&billed.responses_usage_json(raw.as_deref())).unwrap();
            let written = serde_json::to_string(&billed_usage(reported, &billed)).unwrap();
            prop_assert_eq!(written, expected);
        }
    }

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input,
            output,
            ..Usage::default()
        }
    }

    /// The request whose echo the golden streams repeat.
    fn request() -> ResponsesRequest {
        ResponsesRequest::parse(
            br#"{"model":"m","input":"hi","instructions":"Be brief.","tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"metadata":{"k":"v"},"temperature":0.5}"#,
            None,
        )
        .unwrap()
    }

    /// A golden stream: its name, its chunks with their usage, how it ends.
    type Case = (&'static str, Vec<(String, Option<Usage>)>, End);

    /// How a golden stream ends.
    enum End {
        Billed(Option<Billed>),
        Error(&'static str),
    }

    /// The bytes a client gets for `chunks` through the translated framer, then the
    /// response and conversation kept for storing.
    fn transcript(chunks: &[(String, Option<Usage>)], end: End) -> String {
        let req = request();
        let mut framer = ResponsesFramer::Translated(
            Box::new(StreamWriter::new(
                "resp_1".into(),
                "m",
                req.echo.clone(),
                Some(Arc::from(req.items().get())),
            )),
            None,
        );
        let mut out = BytesMut::new();
        for (data, usage) in chunks {
            let chunk = Chunk {
                data: Bytes::from(data.clone()),
                usage: *usage,
                usage_only: false,
            };
            let cost = usage.map(|_| 120_000);
            framer.chunk(&chunk, cost, &mut out);
        }
        match end {
            // As `end` does, keeping the finished response to show it.
            End::Billed(billed) => {
                if let ResponsesFramer::Translated(writer, _) = &mut framer {
                    finish_billed(writer, billed.as_ref(), &mut out);
                }
            }
            End::Error(message) => {
                framer.error(&ApiError::BadGateway(message.into()), None, &mut out)
            }
        }
        let mut text = String::from_utf8(out.to_vec()).unwrap();
        if let ResponsesFramer::Translated(writer, _) = &mut framer {
            match writer.take_finished() {
                Some(done) => {
                    text.push_str(&format!(
                        "--- kept {}\n{}\n--- items\n{}\n",
                        done.id,
                        String::from_utf8(done.response).unwrap(),
                        done.items
                    ));
                }
                None => text.push_str("--- nothing kept\n"),
            }
        }
        text
    }

    fn plain(chunks: &[&str]) -> Vec<(String, Option<Usage>)> {
        chunks.iter().map(|c| (c.to_string(), None)).collect()
    }

    /// The translate bench's stream: a role chunk, 17 words, the finish, the usage.
    fn words(with_usage: bool) -> Vec<(String, Option<Usage>)> {
        let head = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"#;
        let mut chunks = vec![(
            format!(
                r#"{head}"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}"#
            ),
            None,
        )];
        for i in 0..17 {
            chunks.push((
                format!(r#"{head}"delta":{{"content":" word{i}"}},"finish_reason":null}}]}}"#),
                None,
            ));
        }
        chunks.push((
            format!(r#"{head}"delta":{{}},"finish_reason":"stop"}}]}}"#),
            None,
        ));
        if with_usage {
            chunks.push((
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":18,"total_tokens":58}}"#.into(),
                Some(usage(40, 18)),
            ));
        }
        chunks
    }

    #[test]
    fn streams_match_their_golden_file() {
        let billed = Billed {
            usage: usage(40, 18),
            cost: Some(120_000),
        };
        let estimated = Billed {
            usage: Usage {
                input: 41,
                cached_input: 3,
                cache_write: 2,
                cache_write_1h: 0,
                output: 19,
                reasoning: 4,
                estimated: Buckets::OUTPUT,
            },
            cost: Some(1_234_567_891),
        };
        let mut cases: Vec<Case> = vec![
            ("words, billed", words(true), End::Billed(Some(billed))),
            (
                "words, estimated",
                words(true),
                End::Billed(Some(estimated)),
            ),
            (
                "words, no price",
                words(true),
                End::Billed(Some(Billed {
                    cost: None,
                    ..billed
                })),
            ),
            ("words, not billed", words(true), End::Billed(None)),
            (
                "words, no usage chunk",
                words(false),
                End::Billed(Some(billed)),
            ),
            (
                "words, cut",
                words(false),
                End::Error("The backend's stream was cut."),
            ),
        ];
        cases.push((
            "reasoning and tools",
            plain(&[
                r#"{"choices":[{"index":0,"delta":{"reasoning_content":"plan"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"reasoning":" more"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"g","arguments":"{}"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":"tool_calls"}]}"#,
            ]),
            End::Billed(Some(estimated)),
        ));
        cases.push((
            "escapes, refusals and odd shapes",
            plain(&[
                " { \"id\" : \"c\" , \"model\" : \"up\\/1\" , \"choices\" : [ { \"index\" : 0 , \"delta\" : { \"role\" : \"assistant\" , \"content\" : \"Hi\\n\\n\" } } ] } ",
                r#"{"id":"c","model":"up2","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"\"quoted\" caf\u00e9 \ud83d\ude00 a\/b \u0001\ttab é 😀 \\"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
                r#"{"choices":[{"index":1,"delta":{"content":"other choice"}}]}"#,
                r#"{"choices":[]}"#,
                r#"{"choices":[{"index":0,"delta":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":null,"refusal":"I can't."}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"","refusal":""}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"back"},"finish_reason":null}]}"#,
                r#"{"object":"chat.completion.chunk","choices":[{"delta":{"content":" again"},"index":0,"finish_reason":"length"}]}"#,
            ]),
            End::Billed(Some(billed)),
        ));
        cases.push((
            "content filter",
            plain(&[
                r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"content_filter"}]}"#,
            ]),
            End::Billed(None),
        ));
        cases.push((
            "an unreadable chunk",
            plain(&[
                r#"{"choices":[{"index":0,"delta":{"content":"ok"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"model":"a","model":"b"}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"never"}}]}"#,
            ]),
            End::Billed(Some(billed)),
        ));
        cases.push((
            "not a chunk",
            plain(&["{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]} x"]),
            End::Billed(None),
        ));
        cases.push(("empty", Vec::new(), End::Billed(Some(billed))));
        let mut all = String::new();
        for (name, chunks, end) in cases {
            all.push_str(&format!("=== {name}\n"));
            all.push_str(&transcript(&chunks, end));
        }
        crate::api::responses::golden::check("streams.txt", &all);
    }
}
