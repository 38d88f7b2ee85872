// The AI SDK's Anthropic provider (@ai-sdk/anthropic) with streamText (ai 7) against streamfn's
// Messages API: text and usage, thinking with its signature, and a tool the SDK runs itself,
// its result sent back in a second step (with the signed thinking block, which echo checks).
// Usage: node aisdk_anthropic.mjs <url>
import assert from "node:assert/strict";
import { createAnthropic } from "@ai-sdk/anthropic";
import { jsonSchema, stepCountIs, streamText, tool } from "ai7";

const [url] = process.argv.slice(2);
const streamfn = createAnthropic({ baseURL: `${url}/v1`, apiKey: "unused" });

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
  providerOptions: { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } },
});
assert.equal(await thinking.text, "a b");
assert.equal(await thinking.reasoningText, "The user wrote 2 words. I will repeat them exactly.");

const calls = [];
const weather = tool({
  description: "Current weather in a city",
  inputSchema: jsonSchema({
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
  }),
  execute: async ({ city }) => {
    calls.push(city);
    return `18C in ${city}`;
  },
});
const stepped = streamText({
  model: streamfn("echo"),
  prompt: '/call get_weather {"city": "Oslo"}',
  tools: { get_weather: weather },
  stopWhen: stepCountIs(2),
  providerOptions: { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } },
});
const answer = await stepped.text;
assert.deepEqual(calls, ["Oslo"]);
assert.equal((await stepped.steps).length, 2);
assert.match(answer, /^get_weather returned "?18C in Oslo"?$/);

console.log(JSON.stringify({ ok: true, answer }));
