// The AI SDK's OpenAI provider (@ai-sdk/openai), which speaks the Responses API, with streamText
// (ai 7) against streamfn: text and usage, reasoning, and a tool the SDK runs itself, its result
// sent back in a second step (with the stored reasoning item, by reference, which echo checks).
// Usage: node aisdk_openai.mjs <url>
import assert from "node:assert/strict";
import { createOpenAI } from "@ai-sdk/openai";
import { jsonSchema, stepCountIs, streamText, tool } from "ai7";

const [url] = process.argv.slice(2);
const streamfn = createOpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });

const plain = streamText({ model: streamfn("echo"), prompt: "one two three" });
let text = "";
for await (const piece of plain.textStream) text += piece;
assert.equal(text, "one two three");
assert.equal((await plain.usage).outputTokens, 3);
assert.equal(await plain.finishReason, "stop");

// echo is no model name the SDK knows as a reasoning model: forceReasoning says it is one.
const reasoning = { openai: { forceReasoning: true, reasoningEffort: "low", reasoningSummary: "auto" } };
const thinking = streamText({ model: streamfn("echo"), prompt: "a b", providerOptions: reasoning });
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
  providerOptions: reasoning,
});
const answer = await stepped.text;
assert.deepEqual(calls, ["Oslo"]);
assert.equal((await stepped.steps).length, 2);
assert.match(answer, /18C in Oslo/);

console.log(JSON.stringify({ ok: true, answer }));
