"""A scripted mock backend that drives an agent's tool loop, in three wire formats:
OpenAI Chat Completions (`/v1/chat/completions`), OpenAI Responses (`/v1/responses`)
and Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`), each plain and
streamed. It is stateless: the reply to a request with tools is step N of the script,
where N is the number of tool results already in the conversation, so a client that
runs the tools it is asked to and sends the results back walks the script to its final
text. A request without tools (titles, summaries, quota probes) gets a short text.

Script steps: {"tool": name, "args": {...}} or {"text": "..."}. Every request is
appended to `requests.jsonl` in the working directory, for the tests to read.

Run: python mock_backend.py SCRIPT_JSON  → prints "listening on HOST:PORT".
"""

import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRIPT = json.loads(sys.argv[1]) if len(sys.argv) > 1 else [{"text": "Done."}]
LOG = sys.argv[2] if len(sys.argv) > 2 else "requests.jsonl"
LOCK = threading.Lock()
PLAIN_TEXT = "OK."


def tool_results(path, body):
    if path.endswith("/chat/completions"):
        return sum(1 for m in body.get("messages", []) if m.get("role") == "tool")
    if path.endswith("/responses"):
        items = body.get("input")
        if not isinstance(items, list):
            return 0
        return sum(1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output")
    n = 0
    for m in body.get("messages", []):
        if m.get("role") == "user" and isinstance(m.get("content"), list):
            n += sum(1 for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result")
    return n


def step_for(path, body):
    if not body.get("tools"):
        return {"text": PLAIN_TEXT}
    n = tool_results(path, body)
    return SCRIPT[min(n, len(SCRIPT) - 1)]


def usage_chat():
    return {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}


def chat_reply(step, model):
    msg = {"role": "assistant", "content": None}
    finish = "stop"
    if "tool" in step:
        msg["tool_calls"] = [{"id": "call_" + uuid.uuid4().hex[:12], "type": "function",
                              "function": {"name": step["tool"], "arguments": json.dumps(step["args"])}}]
        finish = "tool_calls"
    else:
        msg["content"] = step["text"]
    return {"id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
            "usage": usage_chat()}


def chat_chunks(step, model, usage):
    def chunk(delta, finish=None):
        return {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    out = [chunk({"role": "assistant", "content": ""})]
    if "tool" in step:
        args = json.dumps(step["args"])
        out.append(chunk({"tool_calls": [{"index": 0, "id": "call_" + uuid.uuid4().hex[:12], "type": "function",
                                          "function": {"name": step["tool"], "arguments": ""}}]}))
        half = len(args) // 2
        for piece in (args[:half], args[half:]):
            out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        out.append(chunk({}, "tool_calls"))
    else:
        words = step["text"].split(" ")
        for i, w in enumerate(words):
            out.append(chunk({"content": w if i == 0 else " " + w}))
        out.append(chunk({}, "stop"))
    if usage:
        out.append({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [], "usage": usage_chat()})
    return out


def response_output(step):
    if "tool" in step:
        return [{"type": "function_call", "id": "fc_" + uuid.uuid4().hex[:12], "call_id": "call_" + uuid.uuid4().hex[:12],
                 "name": step["tool"], "arguments": json.dumps(step["args"]), "status": "completed"}]
    return [{"type": "message", "id": "msg_" + uuid.uuid4().hex[:12], "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": step["text"], "annotations": [], "logprobs": []}]}]


def response_object(rid, body, status, output, usage):
    obj = {"id": rid, "object": "response", "created_at": 1, "status": status,
            "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"), "model": body.get("model"), "output": output,
            "parallel_tool_calls": True, "previous_response_id": None, "reasoning": None, "store": False,
            "temperature": 1, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": [dict({"strict": None, "parameters": None}, **t) for t in body.get("tools") or []], "top_p": 1, "truncation": "disabled", "metadata": {}}
    if usage is not None:
        obj["usage"] = usage
    return obj


def responses_events(step, body):
    usage = {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": 8,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 28}
    output = response_output(step)
    rid = "resp_" + uuid.uuid4().hex
    events = [("response.created", {"response": response_object(rid, body, "in_progress", [], None)})]
    item = output[0]
    if item["type"] == "function_call":
        events.append(("response.output_item.added", {"output_index": 0, "item": dict(item, arguments="", status="in_progress")}))
        events.append(("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": 0, "delta": item["arguments"]}))
        events.append(("response.function_call_arguments.done", {"item_id": item["id"], "output_index": 0, "name": item["name"], "arguments": item["arguments"]}))
    else:
        text = item["content"][0]["text"]
        events.append(("response.output_item.added", {"output_index": 0, "item": dict(item, status="in_progress", content=[])}))
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append(("response.content_part.added", {"item_id": item["id"], "output_index": 0, "content_index": 0, "part": part}))
        events.append(("response.output_text.delta", {"item_id": item["id"], "output_index": 0, "content_index": 0, "delta": text, "logprobs": []}))
        events.append(("response.output_text.done", {"item_id": item["id"], "output_index": 0, "content_index": 0, "text": text, "logprobs": []}))
        events.append(("response.content_part.done", {"item_id": item["id"], "output_index": 0, "content_index": 0, "part": item["content"][0]}))
    events.append(("response.output_item.done", {"output_index": 0, "item": item}))
    events.append(("response.completed", {"response": response_object(rid, body, "completed", output, usage)}))
    return [dict({"type": name, "sequence_number": i}, **data) for i, (name, data) in enumerate(events)], response_object(rid, body, "completed", output, usage)


def anthropic_message(step, model):
    if "tool" in step:
        content = [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:12], "name": step["tool"], "input": step["args"]}]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": step["text"]}]
        stop = "end_turn"
    return {"id": "msg_" + uuid.uuid4().hex[:12], "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 8, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}


def anthropic_events(step, model):
    msg = anthropic_message(step, model)
    start = dict(msg, content=[], stop_reason=None, usage={"input_tokens": 20, "output_tokens": 1})
    events = [("message_start", {"type": "message_start", "message": start})]
    block = msg["content"][0]
    if block["type"] == "tool_use":
        events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": dict(block, input={})}))
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}}))
    else:
        events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": block["text"]}}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None}, "usage": {"output_tokens": 8}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, obj, status=200):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, frames):
        data = "".join(frames).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send_json({"object": "list", "data": []})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?")[0]
        with LOCK, open(LOG, "a") as f:
            f.write(json.dumps({"path": path, "body": body}) + "\n")
        model = body.get("model", "mock")
        if path.endswith("/messages/count_tokens"):
            return self.send_json({"input_tokens": 42})
        step = step_for(path, body)
        stream = body.get("stream") is True
        if path.endswith("/chat/completions"):
            if not stream:
                return self.send_json(chat_reply(step, model))
            usage = (body.get("stream_options") or {}).get("include_usage")
            frames = [f"data: {json.dumps(c)}\n\n" for c in chat_chunks(step, model, usage)]
            return self.send_sse(frames + ["data: [DONE]\n\n"])
        if path.endswith("/responses"):
            events, whole = responses_events(step, body)
            if not stream:
                return self.send_json(whole)
            return self.send_sse([f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events])
        if path.endswith("/messages"):
            if not stream:
                return self.send_json(anthropic_message(step, model))
            return self.send_sse([f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in anthropic_events(step, model)])
        self.send_json({"error": {"message": f"unknown path {path}", "type": "invalid_request_error"}}, 404)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
