// The openai npm SDK's Responses API against streamfn: responses.stream() with its event
// accumulator, responses.create() without a stream, a chain by previous_response_id through a
// tool round trip, retrieve and delete, and the typed error of an unknown response.
// Usage: node openai_responses.mjs <echo url>
import assert from "node:assert/strict";
import OpenAI from "openai";

const [url] = process.argv.slice(2);
const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
const WEATHER = {
  type: "function",
  name: "get_weather",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

// Streamed, through the SDK's own accumulator.
const stream = openai.responses.stream({ model: "echo", input: "one two three" });
const deltas = [];
stream.on("response.output_text.delta", (event) => deltas.push(event.delta));
const streamed = await stream.finalResponse();
assert.deepEqual(deltas, ["one", " two", " three"]);
assert.equal(streamed.output_text, "one two three");
assert.equal(streamed.status, "completed");
assert.equal(streamed.usage.output_tokens, 3);

// A tool call, then its result in a chained request.
const first = await openai.responses.create({
  model: "echo",
  input: '/call get_weather {"city": "Oslo"}',
  tools: [WEATHER],
});
const call = first.output.find((item) => item.type === "function_call");
assert.equal(call.name, "get_weather");
assert.deepEqual(JSON.parse(call.arguments), { city: "Oslo" });
const second = await openai.responses
  .stream({
    model: "echo",
    previous_response_id: first.id,
    tools: [WEATHER],
    input: [{ type: "function_call_output", call_id: call.call_id, output: "18C" }],
  })
  .finalResponse();
assert.match(second.output_text, /18C/);

// Stored: retrieved as made, deleted, then gone.
const kept = await openai.responses.retrieve(first.id);
assert.deepEqual(kept.output, first.output);
await openai.responses.delete(first.id);
await assert.rejects(openai.responses.retrieve(first.id), OpenAI.NotFoundError);

console.log(JSON.stringify({ ok: true, chained: second.output_text }));
