//! `GET /v1/responses/{id}/input_items`: the items a stored response was generated from
//! (the conversation before its output, the history of `previous_response_id` included),
//! as OpenAI's item resources — every item with an `id` and a `type`, message content as
//! a list of parts — a page at a time (`after`, `limit`, `order`). Pure: the caller loads
//! the stored response.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::field_error;
use crate::api::ApiError;

/// The query string, as sent (numbers checked here, so errors name the parameter).
#[derive(Debug, Default, Deserialize)]
pub struct ItemsQuery {
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub order: Option<String>,
}

/// A checked query: at most `limit` items after `after`, newest first unless `ascending`.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    after: Option<String>,
    limit: usize,
    ascending: bool,
}

impl ItemsQuery {
    /// Checks the query: `limit` 1 to 100 (default 20), `order` `asc` or `desc` (default).
    pub fn page(self) -> Result<Page, ApiError> {
        let limit = match self.limit.as_deref() {
            None => 20,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| field_error("limit", "`limit` must be an integer from 1 to 100."))?,
        };
        let ascending = match self.order.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(other) => {
                return Err(field_error(
                    "order",
                    format!("`order` must be asc or desc, not `{other}`."),
                ))
            }
        };
        Ok(Page {
            after: self.after.filter(|a| !a.is_empty()),
            limit,
            ascending,
        })
    }
}

#[derive(Deserialize)]
struct OutputOf {
    #[serde(default)]
    output: Vec<serde::de::IgnoredAny>,
}

/// The `list` object of one page of the input items of response `id`: `response` is the
/// stored response object, `items` its conversation (input so far, then its output).
pub fn input_items(id: &str, response: &str, items: &str, page: &Page) -> Result<Value, ApiError> {
    let broken = |e: serde_json::Error| {
        ApiError::Internal(format!("The stored response {id} cannot be read: {e}."))
    };
    let outputs = serde_json::from_str::<OutputOf>(response)
        .map_err(broken)?
        .output
        .len();
    let mut all: Vec<Value> = serde_json::from_str(items).map_err(broken)?;
    all.truncate(all.len().saturating_sub(outputs));
    let tail = id.strip_prefix("resp_").unwrap_or(id);
    let mut resources: Vec<Value> = all
        .into_iter()
        .enumerate()
        .map(|(i, item)| resource(item, tail, i))
        .collect();
    if !page.ascending {
        resources.reverse();
    }
    let start = match &page.after {
        None => 0,
        Some(after) => {
            resources
                .iter()
                .position(|r| r["id"].as_str() == Some(after))
                .ok_or_else(|| {
                    field_error(
                        "after",
                        format!("`after`: response {id} has no input item `{after}`."),
                    )
                })?
                + 1
        }
    };
    let rest = resources.len().saturating_sub(start);
    let data: Vec<Value> = resources.into_iter().skip(start).take(page.limit).collect();
    let first_id = data.first().map(|r| r["id"].clone()).unwrap_or(Value::Null);
    let last_id = data.last().map(|r| r["id"].clone()).unwrap_or(Value::Null);
    Ok(json!({
        "object": "list",
        "data": data,
        "first_id": first_id,
        "last_id": last_id,
        "has_more": rest > page.limit,
    }))
}

/// One input item as an item resource. Items the client sent without an `id` get one
/// made from the response's id and their place, the same on every read (for `after`).
fn resource(item: Value, tail: &str, index: usize) -> Value {
    let Value::Object(mut item) = item else {
        return item;
    };
    let kind = match item.get("type").and_then(Value::as_str) {
        Some(k) => k.to_string(),
        None => "message".to_string(),
    };
    item.insert("type".into(), Value::from(kind.as_str()));
    if !item.get("id").is_some_and(Value::is_string) {
        let prefix = match kind.as_str() {
            "message" => "msg",
            "function_call" => "fc",
            "function_call_output" => "fco",
            "reasoning" => "rs",
            _ => "item",
        };
        item.insert(
            "id".into(),
            Value::from(format!("{prefix}_{tail}{index:04x}")),
        );
    }
    match kind.as_str() {
        "message" => message(&mut item),
        "function_call" | "function_call_output" => {
            item.entry("status").or_insert_with(|| "completed".into());
        }
        "reasoning" => {
            item.entry("summary").or_insert_with(|| json!([]));
        }
        _ => {}
    }
    Value::Object(item)
}

/// A message's content as a list of parts (`input_text` for what the client wrote,
/// `output_text` with its annotations for the assistant's turns) and its status.
fn message(item: &mut Map<String, Value>) {
    let assistant = item.get("role").and_then(Value::as_str) == Some("assistant");
    let text_part = if assistant {
        "output_text"
    } else {
        "input_text"
    };
    if let Some(Value::String(text)) = item.get("content") {
        let text = text.clone();
        item.insert("content".into(), json!([{"type": text_part, "text": text}]));
    }
    if assistant {
        if let Some(Value::Array(parts)) = item.get_mut("content") {
            for part in parts.iter_mut().filter_map(Value::as_object_mut) {
                if part.get("type").and_then(Value::as_str) == Some("output_text") {
                    part.entry("annotations").or_insert_with(|| json!([]));
                }
            }
        }
    }
    item.entry("status").or_insert_with(|| "completed".into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(after: Option<&str>, limit: Option<&str>, order: Option<&str>) -> Page {
        ItemsQuery {
            after: after.map(str::to_string),
            limit: limit.map(str::to_string),
            order: order.map(str::to_string),
        }
        .page()
        .unwrap()
    }

    const RESPONSE: &str = r#"{"id":"resp_ab","output":[{"type":"message","id":"msg_out","role":"assistant","content":[]}]}"#;
    const ITEMS: &str = r#"[{"role":"user","content":"hi"},
        {"type":"message","role":"assistant","content":"hello"},
        {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
        {"type":"function_call_output","call_id":"c1","output":"ok"},
        {"type":"message","id":"msg_out","role":"assistant","content":[]}]"#;

    #[test]
    fn input_items_are_resources_newest_first_without_the_output() {
        let list = input_items("resp_ab", RESPONSE, ITEMS, &page(None, None, None)).unwrap();
        assert_eq!(list["object"], "list");
        assert_eq!(list["has_more"], false);
        let data = list["data"].as_array().unwrap();
        assert_eq!(data.len(), 4);
        assert_eq!(data[0]["type"], "function_call_output");
        assert_eq!(data[0]["id"], "fco_ab0003");
        assert_eq!(data[3]["id"], "msg_ab0000");
        assert_eq!(
            data[3]["content"],
            json!([{"type": "input_text", "text": "hi"}])
        );
        assert_eq!(
            data[2]["content"],
            json!([{"type": "output_text", "text": "hello", "annotations": []}])
        );
        assert_eq!(list["first_id"], "fco_ab0003");
        assert_eq!(list["last_id"], "msg_ab0000");
    }

    #[test]
    fn pages_follow_after_in_either_order() {
        let first = input_items(
            "resp_ab",
            RESPONSE,
            ITEMS,
            &page(None, Some("3"), Some("asc")),
        )
        .unwrap();
        assert_eq!(first["has_more"], true);
        assert_eq!(first["last_id"], "fc_ab0002");
        let next = input_items(
            "resp_ab",
            RESPONSE,
            ITEMS,
            &page(Some("fc_ab0002"), Some("3"), Some("asc")),
        )
        .unwrap();
        assert_eq!(next["has_more"], false);
        assert_eq!(next["data"].as_array().unwrap().len(), 1);
        assert_eq!(next["first_id"], "fco_ab0003");
        let missing = input_items("resp_ab", RESPONSE, ITEMS, &page(Some("nope"), None, None));
        assert!(
            matches!(missing, Err(ApiError::InvalidRequest { param: Some(p), .. }) if p == "after")
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (limit, order, param) in [
            (Some("0"), None, "limit"),
            (Some("101"), None, "limit"),
            (Some("x"), None, "limit"),
            (None, Some("sideways"), "order"),
        ] {
            let q = ItemsQuery {
                after: None,
                limit: limit.map(str::to_string),
                order: order.map(str::to_string),
            };
            assert!(
                matches!(q.page(), Err(ApiError::InvalidRequest { param: Some(p), .. }) if p == param),
                "{limit:?} {order:?}"
            );
        }
    }
}
