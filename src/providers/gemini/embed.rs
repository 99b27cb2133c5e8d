//! OpenAI embeddings request ↔ Gemini `batchEmbedContents`: one request per input text,
//! `dimensions` as `outputDimensionality`; the reply's vectors become OpenAI's `data`
//! (floats, or base64 little-endian f32 when asked). Gemini reports no token usage.

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::super::chat::unsupported;
use super::super::{Reply, UpstreamError, UpstreamMeta};
use super::model_path;
use crate::api::openai::{PassthroughRequest, GATEWAY_FIELDS};

/// An upstream body and how to write its reply.
#[derive(Debug)]
pub struct Built {
    pub body: Vec<u8>,
    /// The client asked for `encoding_format: base64`.
    pub base64: bool,
}

#[derive(Serialize)]
struct Batch<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: EmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct EmbedContent<'a> {
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

/// Builds the `batchEmbedContents` body for `req` sent to `model`.
pub fn build(
    req: &PassthroughRequest,
    model: &str,
    provider: &str,
) -> Result<Built, UpstreamError> {
    let mut texts: Vec<Cow<str>> = Vec::new();
    let mut dimensions = None;
    let mut base64 = false;
    for (key, raw) in req.fields.iter() {
        match key {
            "model" | "user" => {}
            "input" => {
                texts = match serde_json::from_str::<Input>(raw.get()) {
                    Ok(Input::One(s)) => vec![s],
                    Ok(Input::Many(v)) => v,
                    Err(_) => {
                        return Err(unsupported(
                            provider,
                            key,
                            "Gemini embeds text only; token arrays cannot be expressed",
                        ))
                    }
                }
            }
            "dimensions" => dimensions = serde_json::from_str(raw.get()).ok(),
            "encoding_format" => base64 = raw.get() == "\"base64\"",
            k if GATEWAY_FIELDS.contains(&k) => {}
            other => {
                return Err(unsupported(
                    provider,
                    other,
                    "is not expressible in Gemini's embeddings API",
                ))
            }
        }
    }
    let model = format!("models/{}", model_path(model));
    let batch = Batch {
        requests: texts
            .iter()
            .map(|t| EmbedRequest {
                model: &model,
                content: EmbedContent {
                    parts: [TextPart { text: t }],
                },
                output_dimensionality: dimensions,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&batch)
        .map_err(|e| unsupported(provider, "input", format!("cannot be written: {e}")))?;
    Ok(Built { body, base64 })
}

#[derive(Deserialize)]
struct BatchReply {
    #[serde(default)]
    embeddings: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    #[serde(default)]
    values: Vec<f32>,
}

#[derive(Serialize)]
struct ListOut<'a> {
    object: &'static str,
    data: Vec<ItemOut>,
    model: &'a str,
    usage: UsageOut,
}

#[derive(Serialize)]
struct ItemOut {
    object: &'static str,
    index: usize,
    embedding: serde_json::Value,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// Writes the OpenAI embeddings list for a `batchEmbedContents` reply (usage: none reported).
pub fn parse_reply(
    provider: &str,
    body: &[u8],
    model: &str,
    base64: bool,
    meta: UpstreamMeta,
) -> Result<Reply, UpstreamError> {
    let reply: BatchReply = serde_json::from_slice(body).map_err(|e| {
        UpstreamError::protocol(
            provider,
            format!("the embeddings reply cannot be read ({e})"),
        )
    })?;
    let data = reply
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, e)| ItemOut {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = e.values.iter().flat_map(|f| f.to_le_bytes()).collect();
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::Value::from(e.values)
            },
        })
        .collect();
    let out = ListOut {
        object: "list",
        data,
        model,
        usage: UsageOut {
            prompt_tokens: 0,
            total_tokens: 0,
        },
    };
    Ok(Reply {
        body: Bytes::from(serde_json::to_vec(&out).unwrap_or_default()),
        usage: None,
        meta,
        usage_at: None,
    })
}
