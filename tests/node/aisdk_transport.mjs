// The AI SDK's own client against streamfn's /api/chat: DefaultChatTransport sends, and
// readUIMessageStream folds the UI message stream (validating every chunk against the
// version's schema) into UI messages. Usage: node aisdk_transport.mjs <ai5|ai6|ai7> <url>
import assert from "node:assert/strict";

const [pkg, url] = process.argv.slice(2);
const { DefaultChatTransport, readUIMessageStream } = await import(pkg);

const WEATHER = {
  name: "get_weather",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const transport = new DefaultChatTransport({
  api: `${url}/api/chat`,
  body: { provider: "echo", tools: [WEATHER], reasoning: { effort: "low" } },
});

async function send(messages, message) {
  const stream = await transport.sendMessages({
    chatId: "chat-1",
    messages,
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  let last;
  for await (const m of readUIMessageStream({ stream, message })) last = m;
  return last;
}

const question = {
  id: "u1",
  role: "user",
  parts: [{ type: "text", text: 'Checking.\n/call get_weather {"city": "Paris"}' }],
};

// Turn 1: reasoning, text, then a tool call the client must run.
const first = await send([question]);
assert.equal(first.role, "assistant");
const reasoning = first.parts.find((p) => p.type === "reasoning");
assert.equal(reasoning.text, "The user wrote 5 words. I will repeat them exactly.");
assert.equal(reasoning.state, "done");
assert.match(reasoning.providerMetadata.streamfn.signature, /^echo\./);
assert.deepEqual(
  first.parts.filter((p) => p.type === "text").map((p) => p.text),
  ["Checking."],
);
const call = first.parts.find((p) => p.type === "tool-get_weather");
assert.equal(call.state, "input-available");
assert.deepEqual(call.input, { city: "Paris" });
assert.equal(first.metadata.usage.outputTokens > 0, true);
assert.equal(first.metadata.provider, "echo");

// Turn 2: the client ran the tool; the same assistant message goes back with its output, and
// the stream continues that message.
const ran = {
  ...first,
  parts: first.parts.map((p) =>
    p === call ? { ...p, state: "output-available", output: { temperature: "18C" } } : p,
  ),
};
const second = await send([question, ran], ran);
assert.equal(second.id, first.id);
const texts = second.parts.filter((p) => p.type === "text").map((p) => p.text);
assert.equal(texts.at(-1), 'get_weather returned {"temperature": "18C"}');

// A failure: an unknown model is refused before the stream, and the transport throws.
const bad = new DefaultChatTransport({ api: `${url}/api/chat`, body: { model: "nope" } });
await assert.rejects(
  bad.sendMessages({ chatId: "c", messages: [question], trigger: "submit-message" }),
  /echo has no model 'nope'/,
);

console.log(JSON.stringify({ ok: true, parts: second.parts.map((p) => p.type) }));
