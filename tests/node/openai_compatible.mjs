// The AI SDK's OpenAI-compatible provider with streamText (ai 7): text, usage, reasoning and a
// tool call validated against its schema. Usage: node openai_compatible.mjs <url>
import assert from "node:assert/strict";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { jsonSchema, streamText, tool } from "ai7";

const [url] = process.argv.slice(2);
const streamfn = createOpenAICompatible({
  name: "streamfn",
  baseURL: `${url}/v1`,
  includeUsage: true,
});

const plain = streamText({ model: streamfn("echo"), prompt: "one two three" });
let text = "";
for await (const piece of plain.textStream) text += piece;
assert.equal(text, "one two three");
const usage = await plain.usage;
assert.equal(usage.outputTokens, 3);
assert.equal(await plain.finishReason, "stop");

const thinking = streamText({
  model: streamfn("echo"),
  prompt: "a b",
  providerOptions: { streamfn: { reasoningEffort: "low" } },
});
assert.equal(await thinking.text, "a b");
assert.equal(await thinking.reasoningText, "The user wrote 2 words. I will repeat them exactly.");

const calling = streamText({
  model: streamfn("echo/echo"),
  prompt: '/call get_weather {"city": "Paris"}',
  tools: {
    get_weather: tool({
      description: "Current weather",
      inputSchema: jsonSchema({
        type: "object",
        properties: { city: { type: "string" } },
        required: ["city"],
      }),
    }),
  },
});
const calls = await calling.toolCalls;
assert.equal(calls.length, 1);
assert.equal(calls[0].toolName, "get_weather");
assert.deepEqual(calls[0].input, { city: "Paris" });
assert.equal(await calling.finishReason, "tool-calls");
console.log(JSON.stringify({ ok: true }));
