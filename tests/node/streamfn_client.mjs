// streamfn's own JavaScript client (functions/streamfn/static/streamfn.js) in Node.
// Usage: node streamfn_client.mjs <echo url> <url failing mid-stream> <slow echo url>
import assert from "node:assert/strict";
import { chat, parseEventStream, StreamfnError } from "../../functions/streamfn/static/streamfn.js";

const [baseUrl, brokenUrl, slowUrl] = process.argv.slice(2);
const user = (content) => ({ role: "user", content });

// The async iterator, and the result with a message ready for the next request.
const stream = chat({ messages: [user("one two three")] }, { baseUrl });
const texts = [];
for await (const event of stream) if (event.type === "text") texts.push(event.text);
assert.deepEqual(texts, ["one", " two", " three"]);
const result = await stream.result;
assert.equal(result.finishReason, "stop");
assert.deepEqual(result.message, { role: "assistant", content: "one two three" });
assert.equal(result.usage.output_tokens, 3);
assert.match(result.requestId, /^[0-9a-f]{32}$/);

// Callbacks: reasoning and a tool call, then the round trip with the tool's result.
const WEATHER = { name: "get_weather", parameters: { type: "object" } };
const seen = [];
const ask = user('/call get_weather {"city": "Paris"}');
const first = await chat(
  { messages: [ask], tools: [WEATHER], reasoning: { effort: "low" } },
  {
    baseUrl,
    onReasoning: (t) => seen.push(["reasoning", t]),
    onReasoningDone: (b) => seen.push(["reasoning-done", b.type]),
    onToolCallStart: (c) => seen.push(["start", c.name]),
    onToolCallDelta: (d) => seen.push(["delta", d.arguments]),
    onToolCall: (c) => seen.push(["call", c.name, JSON.parse(c.arguments)]),
    onUsage: (u) => seen.push(["usage", u.reasoning_tokens > 0]),
  },
).result;
assert.deepEqual(seen.filter(([k]) => k === "start"), [["start", "get_weather"]]);
assert.equal(
  seen.filter(([k]) => k === "delta").map(([, a]) => a).join(""),
  '{"city": "Paris"}',
);
assert.deepEqual(seen.find(([k]) => k === "call"), ["call", "get_weather", { city: "Paris" }]);
assert.deepEqual(seen.find(([k]) => k === "reasoning-done"), ["reasoning-done", "thinking"]);
assert.deepEqual(seen.at(-1), ["usage", true]);
assert.equal(first.finishReason, "tool_calls");
const [toolCall] = first.toolCalls;
const second = await chat(
  {
    messages: [ask, first.message, { role: "tool", tool_call_id: toolCall.id, content: "18C" }],
    tools: [WEATHER],
    reasoning: { effort: "low" },
  },
  { baseUrl },
).result;
assert.equal(second.text, "get_weather returned 18C");

// Abort: the iterator and the result both end with an AbortError.
const long = chat({ messages: [user("w ".repeat(200))] }, { baseUrl });
let n = 0;
await assert.rejects(
  (async () => {
    for await (const event of long) if (event.type === "text" && ++n === 2) long.abort();
  })(),
  { name: "AbortError" },
);
await assert.rejects(long.result, { name: "AbortError" });
assert.equal(n, 2);

// An error before the stream: the HTTP status and the field at fault.
const errors = [];
await assert.rejects(
  chat({ messages: [user("x")], model: "nope" }, { baseUrl, onError: (e) => errors.push(e) })
    .result,
  (e) => e instanceof StreamfnError && e.status === 400 && e.param === "model",
);
assert.equal(errors.length, 1);

// An error within the stream: its type and message; the text before it was delivered.
const broken = chat({ messages: [user("x")] }, { baseUrl: brokenUrl });
const got = [];
await assert.rejects(
  (async () => {
    for await (const event of broken) got.push(event.type);
  })(),
  (e) => e instanceof StreamfnError && e.type === "upstream_unavailable" && e.status === null,
);
assert.deepEqual(got, ["text"]);

// A connection lost mid-stream (the body fails after two reads, its socket closed): the client
// resumes the stream from the server's log, and gets every token once.
let cut = 0;
const flaky = async (url, init) => {
  const response = await fetch(url, init);
  if (init?.method !== "POST" || !url.endsWith("/chat/stream") || cut++) return response;
  const reader = response.body.getReader();
  let reads = 0;
  const body = new ReadableStream({
    async pull(controller) {
      if (reads++ === 2) {
        await reader.cancel();
        controller.error(new TypeError("network error"));
        return;
      }
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
  });
  return new Response(body, { status: response.status, headers: response.headers });
};
const words = Array.from({ length: 30 }, (_, i) => `r${i}`).join(" ");
const lost = chat({ messages: [user(words)] }, { baseUrl: slowUrl, fetch: flaky });
const pieces = [];
for await (const event of lost) if (event.type === "text") pieces.push(event.text);
assert.equal(pieces.join(""), words);
assert.equal((await lost.result).text, words);
assert.equal(cut, 1);
assert.match((await lost.result).streamId, /^[0-9a-f-]{36}$/);

// The parser, fed one byte at a time: CRLF, CR (also split across chunks), comments, ids.
const raw = ": keepalive\r\nid: 1\r\nevent: token\r\ndata: a\r\ndata: b\r\n\r\n" +
  "id: 2\revent: done\rdata: stop\r\r" + "data: {\"x\":\"é\"}\n\n";
const bytes = new TextEncoder().encode(raw);
const oneByOne = new ReadableStream({
  start(controller) {
    for (const b of bytes) controller.enqueue(new Uint8Array([b]));
    controller.close();
  },
});
const parsed = [];
for await (const e of parseEventStream(oneByOne)) parsed.push([e.event, e.data, e.id]);
assert.deepEqual(parsed, [
  ["token", "a\nb", "1"],
  ["done", "stop", "2"],
  ["message", '{"x":"é"}', "2"],
]);
console.log(JSON.stringify({ ok: true, node: process.version }));
