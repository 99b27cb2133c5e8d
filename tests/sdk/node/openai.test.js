// The official `openai` Node SDK against the gateway (a real binary in front of
// `bazaar sim`), with every raw body and stream chunk validated against the OpenAI spec.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const bin = process.env.BAZAAR_BIN ?? join(root, "target", "debug", "bazaar");
const schemas = JSON.parse(readFileSync(join(root, "tests", "sdk", "openai-schemas.json"), "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "openai", components: schemas.components });
const validate = (name, body) => {
  const ok = ajv.validate({ $ref: `openai#/components/schemas/${name}` }, body);
  assert.ok(ok, `${name}: ${ajv.errorsText()}`);
};

const KEY = "bzr-node-client-key";
let sim, gateway, client, baseURL, dir;

const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

before(async () => {
  sim = spawn(bin, ["sim", "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "inherit"] });
  const simAddr = await new Promise((resolve) =>
    sim.stdout.once("data", (d) => resolve(d.toString().trim().replace("listening on ", ""))),
  );
  const port = await freePort();
  dir = mkdtempSync(join(tmpdir(), "bazaar-node-"));
  const config = join(dir, "bazaar.toml");
  writeFileSync(
    config,
    `[server]\nlisten = "127.0.0.1:${port}"\n[providers.sim]\nbase_url = "http://${simAddr}/v1"\ntier = "local"\nmodels = ["gpt-4o-mini", "text-embedding-3-small"]\n[[keys]]\nname = "node"\nkey = "${KEY}"\n`,
  );
  gateway = spawn(bin, ["serve", "--config", config], { stdio: "ignore" });
  baseURL = `http://127.0.0.1:${port}/v1`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  client = new OpenAI({ baseURL, apiKey: KEY, maxRetries: 0 });
});

after(async () => {
  // The gateway flushes its ledger into `dir` as it stops: the directory goes after it.
  const exited = gateway && gateway.exitCode === null ? new Promise((r) => gateway.once("exit", r)) : null;
  gateway?.kill("SIGTERM");
  sim?.kill("SIGTERM");
  await exited;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("chat, plain", async () => {
  const { data, response } = await client.chat.completions
    .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], seed: 1, n: 2 })
    .withResponse();
  assert.equal(response.headers.get("x-bazaar-backend"), "sim/gpt-4o-mini");
  assert.equal(data.choices.length, 2);
  const raw = await (await fetch(`${baseURL}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
  })).json();
  validate("CreateChatCompletionResponse", raw);
});

test("chat, streamed with tool-call deltas", async () => {
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "weather?" }],
    tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let name = "";
  let args = "";
  let usage = null;
  for await (const chunk of stream) {
    validate("CreateChatCompletionStreamResponse", chunk);
    for (const call of chunk.choices[0]?.delta?.tool_calls ?? []) {
      name ||= call.function?.name ?? "";
      args += call.function?.arguments ?? "";
    }
    usage = chunk.usage ?? usage;
  }
  assert.equal(name, "get_weather");
  assert.equal(JSON.parse(args).location, "Paris");
  assert.ok(usage.completion_tokens > 0);
});

test("embeddings and models", async () => {
  const emb = await client.embeddings.create({ model: "text-embedding-3-small", input: ["a", "b"], encoding_format: "float" });
  validate("CreateEmbeddingResponse", emb);
  assert.equal(emb.data.length, 2);
  const models = await client.models.list();
  assert.ok(models.data.some((m) => m.id === "gpt-4o-mini"));
  validate("ListModelsResponse", { object: "list", data: models.data });
});

test("errors map to the SDK's classes", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.error.type === "not_found_error",
  );
  const wrong = new OpenAI({ baseURL, apiKey: "bzr-wrong", maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
});
