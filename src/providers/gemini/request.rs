//! OpenAI chat request → Gemini `generateContent` body. Roles become `user`/`model`,
//! system turns `systemInstruction`, tools `functionDeclarations` (JSON Schema as
//! `parametersJsonSchema`), tool results `functionResponse` parts named after the call
//! they answer. Whatever Gemini cannot express is refused with the field's path.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::super::chat::{
    self, is_off, split_data_url, unsupported, ContentIn, MessageIn, PartIn, ToolChoiceIn,
    IGNORED_FIELDS,
};
use super::super::UpstreamError;
use super::signature;
use crate::api::openai::{ChatRequest, GATEWAY_FIELDS};

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tools<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_data: Option<Blob<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<FunctionCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_response: Option<FunctionResponse<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'a> {
    mime_type: Cow<'a, str>,
    data: Cow<'a, str>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    name: Cow<'a, str>,
    args: Box<RawValue>,
}

#[derive(Serialize)]
struct FunctionResponse<'a> {
    name: Cow<'a, str>,
    response: Box<RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tools<'a> {
    function_declarations: Vec<Declaration<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Declaration<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: CallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_function_names: Vec<Cow<'a, str>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    thinking_budget: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    include_thoughts: bool,
}

/// Thinking budgets for OpenAI's `reasoning_effort` (0 turns thinking off where the model allows).
fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "none" | "minimal" => Some(0),
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

/// Builds the `generateContent` body for `req` (the model travels in the URL).
pub fn build(req: &ChatRequest, provider: &str) -> Result<Vec<u8>, UpstreamError> {
    let fields = &req.fields;
    let mut body = Body::default();
    let config = &mut body.generation_config;
    config.max_output_tokens = req.max_tokens;
    let mut choice = None;
    for (key, raw) in fields.iter() {
        match key {
            "model" | "messages" | "stream" | "max_tokens" | "max_completion_tokens" => {}
            "temperature" => config.temperature = chat::number(raw, provider, key)?,
            "top_p" => config.top_p = chat::number(raw, provider, key)?,
            "top_k" => config.top_k = chat::integer(raw, provider, key)?,
            "presence_penalty" => config.presence_penalty = chat::number(raw, provider, key)?,
            "frequency_penalty" => config.frequency_penalty = chat::number(raw, provider, key)?,
            "seed" => {
                if raw.get() != "null" {
                    config.seed = Some(
                        serde_json::from_str(raw.get())
                            .map_err(|_| unsupported(provider, key, "must be an integer"))?,
                    );
                }
            }
            "n" => {
                config.candidate_count = chat::integer(raw, provider, key)?.filter(|n| *n > 1);
            }
            "stop" => config.stop_sequences = chat::stop(raw, provider)?,
            "tools" => body.tools = tools(raw, provider)?,
            "tool_choice" => choice = Some(chat::tool_choice(raw, provider)?),
            "parallel_tool_calls" => {
                if raw.get() == "false" {
                    return Err(unsupported(
                        provider,
                        key,
                        "Gemini cannot be limited to one tool call per turn",
                    ));
                }
            }
            "response_format" => response_format(raw, provider, config)?,
            "reasoning_effort" => {
                let effort: Cow<str> = serde_json::from_str(raw.get())
                    .map_err(|_| unsupported(provider, key, "must be a string"))?;
                let budget = thinking_budget(&effort).ok_or_else(|| {
                    unsupported(
                        provider,
                        key,
                        format!("`{effort}` is not none, minimal, low, medium or high"),
                    )
                })?;
                config.thinking_config = Some(ThinkingConfig {
                    thinking_budget: budget,
                    include_thoughts: budget > 0,
                });
            }
            "thinking" => config.thinking_config = Some(thinking(raw, provider)?),
            "logit_bias" | "logprobs" | "top_logprobs" => {
                if !is_off(raw) {
                    return Err(unsupported(
                        provider,
                        key,
                        "log probabilities cannot be expressed through the Gemini adapter",
                    ));
                }
            }
            "modalities" => {
                let list: Vec<Cow<str>> = serde_json::from_str(raw.get()).unwrap_or_default();
                if list.iter().any(|m| m != "text") {
                    return Err(unsupported(
                        provider,
                        key,
                        "only text replies are translated",
                    ));
                }
            }
            k if GATEWAY_FIELDS.contains(&k) || IGNORED_FIELDS.contains(&k) || k == "user" => {}
            other => {
                return Err(unsupported(
                    provider,
                    other,
                    "is not expressible in the Gemini generateContent API",
                ))
            }
        }
    }
    body.tool_config = choice.map(|c| ToolConfig {
        function_calling_config: match c {
            ToolChoiceIn::Auto => CallingConfig {
                mode: "AUTO",
                allowed_function_names: Vec::new(),
            },
            ToolChoiceIn::None => CallingConfig {
                mode: "NONE",
                allowed_function_names: Vec::new(),
            },
            ToolChoiceIn::Required => CallingConfig {
                mode: "ANY",
                allowed_function_names: Vec::new(),
            },
            ToolChoiceIn::Function(name) => CallingConfig {
                mode: "ANY",
                allowed_function_names: vec![name],
            },
        },
    });
    let raw_messages = fields
        .get("messages")
        .ok_or_else(|| unsupported(provider, "messages", "is required"))?;
    let messages = chat::messages(raw_messages, provider)?;
    let (system, contents) = contents(&messages, provider)?;
    body.system_instruction = system;
    body.contents = contents;
    serde_json::to_vec(&body)
        .map_err(|e| unsupported(provider, "messages", format!("cannot be written: {e}")))
}

fn response_format<'a>(
    raw: &'a RawValue,
    provider: &str,
    config: &mut GenerationConfig<'a>,
) -> Result<(), UpstreamError> {
    #[derive(serde::Deserialize)]
    struct Format<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        json_schema: Option<Schema<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Schema<'a> {
        #[serde(borrow, default)]
        schema: Option<&'a RawValue>,
    }
    let format: Format = serde_json::from_str(raw.get())
        .map_err(|_| unsupported(provider, "response_format", "must be an object with a type"))?;
    match format.kind.as_ref() {
        "text" => {}
        "json_object" => config.response_mime_type = Some("application/json"),
        "json_schema" => {
            config.response_mime_type = Some("application/json");
            config.response_json_schema =
                Some(format.json_schema.and_then(|s| s.schema).ok_or_else(|| {
                    unsupported(
                        provider,
                        "response_format.json_schema.schema",
                        "is required",
                    )
                })?);
        }
        other => {
            return Err(unsupported(
                provider,
                "response_format.type",
                format!("`{other}` is not text, json_object or json_schema"),
            ))
        }
    }
    Ok(())
}

/// Anthropic's `thinking` object (`enabled` with `budget_tokens`, or `disabled`).
fn thinking(raw: &RawValue, provider: &str) -> Result<ThinkingConfig, UpstreamError> {
    #[derive(serde::Deserialize)]
    struct Thinking {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        budget_tokens: Option<u64>,
    }
    let t: Thinking = serde_json::from_str(raw.get())
        .map_err(|_| unsupported(provider, "thinking", "must be {type, budget_tokens}"))?;
    let budget = match t.kind.as_str() {
        "disabled" => 0,
        _ => t.budget_tokens.unwrap_or(1024),
    };
    Ok(ThinkingConfig {
        thinking_budget: budget,
        include_thoughts: budget > 0,
    })
}

fn tools<'a>(raw: &'a RawValue, provider: &str) -> Result<Vec<Tools<'a>>, UpstreamError> {
    let list: Vec<chat::ToolIn<'a>> = serde_json::from_str(raw.get())
        .map_err(|e| unsupported(provider, "tools", format!("cannot be read: {e}")))?;
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let declarations = list
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.kind != "function" {
                return Err(unsupported(
                    provider,
                    format!("tools[{i}].type"),
                    format!(
                        "`{}` tools cannot be expressed; only function tools",
                        t.kind
                    ),
                ));
            }
            let f = t.function.ok_or_else(|| {
                unsupported(provider, format!("tools[{i}].function"), "is required")
            })?;
            Ok(Declaration {
                name: f.name,
                description: f.description,
                parameters_json_schema: f.parameters,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![Tools {
        function_declarations: declarations,
    }])
}

type Contents<'a> = (Option<Content<'a>>, Vec<Content<'a>>);

/// Turns OpenAI messages into `systemInstruction` and alternating contents.
fn contents<'a>(messages: &[MessageIn<'a>], provider: &str) -> Result<Contents<'a>, UpstreamError> {
    let mut system: Vec<Part<'a>> = Vec::new();
    let mut out: Vec<Content<'a>> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        if m.audio.is_some() || m.function_call.is_some() {
            return Err(unsupported(
                provider,
                path,
                "audio replies and the legacy function_call cannot be expressed",
            ));
        }
        let content = chat::content(m.content, provider, &format!("{path}.content"))?;
        let (role, parts) = match m.role.as_ref() {
            "system" | "developer" => {
                system.extend(user_parts(content, provider, &path, true)?);
                continue;
            }
            "user" => ("user", user_parts(content, provider, &path, false)?),
            "assistant" => ("model", model_parts(m, content, provider, &path)?),
            "tool" => (
                "user",
                vec![tool_result(m, content, messages, provider, &path)?],
            ),
            other => {
                return Err(unsupported(
                    provider,
                    format!("{path}.role"),
                    format!("`{other}` turns cannot be expressed"),
                ))
            }
        };
        match out.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.extend(parts),
            _ => out.push(Content {
                role: Some(role),
                parts,
            }),
        }
    }
    let system = (!system.is_empty()).then_some(Content {
        role: None,
        parts: system,
    });
    Ok((system, out))
}

fn user_parts<'a>(
    content: ContentIn<'a>,
    provider: &str,
    path: &str,
    text_only: bool,
) -> Result<Vec<Part<'a>>, UpstreamError> {
    Ok(match content {
        ContentIn::None => Vec::new(),
        ContentIn::Text(text) => vec![Part {
            text: Some(text),
            ..Part::default()
        }],
        ContentIn::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.into_iter().enumerate() {
                let field = format!("{path}.content[{j}]");
                let p = part_of(part, provider, &field)?;
                if text_only && p.text.is_none() {
                    return Err(unsupported(
                        provider,
                        field,
                        "Gemini's system instruction takes text only",
                    ));
                }
                out.push(p);
            }
            out
        }
    })
}

fn part_of<'a>(part: PartIn<'a>, provider: &str, field: &str) -> Result<Part<'a>, UpstreamError> {
    match part.kind.as_ref() {
        "text" | "input_text" => Ok(Part {
            text: Some(part.text.unwrap_or_default()),
            ..Part::default()
        }),
        "image_url" => {
            let url = part.image_url().ok_or_else(|| {
                unsupported(provider, format!("{field}.image_url"), "needs a url")
            })?;
            inline(url, provider, &format!("{field}.image_url.url"))
        }
        "file" => {
            let data = part.file.and_then(|f| f.file_data).ok_or_else(|| {
                unsupported(
                    provider,
                    format!("{field}.file"),
                    "only inline file_data (a data: URL) can be expressed",
                )
            })?;
            inline(data, provider, &format!("{field}.file.file_data"))
        }
        other => Err(unsupported(
            provider,
            format!("{field}.type"),
            format!("`{other}` content cannot be expressed through the Gemini adapter"),
        )),
    }
}

/// Inline media from a `data:` URL; Gemini cannot fetch arbitrary URLs itself.
fn inline<'a>(url: Cow<'a, str>, provider: &str, field: &str) -> Result<Part<'a>, UpstreamError> {
    let (mime_type, data) = split_data_url(url).map_err(|_| {
        unsupported(
            provider,
            field,
            "Gemini takes media inline: send a base64 data: URL",
        )
    })?;
    Ok(Part {
        inline_data: Some(Blob { mime_type, data }),
        ..Part::default()
    })
}

fn model_parts<'a>(
    m: &MessageIn<'a>,
    content: ContentIn<'a>,
    provider: &str,
    path: &str,
) -> Result<Vec<Part<'a>>, UpstreamError> {
    let mut parts = Vec::new();
    match content {
        ContentIn::None => {}
        ContentIn::Text(text) => {
            if !text.is_empty() {
                parts.push(Part {
                    text: Some(text),
                    ..Part::default()
                });
            }
        }
        ContentIn::Parts(list) => {
            for (j, part) in list.into_iter().enumerate() {
                let text = match part.kind.as_ref() {
                    "text" => part.text.unwrap_or_default(),
                    "refusal" => part.refusal.unwrap_or_default(),
                    other => {
                        return Err(unsupported(
                            provider,
                            format!("{path}.content[{j}].type"),
                            format!("`{other}` content cannot be expressed in a model turn"),
                        ))
                    }
                };
                parts.push(Part {
                    text: Some(text),
                    ..Part::default()
                });
            }
        }
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let args = call.function.arguments.trim();
        let args = RawValue::from_string(if args.is_empty() { "{}" } else { args }.to_string())
            .ok()
            .filter(|v| v.get().starts_with('{'))
            .ok_or_else(|| {
                unsupported(
                    provider,
                    format!("{path}.tool_calls[{j}].function.arguments"),
                    "must be a JSON object for Gemini",
                )
            })?;
        parts.push(Part {
            function_call: Some(FunctionCall {
                name: call.function.name.clone(),
                args,
            }),
            thought_signature: signature::decode(&call.id),
            ..Part::default()
        });
    }
    Ok(parts)
}

/// A tool result as a `functionResponse` part, named after the call it answers.
fn tool_result<'a>(
    m: &MessageIn<'a>,
    content: ContentIn<'a>,
    history: &[MessageIn<'a>],
    provider: &str,
    path: &str,
) -> Result<Part<'a>, UpstreamError> {
    let id = m
        .tool_call_id
        .as_deref()
        .ok_or_else(|| unsupported(provider, format!("{path}.tool_call_id"), "is required"))?;
    let name = history
        .iter()
        .rev()
        .flat_map(|h| h.tool_calls.iter().flatten())
        .find(|c| c.id == id)
        .map(|c| c.function.name.clone())
        .ok_or_else(|| {
            unsupported(
                provider,
                format!("{path}.tool_call_id"),
                format!("`{id}` answers no earlier tool call; Gemini needs the function's name"),
            )
        })?;
    let text: Cow<str> = match content {
        ContentIn::Text(t) => t,
        ContentIn::None => Cow::Borrowed(""),
        ContentIn::Parts(parts) => {
            let mut joined = String::new();
            for (j, p) in parts.into_iter().enumerate() {
                if p.kind != "text" {
                    return Err(unsupported(
                        provider,
                        format!("{path}.content[{j}].type"),
                        "Gemini tool results take text only",
                    ));
                }
                joined.push_str(p.text.as_deref().unwrap_or_default());
            }
            Cow::Owned(joined)
        }
    };
    // `response` must be an object: a JSON object result is sent as is, anything else wrapped.
    let response = match RawValue::from_string(text.to_string()) {
        Ok(v) if v.get().trim_start().starts_with('{') => v,
        _ => serde_json::value::to_raw_value(&serde_json::json!({ "content": text.as_ref() }))
            .map_err(|e| unsupported(provider, format!("{path}.content"), e.to_string()))?,
    };
    Ok(Part {
        function_response: Some(FunctionResponse { name, response }),
        ..Part::default()
    })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
