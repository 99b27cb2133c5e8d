//! The OpenAI wire format, spoken by OpenAI, Azure OpenAI and every OpenAI-compatible
//! host. The front end already speaks it, so translation is a minimal rewrite: `model`
//! set to the upstream id, `stream_options.include_usage` asked for, gateway fields
//! dropped, a preset's quirks applied. Replies and chunks are forwarded as the upstream's bytes.

pub mod responses;

use std::sync::LazyLock;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Response, Uri};
use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::chat::unsupported;
use super::http::{
    base_headers, read_reply, reply_stream, ErrorReply, StreamTranslator, UpstreamBody,
    UpstreamClient,
};
use super::presets::Quirks;
use super::sse::SseEvent;
use super::{
    Adapter, Attempt, BuildError, Chunk, Reply, StatusReply, StreamReply, UpstreamError,
    UpstreamMeta,
};
use crate::api::openai::{ChatRequest, PassthroughRequest, RawObject, GATEWAY_FIELDS};
use crate::api::rewrite::{Members, PlainUsage, UsageAt};
use crate::api::usage::{Buckets, OpenAiUsage};
use crate::api::valid::{self, once};
use crate::api::Usage;
use crate::config::{ProviderConfig, WireFormat};

/// An OpenAI-compatible provider with its own connection pool.
#[derive(Debug)]
pub struct OpenAiAdapter {
    config: ProviderConfig,
    client: UpstreamClient,
    headers: HeaderMap,
    /// Endpoint URIs parsed once, not per call (Azure's depend on the deployment).
    chat_url: Uri,
    completions_url: Uri,
    embeddings_url: Uri,
    responses_url: Uri,
}

impl OpenAiAdapter {
    pub fn new(config: ProviderConfig) -> Result<OpenAiAdapter, BuildError> {
        let client = UpstreamClient::new(&config)?;
        let headers = base_headers(&config, &[])?;
        let url = |path: &str| {
            Uri::try_from(format!("{}{path}", config.base_url))
                .map_err(|e| BuildError::field("base_url", e))
        };
        Ok(OpenAiAdapter {
            chat_url: url("/chat/completions")?,
            completions_url: url("/completions")?,
            embeddings_url: url("/embeddings")?,
            responses_url: url("/responses")?,
            config,
            client,
            headers,
        })
    }

    /// The URL of endpoint `path` (`/chat/completions`) for `model`: the base URL plus
    /// the path, or Azure's deployment URL with its `api-version`.
    fn url(&self, path: &str, model: &str) -> Result<Uri, UpstreamError> {
        let base = &self.config.base_url;
        let azure = match (
            &self.config.api_version,
            self.config.quirks.azure_deployments,
        ) {
            (Some(v), true) if v == "v1" => format!("{base}/openai/v1{path}"),
            (Some(v), true) => format!("{base}/openai/deployments/{model}{path}?api-version={v}"),
            _ => {
                return Ok(match path {
                    "/chat/completions" => self.chat_url.clone(),
                    "/completions" => self.completions_url.clone(),
                    "/responses" => self.responses_url.clone(),
                    _ => self.embeddings_url.clone(),
                })
            }
        };
        Uri::try_from(azure).map_err(|e| {
            unsupported(
                &self.config.id,
                "model",
                format!("`{model}` does not make a valid Azure deployment URL ({e})"),
            )
        })
    }

    async fn send(
        &self,
        path: &str,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<(Response<UpstreamBody>, UpstreamMeta), UpstreamError> {
        let uri = self.url(path, at.upstream_model)?;
        let request = UpstreamClient::post(uri, &self.headers, at.request_id, body);
        self.client.send(&self.config, request, at, classify).await
    }

    async fn complete(
        &self,
        path: &str,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        let (response, meta) = self.send(path, body, at).await?;
        let body = read_reply(&self.config, response, at).await?;
        let (usage, usage_at) = read_reply_usage(&self.config.id, &body, &self.config.quirks)?;
        Ok(Reply {
            body,
            usage,
            meta,
            usage_at,
        })
    }

    async fn stream(
        &self,
        path: &str,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let (response, meta) = self.send(path, body, at).await?;
        let translator = OpenAiStream {
            provider: self.config.id.clone(),
            reasoning_apart: self.config.quirks.reasoning_outside_completion,
        };
        Ok(StreamReply {
            chunks: reply_stream(&self.config, response, at.deadline, translator),
            meta,
        })
    }

    /// Whether this host serves OpenAI's Responses API (its preset says so).
    pub fn serves_responses(&self) -> bool {
        self.config.quirks.serves_responses
    }

    /// `POST /responses` with a body the Responses front end wrote (model already set);
    /// the reply is the upstream's response object, read for its usage.
    pub async fn responses(&self, body: Vec<u8>, at: Attempt<'_>) -> Result<Reply, UpstreamError> {
        let (response, meta) = self.send("/responses", body, at).await?;
        let body = read_reply(&self.config, response, at).await?;
        let usage = crate::api::responses::reply::read_native(&body)
            .map_err(|e| UpstreamError::protocol(&self.config.id, e.to_string()))?
            .usage;
        Ok(Reply {
            body,
            usage,
            meta,
            usage_at: None,
        })
    }

    /// A streamed `POST /responses`: the upstream's events, passed through.
    pub async fn responses_stream(
        &self,
        body: Vec<u8>,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let (response, meta) = self.send("/responses", body, at).await?;
        Ok(StreamReply {
            chunks: reply_stream(
                &self.config,
                response,
                at.deadline,
                responses::ResponsesStream::new(&self.config.id),
            ),
            meta,
        })
    }

    /// The upstream body: the client's fields with the preset's quirks applied, and
    /// `stream_options.include_usage` asked for when streaming (unless the host refuses it).
    fn body(
        &self,
        fields: &RawObject,
        model: &str,
        stream: bool,
    ) -> Result<Vec<u8>, UpstreamError> {
        let quirks = &self.config.quirks;
        check_quirks(&self.config.id, quirks, fields)?;
        let mut out = Vec::with_capacity(256);
        let options;
        let mut extra: Vec<(&str, &RawValue)> = Vec::new();
        if stream && !quirks.no_stream_usage {
            options = with_usage(fields.get("stream_options"));
            extra.push(("stream_options", &options));
        }
        if quirks.no_stream_usage && fields.get("stream_options").is_some() {
            write_renamed(
                &mut out,
                fields,
                model,
                &extra,
                quirks.renames,
                &["stream_options"],
            );
        } else if quirks.renames.is_empty() {
            fields.write_with(&mut out, model, &extra);
        } else {
            write_renamed(&mut out, fields, model, &extra, quirks.renames, &[]);
        }
        Ok(out)
    }
}

/// Refuses what the preset says the host cannot express, naming field and host.
fn check_quirks(provider: &str, quirks: &Quirks, fields: &RawObject) -> Result<(), UpstreamError> {
    if quirks.single_choice {
        if let Some(n) = fields.get("n") {
            if serde_json::from_str::<u64>(n.get()).unwrap_or(1) > 1 {
                return Err(unsupported(
                    provider,
                    "n",
                    "this host returns one choice per call; n must be 1",
                ));
            }
        }
    }
    for field in quirks.unsupported {
        if let Some(v) = fields.get(field) {
            if !super::chat::is_off(v) {
                return Err(unsupported(provider, *field, "this host refuses it"));
            }
        }
    }
    Ok(())
}

/// Writes `fields` like `RawObject::write_with`, renaming fields per `renames` (unless the
/// client also sent the target name) and leaving out `drop`.
fn write_renamed(
    out: &mut Vec<u8>,
    fields: &RawObject,
    model: &str,
    extra: &[(&str, &RawValue)],
    renames: &[(&str, &str)],
    drop: &[&str],
) {
    out.push(b'{');
    let mut first = true;
    let mut model_written = false;
    for (key, value) in fields.iter() {
        if GATEWAY_FIELDS.contains(&key)
            || drop.contains(&key)
            || extra.iter().any(|(k, _)| *k == key)
            || (key == "model" && model_written)
        {
            continue;
        }
        let name = match renames.iter().find(|(from, _)| *from == key) {
            Some((_, to)) if fields.get(to).is_some() => continue,
            Some((_, to)) => *to,
            None => key,
        };
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_json_string(out, name);
        out.push(b':');
        if key == "model" {
            write_json_string(out, model);
            model_written = true;
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    for (key, value) in extra {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_json_string(out, key);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Classifies a non-2xx OpenAI-style reply: the upstream's message, code and param.
pub fn classify(provider: &str, reply: ErrorReply<'_>) -> UpstreamError {
    let (message, code, param) = error_fields(reply.body);
    UpstreamError::status(
        provider,
        StatusReply {
            status: reply.status,
            message: message
                .unwrap_or_else(|| format!("HTTP {} with no error message", reply.status)),
            code,
            param,
            retry_after: reply.retry_after,
        },
    )
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorBody>,
    message: Option<String>,
    detail: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    code: Option<serde_json::Value>,
    param: Option<String>,
}

const MAX_MESSAGE: usize = 500;

/// The message, code and param of an OpenAI-style error body, truncated; never the raw body.
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(body) else {
        return (None, None, None);
    };
    let code = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let (message, code, param) = match envelope.error {
        Some(e) => (e.message, code(e.code), e.param),
        None => (
            envelope
                .message
                .or_else(|| envelope.detail.map(|d| d.to_string())),
            None,
            None,
        ),
    };
    (message.map(|m| truncate(m, MAX_MESSAGE)), code, param)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[derive(Deserialize)]
struct ReplyPeek<'a> {
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// `parse_usage`, read once for billing as well: with where the reply's usage object is,
/// so the call's cost is spliced into it without reading the body again. A body this
/// one read does not settle (not UTF-8, not an object, `usage` or `error` given twice)
/// is read by `parse_usage`, which says what is wrong with it.
pub fn read_reply_usage(
    provider: &str,
    body: &Bytes,
    quirks: &Quirks,
) -> Result<(Option<Usage>, Option<UsageAt>), UpstreamError> {
    let text = std::str::from_utf8(body).ok();
    let Some((text, members)) = text
        .and_then(|t| Some((t, Members::of(t)?)))
        .filter(|(_, m)| !m.repeated)
    else {
        return parse_usage(provider, body, quirks).map(|usage| (usage, None));
    };
    fn present(v: Option<&str>) -> Option<&str> {
        v.filter(|v| *v != "null")
    }
    if let Some(error) = present(members.error) {
        return Err(error_event(provider, error, "an error in place of a reply"));
    }
    let reasoning_apart = quirks.reasoning_outside_completion;
    let usage_text = present(members.usage);
    // Most usage objects are read in one pass, for their counts and whether the cost
    // fits in them; the rest as before.
    if let Some(plain) = usage_text.and_then(PlainUsage::read) {
        let usage_at = plain
            .spliceable
            .then(|| members.usage_span(text))
            .flatten()
            .map(|range| UsageAt::new(body, range));
        return Ok((Some(usage_of(&plain.usage, reasoning_apart)), usage_at));
    }
    let usage = usage_text.map(|u| read_usage(provider, u, reasoning_apart));
    let usage_at = members
        .usage_range(text)
        .map(|range| UsageAt::new(body, range));
    Ok((usage, usage_at))
}

/// Usage from a complete OpenAI reply; `None` when the backend reported none. A reply
/// whose body is an `error` object is that error, whatever its status said: some hosts
/// answer a failure with 200.
pub fn parse_usage(
    provider: &str,
    body: &[u8],
    quirks: &Quirks,
) -> Result<Option<Usage>, UpstreamError> {
    let parsed: ReplyPeek = serde_json::from_slice(body)
        .map_err(|e| UpstreamError::protocol(provider, format!("the reply is not JSON ({e})")))?;
    if let Some(error) = parsed.error {
        return Err(error_event(
            provider,
            error.get(),
            "an error in place of a reply",
        ));
    }
    Ok(parsed
        .usage
        .map(|u| read_usage(provider, u.get(), quirks.reasoning_outside_completion)))
}

/// The usage a backend reported in `raw`. A report that cannot be read (a negative,
/// fractional or quoted count, or no object at all) is not the backend's count: it is
/// kept as a report of nothing, so the call is billed on the gateway's own count and the
/// answer it came with still reaches the client.
fn read_usage(provider: &str, raw: &str, reasoning_apart: bool) -> Usage {
    let Ok(raw) = serde_json::from_str::<OpenAiUsage>(raw) else {
        tracing::warn!(
            provider,
            "The backend's usage report is unreadable; the call's usage is estimated instead."
        );
        return Usage::default().lacking(Buckets::ALL);
    };
    usage_of(&raw, reasoning_apart)
}

fn usage_of(raw: &OpenAiUsage, reasoning_apart: bool) -> Usage {
    if reasoning_apart {
        Usage::from_openai_reasoning_apart(raw)
    } else {
        Usage::from_openai(raw)
    }
}

/// The upstream error an `error` object in a 200 reply or stream event stands for;
/// `otherwise` is the message when it has none.
fn error_event(provider: &str, error: &str, otherwise: &str) -> UpstreamError {
    let (message, code, param) = error_fields(format!("{{\"error\":{error}}}").as_bytes());
    UpstreamError::status(
        provider,
        StatusReply {
            status: 502,
            message: message.unwrap_or_else(|| otherwise.into()),
            code,
            param,
            retry_after: None,
        },
    )
}

#[derive(Deserialize)]
struct ChunkPeek<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ChoicePeek<'a>>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoicePeek<'a> {
    /// Kimi reports stream usage inside the last choice.
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

/// The keys that send a chunk to the full read, their searchers built once: building
/// one costs more than searching a chunk with it.
static CHUNK_KEYS: LazyLock<[Finder<'static>; 2]> =
    LazyLock::new(|| [Finder::new(b"\"usage\""), Finder::new(b"\"error\"")]);

/// Turns one upstream SSE event into zero or one chunk; `Ok(None)` also for `[DONE]`.
pub fn openai_chunk(provider: &str, event: SseEvent) -> Result<Option<Chunk>, UpstreamError> {
    openai_chunk_with(provider, event, false)
}

fn openai_chunk_with(
    provider: &str,
    event: SseEvent,
    reasoning_apart: bool,
) -> Result<Option<Chunk>, UpstreamError> {
    let data = event.data;
    if data == "[DONE]" {
        return Ok(None);
    }
    // An event with empty data (`data:` alone) is no chunk; forwarded, it would reach the
    // client as an empty `data:` line, which the SDKs fail to parse. Nor is one that is
    // not a JSON object, which fails the stream rather than the client's parser.
    match data.trim_start().as_bytes().first() {
        None => return Ok(None),
        Some(b'{') => {}
        Some(_) => {
            return Err(UpstreamError::protocol(
                provider,
                "a stream event is not a JSON object",
            ))
        }
    }
    // Most chunks carry neither usage nor an error: forward them without a full parse.
    let [usage, error] = &*CHUNK_KEYS;
    if usage.find(data.as_bytes()).is_none() && error.find(data.as_bytes()).is_none() {
        return Ok(Some(Chunk {
            data: Bytes::from(data),
            usage: None,
            usage_only: false,
        }));
    }
    let (usage, no_choices) = match PlainChunk::read(&data) {
        Some(plain) => plain.usage(provider, reasoning_apart)?,
        None => chunk_by_serde(provider, &data, reasoning_apart)?,
    };
    Ok(Some(Chunk {
        data: Bytes::from(data),
        usage,
        usage_only: usage.is_some() && no_choices,
    }))
}

/// A chunk's usage and whether it has no choices, as serde reads it (`ChunkPeek`); an
/// `error` member is the stream's failure.
fn chunk_by_serde(
    provider: &str,
    data: &str,
    reasoning_apart: bool,
) -> Result<(Option<Usage>, bool), UpstreamError> {
    let peek: ChunkPeek = serde_json::from_str(data).map_err(|e| {
        UpstreamError::protocol(provider, format!("a stream event is not JSON ({e})"))
    })?;
    if let Some(error) = peek.error {
        return Err(error_event(
            provider,
            error.get(),
            "error event in the stream",
        ));
    }
    let no_choices = peek.choices.as_ref().is_none_or(|c| c.is_empty());
    let raw_usage = peek
        .usage
        .or_else(|| peek.choices.into_iter().flatten().find_map(|c| c.usage));
    let usage = raw_usage.map(|u| read_usage(provider, u.get(), reasoning_apart));
    Ok((usage, no_choices))
}

/// A chunk with no choices (the usage chunk, an error event) as one scan reads it,
/// without serde's calls: its `usage` and `error` values (`null` read as absent).
struct PlainChunk<'a> {
    usage: Option<&'a str>,
    error: Option<&'a str>,
}

impl<'a> PlainChunk<'a> {
    /// Containers nested below the chunk's members that the scan reads; deeper is
    /// serde's to read.
    const DEPTH: u32 = 64;

    /// `None` unless `data` is one valid JSON object whose `choices` is absent, `null`
    /// or `[]`, with no key escaped at its top and none of `usage`, `error` and
    /// `choices` given twice: anything else is read by serde, whose answer then stands
    /// (property-tested against it below).
    fn read(data: &'a str) -> Option<PlainChunk<'a>> {
        let mut seen = 0u8;
        let mut chunk = PlainChunk {
            usage: None,
            error: None,
        };
        let given = |value: &'a str| (value != "null").then_some(value);
        valid::object(data, PlainChunk::DEPTH, |key, value| {
            match key {
                "usage" => {
                    once(&mut seen, 0)?;
                    chunk.usage = given(value);
                }
                "error" => {
                    once(&mut seen, 1)?;
                    chunk.error = given(value);
                }
                "choices" => {
                    once(&mut seen, 2)?;
                    if value != "null" && value != "[]" {
                        return None;
                    }
                }
                _ => {}
            }
            Some(())
        })?;
        Some(chunk)
    }

    /// What `chunk_by_serde` says of the same chunk: its usage (no choices), or its
    /// error.
    fn usage(
        self,
        provider: &str,
        reasoning_apart: bool,
    ) -> Result<(Option<Usage>, bool), UpstreamError> {
        if let Some(error) = self.error {
            return Err(error_event(provider, error, "error event in the stream"));
        }
        let usage = self.usage.map(|u| match PlainUsage::read(u) {
            Some(plain) => usage_of(&plain.usage, reasoning_apart),
            None => read_usage(provider, u, reasoning_apart),
        });
        Ok((usage, true))
    }
}

/// The OpenAI stream translator: chunks pass through; `[DONE]` is the last event.
#[derive(Debug)]
pub struct OpenAiStream {
    provider: String,
    reasoning_apart: bool,
}

impl StreamTranslator for OpenAiStream {
    fn event(&mut self, event: SseEvent, out: &mut Vec<Chunk>) -> Result<bool, UpstreamError> {
        if event.data == "[DONE]" {
            return Ok(true);
        }
        if let Some(chunk) = openai_chunk_with(&self.provider, event, self.reasoning_apart)? {
            out.push(chunk);
        }
        Ok(false)
    }

    fn end(&mut self, _out: &mut Vec<Chunk>) -> Result<(), UpstreamError> {
        Err(UpstreamError::protocol(
            &self.provider,
            "the stream ended before its last event",
        ))
    }
}

/// `stream_options` with `include_usage: true`, keeping any other option the client set.
fn with_usage(existing: Option<&RawValue>) -> Box<RawValue> {
    let mut map = existing
        .and_then(|raw| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get()).ok()
        })
        .unwrap_or_default();
    map.insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::value::to_raw_value(&map).unwrap_or_else(|_| {
        RawValue::from_string(r#"{"include_usage":true}"#.into()).unwrap_or_default()
    })
}

impl Adapter for OpenAiAdapter {
    fn wire(&self) -> WireFormat {
        WireFormat::OpenAi
    }

    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    async fn chat(&self, req: &ChatRequest, at: Attempt<'_>) -> Result<Reply, UpstreamError> {
        let body = self.body(&req.fields, at.upstream_model, false)?;
        self.complete("/chat/completions", body, at).await
    }

    async fn chat_stream(
        &self,
        req: &ChatRequest,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let body = self.body(&req.fields, at.upstream_model, true)?;
        self.stream("/chat/completions", body, at).await
    }

    async fn embeddings(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        let body = self.body(&req.fields, at.upstream_model, false)?;
        self.complete("/embeddings", body, at).await
    }

    async fn completions(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<Reply, UpstreamError> {
        let body = self.body(&req.fields, at.upstream_model, false)?;
        self.complete("/completions", body, at).await
    }

    async fn completions_stream(
        &self,
        req: &PassthroughRequest,
        at: Attempt<'_>,
    ) -> Result<StreamReply, UpstreamError> {
        let body = self.body(&req.fields, at.upstream_model, true)?;
        self.stream("/completions", body, at).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::providers::UpstreamKind;

    fn adapter(preset: &str, extra: &str) -> OpenAiAdapter {
        let toml = format!(
            "[providers.p]\npreset = \"{preset}\"\nbase_url = \"https://host.example/v1\"\napi_key = \"k\"\ncatalog = false\n{extra}"
        );
        let cfg = Config::from_toml(&toml, &|_| None).unwrap();
        OpenAiAdapter::new(cfg.providers[0].clone()).unwrap()
    }

    fn body_of(
        a: &OpenAiAdapter,
        req: &str,
        stream: bool,
    ) -> Result<serde_json::Value, UpstreamError> {
        let fields = RawObject::parse(req.as_bytes()).unwrap();
        a.body(&fields, "up", stream)
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn preset_quirks_shape_the_upstream_body() {
        let req = r#"{"model":"m","messages":[],"max_completion_tokens":9,"seed":3,"stream":true,"stream_options":{"include_usage":true}}"#;
        let mistral = body_of(&adapter("mistral", ""), req, true).unwrap();
        assert_eq!(
            mistral,
            serde_json::json!({"model":"up","messages":[],"max_tokens":9,"random_seed":3,"stream":true})
        );
        let openai = body_of(&adapter("openai", ""), req, true).unwrap();
        assert_eq!(openai["max_completion_tokens"], 9);
        assert_eq!(openai["stream_options"]["include_usage"], true);
        // A client that sent both names keeps its own `max_tokens`.
        let both = r#"{"model":"m","messages":[],"max_completion_tokens":9,"max_tokens":5}"#;
        let ds = body_of(&adapter("deepseek", ""), both, false).unwrap();
        assert_eq!(
            ds,
            serde_json::json!({"model":"up","messages":[],"max_tokens":5})
        );

        let groq = adapter("groq", "");
        let refused = |a: &OpenAiAdapter, req: &str| match body_of(a, req, false) {
            Err(e) if e.kind == UpstreamKind::Unsupported => {
                (e.param.unwrap_or_default(), e.provider)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(&groq, r#"{"model":"m","n":2}"#).0, "n");
        assert_eq!(
            refused(&groq, r#"{"model":"m","logprobs":true}"#).0,
            "logprobs"
        );
        assert!(body_of(&groq, r#"{"model":"m","n":1,"logprobs":false}"#, false).is_ok());
        assert_eq!(
            refused(&adapter("openai", ""), r#"{"model":"m","top_k":3}"#),
            ("top_k".into(), "p".into())
        );
    }

    #[test]
    fn azure_urls_name_the_deployment_and_api_version() {
        let a = adapter("azure", "");
        assert_eq!(
            a.url("/chat/completions", "gpt4o-prod").unwrap().to_string(),
            "https://host.example/v1/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
        );
        let v1 = adapter("azure", "api_version = \"v1\"");
        assert_eq!(
            v1.url("/embeddings", "e").unwrap().to_string(),
            "https://host.example/v1/openai/v1/embeddings"
        );
        assert_eq!(
            adapter("together", "")
                .url("/chat/completions", "x")
                .unwrap()
                .to_string(),
            "https://host.example/v1/chat/completions"
        );
    }

    #[test]
    fn kimi_usage_inside_the_last_choice_is_read() {
        let c = openai_chunk(
            "p",
            event(r#"{"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop","usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,"cached_tokens":4}}]}"#),
        )
        .unwrap()
        .unwrap();
        let u = c.usage.unwrap();
        assert_eq!((u.input, u.cached_input, u.output), (3, 4, 3));
        assert!(!c.usage_only);
    }

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: String::new(),
            data: data.into(),
        }
    }

    #[test]
    fn usage_only_chunk_is_marked() {
        let c = openai_chunk("p", event(r#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#))
            .unwrap()
            .unwrap();
        assert!(c.usage_only);
        assert_eq!(c.usage.unwrap().output, 2);
        let c = openai_chunk(
            "p",
            event(r#"{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#),
        )
        .unwrap()
        .unwrap();
        assert!(!c.usage_only && c.usage.is_none());
        assert!(openai_chunk("p", event("[DONE]")).unwrap().is_none());
    }

    #[test]
    fn one_read_of_a_reply_says_what_parse_usage_says() {
        let quirks = Quirks::default();
        let bodies: [&[u8]; 16] = [
            br#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
            br#"{"id":"x","usage":null}"#,
            br#"{"id":"x"}"#,
            br#"{"error":{"message":"overloaded","code":"busy"}}"#,
            br#"{"error":null,"usage":{"prompt_tokens":1}}"#,
            br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            br#"{"error":null,"error":null}"#,
            br#"{"us\u0061ge":{"prompt_tokens":4}}"#,
            br#"{"usage":{"prompt_tokens":-1}}"#,
            br#"{"usage":7}"#,
            br#"[]"#,
            br#"[{"prompt_tokens":5}]"#,
            b"{\"choices\":[{\"message\":{\"content\":\"\xff\"}}],\"usage\":{\"prompt_tokens\":6}}",
            br#"{"usage":{"prompt_tokens":1}} x"#,
            br#"not json"#,
            br#"{"usage":{"prompt_tokens":1},"model":{"nested":[1,2,{"deep":"usage"}]}}"#,
        ];
        for body in bodies {
            let once = read_reply_usage("p", &Bytes::from_static(body), &quirks)
                .map(|(usage, _)| usage)
                .map_err(|e| e.to_string());
            let peek = parse_usage("p", body, &quirks).map_err(|e| e.to_string());
            assert_eq!(once, peek, "{}", String::from_utf8_lossy(body));
        }
        let body = Bytes::from_static(br#"{"model":"m","usage":{"prompt_tokens":3}}"#);
        let (_, at) = read_reply_usage("p", &body, &quirks).unwrap();
        assert!(at.is_some(), "a plain reply says where its usage is");
    }

    /// A chunk's outcome, comparable: its usage and mark, or the error's text.
    fn outcome(
        read: Result<(Option<Usage>, bool), UpstreamError>,
    ) -> Result<(Option<Usage>, bool), String> {
        read.map_err(|e| e.to_string())
    }

    /// Chunks built of the members billing reads, values of every kind (usage objects
    /// plain and not, errors, choices with Kimi's usage), duplicates, escaped keys,
    /// whitespace, and text cut short or broken.
    fn chunk_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let value = prop_oneof![
            crate::api::valid::tests::json().prop_map(|v| v.to_string()),
            Just("null".to_string()),
            Just("[]".to_string()),
            Just("[ ]".to_string()),
            Just("7".to_string()),
            Just(r#""x""#.to_string()),
            Just(r#"{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}"#.to_string()),
            Just(r#"{"prompt_tokens":9,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}"#.to_string()),
            Just(r#"{"prompt_tokens":-1}"#.to_string()),
            Just(r#"{"prompt_tokens":1.5,"completion_tokens":"2"}"#.to_string()),
            Just(r#"{"prompt_tokens":3,"prompt_tokens":4}"#.to_string()),
            Just(r#"{}"#.to_string()),
            Just(r#"{"message":"overloaded","code":"busy"}"#.to_string()),
            Just(r#"[{"index":0,"delta":{},"finish_reason":"stop","usage":{"prompt_tokens":7,"completion_tokens":3}}]"#.to_string()),
            Just(r#"[{"index":0,"delta":{"content":"usage"}}]"#.to_string()),
        ];
        let key = prop_oneof![
            Just("usage"),
            Just("error"),
            Just("choices"),
            Just("id"),
            Just("model"),
            Just(r"us\u0061ge"),
            Just(r"err\u006fr"),
        ];
        let space = prop_oneof![Just(""), Just(" "), Just("\n\t")];
        (
            prop::collection::vec((key, space.clone(), value), 0..6),
            space,
            0u8..8,
            any::<prop::sample::Index>(),
        )
            .prop_map(|(members, outer, mutation, at)| {
                let body: Vec<String> = members
                    .iter()
                    .map(|(key, space, value)| format!("\"{key}\"{space}:{space}{value}"))
                    .collect();
                let mut text = format!("{outer}{{{}}}{outer}", body.join(","));
                let mut at = at.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match mutation {
                    0 => text.truncate(at),
                    1 => text.insert(at, '"'),
                    2 => text.insert(at, '}'),
                    3 => text.push_str(" x"),
                    _ => {}
                }
                text
            })
    }

    proptest::proptest! {
        #[test]
        fn a_chunk_reads_as_serde_read_it(data in chunk_text(), reasoning_apart: bool) {
            if let Some(plain) = PlainChunk::read(&data) {
                proptest::prop_assert_eq!(
                    outcome(plain.usage("p", reasoning_apart)),
                    outcome(chunk_by_serde("p", &data, reasoning_apart)),
                    "{}", data
                );
            }
        }
    }

    #[test]
    fn plain_chunks_are_read_without_serde() {
        let usage = r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let plain = PlainChunk::read(usage).unwrap();
        assert_eq!(
            plain.usage,
            Some(r#"{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}"#)
        );
        assert!(plain.error.is_none());
        for kimi in [
            r#"{"choices":[{"index":0,"usage":{"prompt_tokens":1}}]}"#,
            r#"{"usage":null,"usage":{"prompt_tokens":1}}"#,
            r#"{"us\u0061ge":{"prompt_tokens":1}}"#,
        ] {
            assert!(PlainChunk::read(kimi).is_none(), "{kimi}");
        }
    }

    #[test]
    fn error_event_is_an_error() {
        let err = openai_chunk(
            "p",
            event(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
        )
        .unwrap_err();
        assert!(err.status.is_some() && err.message == "overloaded");
    }

    #[test]
    fn error_fields_are_truncated() {
        let long = "x".repeat(2000);
        let body =
            format!(r#"{{"error":{{"message":"{long}","code":"bad","param":"temperature"}}}}"#);
        let (m, c, p) = error_fields(body.as_bytes());
        assert!(m.unwrap().len() <= MAX_MESSAGE + 3);
        assert_eq!(c.as_deref(), Some("bad"));
        assert_eq!(p.as_deref(), Some("temperature"));
    }
}
