//! The Responses field behind a chat field. A translated request meets the chat layer
//! (an adapter that cannot express something, a chat backend rejecting it) as Chat
//! Completions, so a refusal there names a chat field (`messages[3].content[1]`,
//! `response_format`); the client sent Responses, and is told the field it sent
//! (`input[2].content[1]`, `text.format`). Read on the error path only: a request that
//! succeeds never walks its items a second time.

use serde_json::de::from_str;
use serde_json::value::RawValue;

use super::request::{item_kind, lands, ItemIn, Lands, ToolIn};
use super::scan;
use super::ResponsesRequest;

/// Where a chat message came from.
enum Origin {
    /// The system message `instructions` became.
    Instructions,
    /// Conversation item `at` (history first, then `input`) and the `function_call`
    /// items that became its tool calls, in order.
    Item {
        at: usize,
        kind: ItemKind,
        calls: Vec<usize>,
    },
}

/// The input item kinds that become chat messages.
#[derive(Clone, Copy)]
enum ItemKind {
    Message,
    Call,
    Output,
}

impl ResponsesRequest {
    /// The field of this request that chat field `chat` was translated from, written as
    /// OpenAI writes `param`; `chat` itself when it names no translated field (`model`,
    /// `temperature` and the other fields both APIs share).
    pub fn responses_param(&self, chat: &str) -> String {
        let at = chat.find(['.', '[']).unwrap_or(chat.len());
        let (head, rest) = chat.split_at(at);
        let mapped = match head {
            "max_tokens" | "max_completion_tokens" if rest.is_empty() => {
                Some("max_output_tokens".to_string())
            }
            "reasoning_effort" => Some(format!("reasoning.effort{rest}")),
            "response_format" => {
                let rest = rest.strip_prefix(".json_schema").unwrap_or(rest);
                Some(format!("text.format{rest}"))
            }
            // `safety_identifier` travels as chat's `user` when `user` is absent.
            "user" if self.sent("user").is_none() && self.sent("safety_identifier").is_some() => {
                Some(format!("safety_identifier{rest}"))
            }
            "tool_choice" => Some(format!("tool_choice{}", function_member(rest))),
            "tools" => self.tool_param(rest),
            "messages" => self.message_param(rest),
            _ => None,
        };
        mapped.unwrap_or_else(|| chat.to_string())
    }

    /// Field `key` of the client's body, unless absent or null.
    fn sent(&self, key: &str) -> Option<&RawValue> {
        self.native().get(key).filter(|v| v.get() != "null")
    }

    /// `tools{rest}` of the chat body: the function tools in order, a `namespace` tool's
    /// functions in its place, hosted tools left out (as `request::tools` lists them).
    fn tool_param(&self, rest: &str) -> Option<String> {
        let Some((i, member)) = index(rest) else {
            return Some(format!("tools{rest}"));
        };
        let list = scan::all(self.sent("tools")?.get(), ToolIn::read)?;
        let mut n = 0;
        for (k, tool) in list.iter().enumerate() {
            match tool.kind.as_ref() {
                "function" => {
                    if n == i {
                        return Some(format!("tools[{k}]{}", function_member(member)));
                    }
                    n += 1;
                }
                "namespace" => {
                    let inner = scan::all(tool.tools?, ToolIn::read)?;
                    for (m, f) in inner.iter().enumerate() {
                        if f.kind != "function" {
                            continue;
                        }
                        if n == i {
                            return Some(format!(
                                "tools[{k}].tools[{m}]{}",
                                function_member(member)
                            ));
                        }
                        n += 1;
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// `messages{rest}` of the chat body: the instructions, or the input item (a tool
    /// call: the `function_call` item) the message was built from.
    fn message_param(&self, rest: &str) -> Option<String> {
        let Some((i, member)) = index(rest) else {
            return Some(format!("input{rest}"));
        };
        let (at, kind, calls) = match self.origin(i)? {
            Origin::Instructions => return Some("instructions".to_string()),
            Origin::Item { at, kind, calls } => (at, kind, calls),
        };
        let (at, member) = match (kind, member) {
            (_, m) if m.starts_with(".tool_calls") => match index(&m[".tool_calls".len()..]) {
                Some((t, call)) => (*calls.get(t)?, call_member(call)),
                None => (at, String::new()),
            },
            (_, ".tool_call_id") => (at, ".call_id".to_string()),
            (_, ".role") => (at, ".role".to_string()),
            (ItemKind::Message, m) if m.starts_with(".content") => (
                at,
                format!(".content{}", part_member(&m[".content".len()..])),
            ),
            (ItemKind::Output, m) if m.starts_with(".content") => (
                at,
                format!(".output{}", part_member(&m[".content".len()..])),
            ),
            _ => (at, String::new()),
        };
        Some(self.item_path(at, &member))
    }

    /// The path of conversation item `at`'s `member`: in `input`, or the stored
    /// conversation `previous_response_id` named.
    fn item_path(&self, at: usize, member: &str) -> String {
        let input = self.sent("input").map(RawValue::get).unwrap_or_default();
        if !input.starts_with('[') {
            // A string input is one user message, the conversation's last item.
            return match self.items_len() == Some(at + 1) {
                true => "input".to_string(),
                false => "previous_response_id".to_string(),
            };
        }
        let sent = from_str::<Vec<&RawValue>>(input).map_or(0, |l| l.len());
        let history = self.items_len().unwrap_or(sent).saturating_sub(sent);
        match at.checked_sub(history) {
            Some(j) => format!("input[{j}]{member}"),
            None => "previous_response_id".to_string(),
        }
    }

    fn items_len(&self) -> Option<usize> {
        from_str::<Vec<&RawValue>>(self.items().get())
            .ok()
            .map(|l| l.len())
    }

    /// Where chat message `i` came from, as `request::to_chat` built the messages.
    fn origin(&self, i: usize) -> Option<Origin> {
        let instructions = self.sent("instructions").is_some();
        if instructions && i == 0 {
            return Some(Origin::Instructions);
        }
        let i = i - usize::from(instructions);
        let items = scan::all(self.items().get(), ItemIn::read)?;
        let mut origins: Vec<(usize, ItemKind, Vec<usize>)> = Vec::new();
        let mut open_assistant = false;
        for (at, item) in items.iter().enumerate() {
            let kind = item_kind(item)?;
            match lands(kind, item.role.as_deref(), &mut open_assistant) {
                Lands::Own => {
                    let (kind, calls) = match kind {
                        "function_call" => (ItemKind::Call, vec![at]),
                        "function_call_output" => (ItemKind::Output, Vec::new()),
                        _ => (ItemKind::Message, Vec::new()),
                    };
                    origins.push((at, kind, calls));
                }
                Lands::Joins => origins.last_mut()?.2.push(at),
                Lands::Nowhere => {}
            }
        }
        let (at, kind, calls) = origins.into_iter().nth(i)?;
        Some(Origin::Item { at, kind, calls })
    }
}

/// `[n]` at the start of `rest`: `n` and what follows it.
fn index(rest: &str) -> Option<(usize, &str)> {
    let rest = rest.strip_prefix('[')?;
    let end = rest.find(']')?;
    Some((rest[..end].parse().ok()?, &rest[end + 1..]))
}

/// A chat function's member as the Responses tool (or tool choice) has it flat:
/// `.function.name` → `.name`.
fn function_member(member: &str) -> &str {
    match member.strip_prefix(".function") {
        Some(inner) if inner.is_empty() || inner.starts_with('.') => inner,
        _ => member,
    }
}

/// A chat tool call's member on its `function_call` item.
fn call_member(member: &str) -> String {
    match member {
        ".id" => ".call_id".to_string(),
        ".type" => ".type".to_string(),
        m => function_member(m).to_string(),
    }
}

/// A chat content part's member on the Responses part: `[j].image_url.url` →
/// `[j].image_url`, `[j].file.file_data` → `[j].file_data`.
fn part_member(rest: &str) -> String {
    let Some((j, member)) = index(rest) else {
        return rest.to_string();
    };
    let member = match member {
        ".image_url.url" => ".image_url",
        ".file" => "",
        m => m.strip_prefix(".file").unwrap_or(m),
    };
    format!("[{j}]{member}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(body: &str, history: Option<&str>, chat: &str) -> String {
        let history = history.map(|h| RawValue::from_string(h.to_string()).unwrap());
        let req = ResponsesRequest::parse(body.as_bytes(), history.as_deref()).unwrap();
        req.responses_param(chat)
    }

    #[test]
    fn chat_fields_name_the_responses_field_they_came_from() {
        let body = r#"{"model":"m","instructions":"Be brief.","input":[
            {"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"https://x/a.png"}]},
            {"type":"reasoning","id":"rs_1","summary":[]},
            {"type":"message","role":"assistant","content":"ok"},
            {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
            {"type":"function_call","call_id":"c2","name":"ns__g","arguments":"{}"},
            {"type":"function_call_output","call_id":"c1","output":[{"type":"input_text","text":"1"},{"type":"input_image","image_url":"data:image/png;base64,AA"}]},
            {"type":"function_call","call_id":"c3","name":"f","arguments":"{}"},
            {"role":"developer","content":[{"type":"input_text","text":"x"},{"type":"input_file","file_data":"data:application/pdf;base64,AA"}]}],
            "tools":[{"type":"function","name":"f"},{"type":"namespace","name":"ns","tools":[{"type":"function","name":"g"},{"type":"function","name":"h"}]}],
            "safety_identifier":"u-1","text":{"format":{"type":"json_object"}},"reasoning":{"effort":"low"},"max_output_tokens":9}"#;
        let cases = [
            ("model", "model"),
            ("temperature", "temperature"),
            ("max_tokens", "max_output_tokens"),
            ("max_completion_tokens", "max_output_tokens"),
            ("reasoning_effort", "reasoning.effort"),
            ("response_format", "text.format"),
            ("response_format.type", "text.format.type"),
            ("response_format.json_schema.schema", "text.format.schema"),
            ("user", "safety_identifier"),
            ("tool_choice", "tool_choice"),
            ("tool_choice.function.name", "tool_choice.name"),
            ("tools", "tools"),
            ("tools[0].function.parameters", "tools[0].parameters"),
            ("tools[1]", "tools[1].tools[0]"),
            ("tools[2].function.name", "tools[1].tools[1].name"),
            ("tools[3]", "tools[3]"),
            ("messages", "input"),
            ("messages[0]", "instructions"),
            ("messages[0].content", "instructions"),
            (
                "messages[1].content[1].image_url.url",
                "input[0].content[1].image_url",
            ),
            ("messages[1].content[1].type", "input[0].content[1].type"),
            ("messages[1].role", "input[0].role"),
            ("messages[2]", "input[2]"),
            (
                "messages[2].tool_calls[0].function.arguments",
                "input[3].arguments",
            ),
            ("messages[2].tool_calls[1].function.name", "input[4].name"),
            ("messages[2].tool_calls[1].id", "input[4].call_id"),
            ("messages[3].tool_call_id", "input[5].call_id"),
            ("messages[3].content[1].type", "input[5].output[1].type"),
            (
                "messages[4].tool_calls[0].function.arguments",
                "input[6].arguments",
            ),
            ("messages[4].content", "input[6]"),
            (
                "messages[5].content[1].file.file_data",
                "input[7].content[1].file_data",
            ),
            ("messages[5].content[1].file", "input[7].content[1]"),
            ("messages[5].audio", "input[7]"),
            ("messages[9]", "messages[9]"),
            ("stop", "stop"),
        ];
        for (chat, responses) in cases {
            assert_eq!(mapped(body, None, chat), responses, "{chat}");
        }
    }

    #[test]
    fn items_of_the_stored_conversation_are_named_by_previous_response_id() {
        let history = r#"[{"role":"user","content":"hi"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"yo"}]}]"#;
        let list = r#"{"model":"m","previous_response_id":"resp_1","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"ftp://x"}]}]}"#;
        assert_eq!(
            mapped(list, Some(history), "messages[2].content[1]"),
            "input[0].content[1]"
        );
        assert_eq!(
            mapped(list, Some(history), "messages[1].content"),
            "previous_response_id"
        );
        let text = r#"{"model":"m","previous_response_id":"resp_1","input":"more"}"#;
        assert_eq!(mapped(text, Some(history), "messages[2].content"), "input");
        assert_eq!(
            mapped(text, Some(history), "messages[0]"),
            "previous_response_id"
        );
        assert_eq!(mapped(text, None, "messages[0].content"), "input");
    }
}
