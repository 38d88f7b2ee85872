// The @anthropic-ai/sdk npm package against streamfn's Messages API: streaming (its
// MessageStream and its events) and not, a tool round trip with the SDK's own accumulator,
// thinking sent back, count_tokens, and its typed errors for each status.
// Usage: node anthropic_sdk.mjs <echo url> <url answering 429> <url answering 529>
//        <url failing mid-stream>
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";

const [url, limitedUrl, overloadedUrl, brokenUrl] = process.argv.slice(2);
const client = (base) => new Anthropic({ baseURL: base, apiKey: "unused", maxRetries: 0 });
const anthropic = client(url);
const WEATHER = {
  name: "get_weather",
  description: "Current weather in a city",
  input_schema: {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
  },
};
const user = (content) => [{ role: "user", content }];

// Streaming text, with the helper's events and its final message.
const texts = [];
const stream = anthropic.messages
  .stream({ model: "echo", max_tokens: 100, messages: user("one two three") })
  .on("text", (text) => texts.push(text));
const message = await stream.finalMessage();
assert.deepEqual(texts, ["one", " two", " three"]);
assert.equal(message.content[0].text, "one two three");
assert.equal(message.stop_reason, "end_turn");
assert.equal(message.usage.output_tokens, 3);

// The raw events, with `stream: true`: each one Anthropic's.
const raw = await anthropic.messages.create({
  model: "echo",
  max_tokens: 100,
  messages: user("a b"),
  stream: true,
});
const types = [];
for await (const event of raw) types.push(event.type);
assert.deepEqual(types, [
  "message_start",
  "content_block_start",
  "content_block_delta",
  "content_block_delta",
  "content_block_stop",
  "message_delta",
  "message_stop",
]);

// A tool call streamed as JSON fragments, joined by the SDK, then the round trip.
const ask = user('Checking.\n/call get_weather {"city": "Oslo"}');
const fragments = [];
const toolStream = anthropic.messages
  .stream({ model: "echo", max_tokens: 100, messages: ask, tools: [WEATHER] })
  .on("inputJson", (partial) => fragments.push(partial));
const called = await toolStream.finalMessage();
assert.equal(called.stop_reason, "tool_use");
const call = called.content.find((b) => b.type === "tool_use");
assert.deepEqual(call.input, { city: "Oslo" });
assert.ok(fragments.length > 1, "the arguments stream in fragments");
const answer = await anthropic.messages.create({
  model: "echo",
  max_tokens: 100,
  tools: [WEATHER],
  messages: [
    ...ask,
    { role: "assistant", content: called.content },
    { role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: "cold" }] },
  ],
});
assert.equal(answer.content[0].text, "get_weather returned cold");

// Thinking: its signature arrives, and the block goes back (echo checks the signature).
const thinking = await anthropic.beta.messages
  .stream({
    model: "echo",
    max_tokens: 32000,
    thinking: { type: "adaptive" },
    output_config: { effort: "low" },
    betas: ["interleaved-thinking-2025-05-14"],
    messages: user("think first"),
  })
  .finalMessage();
const [block, text] = thinking.content;
assert.equal(block.type, "thinking");
assert.match(block.signature, /^echo\./);
assert.equal(text.text, "think first");
const again = await anthropic.messages.create({
  model: "echo",
  max_tokens: 100,
  thinking: { type: "adaptive" },
  messages: [
    ...user("think first"),
    { role: "assistant", content: thinking.content },
    ...user("and again"),
  ],
});
assert.equal(again.content.at(-1).text, "and again");

// count_tokens: an estimate where no provider counts, marked as one.
const counted = await anthropic.messages.countTokens({ model: "echo", messages: user("hi") });
assert.equal(counted.input_tokens, 1);
assert.equal(counted.estimated, true);

// Typed errors before the stream: each status's class.
const refused = async (base, body = {}) => {
  try {
    await client(base).messages.create({ model: "echo", max_tokens: 9, messages: user("hi"), ...body });
  } catch (error) {
    return error;
  }
  assert.fail("no error");
};
const limited = await refused(limitedUrl);
assert.ok(limited instanceof Anthropic.RateLimitError, String(limited));
assert.equal(limited.headers.get("retry-after"), "3");
assert.equal(limited.error.error.type, "rate_limit_error");
const overloaded = await refused(overloadedUrl);
assert.ok(overloaded instanceof Anthropic.InternalServerError);
assert.equal(overloaded.status, 529);
assert.equal(overloaded.error.error.type, "overloaded_error");
const missing = await refused(url, { model: "echo/none" });
assert.ok(missing instanceof Anthropic.NotFoundError);
const bad = await refused(url, { messages: [] });
assert.ok(bad instanceof Anthropic.BadRequestError);
assert.equal(bad.error.error.type, "invalid_request_error");

// A failure after the first token: an `error` event, which the SDK throws.
let got = "";
await assert.rejects(async () => {
  const broken = client(brokenUrl).messages.stream({
    model: "echo",
    max_tokens: 9,
    messages: user("hi"),
  });
  broken.on("text", (t) => (got += t));
  await broken.finalMessage();
}, /it broke/);
assert.equal(got, "partial");

console.log(JSON.stringify({ ok: true, tool: call.name, signature: block.signature.slice(0, 5) }));
