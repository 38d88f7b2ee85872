// The AI SDK's resume (useChat({ resume: true }) calls the transport's reconnectToStream) against
// streamfn: a client that lost its stream mid-message gets the whole message again from `start`,
// with the same messageId, then the rest live; 204 (null) when the chat has nothing running.
// Usage: node aisdk_resume.mjs <ai5|ai6|ai7> <url>
import assert from "node:assert/strict";

const [pkg, url] = process.argv.slice(2);
const { DefaultChatTransport, readUIMessageStream } = await import(pkg);

const chatId = `chat-${pkg}-${Date.now()}`;
const words = Array.from({ length: 16 }, (_, i) => `w${i}`).join(" ");
const transport = new DefaultChatTransport({ api: `${url}/api/chat`, body: { provider: "echo" } });

assert.equal(await transport.reconnectToStream({ chatId }), null, "nothing started yet");

// Send, read a few chunks, then drop the connection (a reload, a network change).
const abort = new AbortController();
const stream = await transport.sendMessages({
  chatId,
  messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: words }] }],
  trigger: "submit-message",
  messageId: undefined,
  abortSignal: abort.signal,
});
const reader = stream.getReader();
const seen = [];
while (seen.filter((c) => c.type === "text-delta").length < 3) {
  const { value, done } = await reader.read();
  assert.equal(done, false);
  seen.push(value);
}
abort.abort();
await reader.cancel().catch(() => {});
const started = seen.find((c) => c.type === "start");
assert.ok(started.messageId);

// Resume: the whole message, rebuilt from scratch by the SDK's own reader.
const resumed = await transport.reconnectToStream({ chatId });
assert.notEqual(resumed, null, "a running stream resumes");
let message;
for await (const m of readUIMessageStream({ stream: resumed })) message = m;
assert.equal(message.id, started.messageId);
const text = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
assert.equal(text, words);
assert.equal(message.metadata.provider, "echo");

// Ended: nothing to resume.
await new Promise((r) => setTimeout(r, 300));
assert.equal(await transport.reconnectToStream({ chatId }), null, "an ended stream is not resumed");

console.log(JSON.stringify({ ok: true, id: message.id, text }));
