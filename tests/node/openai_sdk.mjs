// The openai npm SDK against streamfn's OpenAI-compatible API: streaming and not, tools (with the
// SDK's own stream accumulator), and its typed errors for each status.
// Usage: node openai_sdk.mjs <echo url> <url of a server answering 429> <url failing mid-stream>
import assert from "node:assert/strict";
import OpenAI from "openai";

const [url, limitedUrl, brokenUrl] = process.argv.slice(2);
const client = (base) => new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
const openai = client(url);
const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const user = (content) => [{ role: "user", content }];

// Streaming text with a usage chunk.
const stream = await openai.chat.completions.create({
  model: "echo",
  messages: user("one two three"),
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
let usage;
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content ?? "";
  usage = chunk.usage ?? usage;
}
assert.equal(text, "one two three");
assert.equal(usage.completion_tokens, 3);

// Tool calls streamed, joined by the SDK's own helper.
const runner = openai.chat.completions.stream({
  model: "echo",
  messages: user('/call get_weather {"city": "Oslo"}\n/call get_weather {"city": "Rome"}'),
  tools: [WEATHER],
});
const final = await runner.finalChatCompletion();
const calls = final.choices[0].message.tool_calls;
assert.deepEqual(
  calls.map((c) => JSON.parse(c.function.arguments).city),
  ["Oslo", "Rome"],
);
assert.equal(final.choices[0].finish_reason, "tool_calls");

// The round trip, not streamed.
const answer = await openai.chat.completions.create({
  model: "echo/echo",
  tools: [WEATHER],
  messages: [
    ...user('/call get_weather {"city": "Oslo"}'),
    { role: "assistant", content: null, tool_calls: [calls[0]] },
    { role: "tool", tool_call_id: calls[0].id, content: "-3C" },
  ],
});
assert.equal(answer.choices[0].message.content, "get_weather returned -3C");

// Typed errors.
await assert.rejects(
  openai.chat.completions.create({ model: "echo", messages: user("x"), n: 2 }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === "n",
);
await assert.rejects(
  openai.chat.completions.create({ model: "nope/x", messages: user("x") }),
  (e) => e instanceof OpenAI.BadRequestError && /no model/.test(e.message),
);
await assert.rejects(
  client(limitedUrl).chat.completions.create({ model: "echo", messages: user("x"), stream: true }),
  (e) => e instanceof OpenAI.RateLimitError && e.headers.get("retry-after") === "3",
);
const broken = await client(brokenUrl).chat.completions.create({
  model: "echo",
  messages: user("x"),
  stream: true,
});
const got = [];
await assert.rejects(
  (async () => {
    for await (const chunk of broken) got.push(chunk.choices[0].delta.content);
  })(),
  (e) => e instanceof OpenAI.APIError && e.message.includes("it broke"),
);
assert.deepEqual(got, ["", "partial"]);

const models = [];
for await (const m of openai.models.list()) models.push(m.id);
assert.ok(models.includes("echo/echo"));
console.log(JSON.stringify({ ok: true, models }));
