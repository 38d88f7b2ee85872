// The GET route through the `eventsource` package, a WHATWG-conformant EventSource.
// Usage: node eventsource.mjs <url>
import assert from "node:assert/strict";
import { EventSource } from "eventsource";

const [url] = process.argv.slice(2);

function collect(query, { closeOnDone }) {
  // EventSource's reconnect timer does not keep Node alive; this does, and bounds the wait.
  const guard = setTimeout(() => {
    throw new Error(`no end for ${JSON.stringify(query)}`);
  }, 10_000);
  return new Promise((resolve) => {
    const source = new EventSource(`${url}/chat/stream?${new URLSearchParams(query)}`);
    const events = [];
    for (const name of ["token", "reasoning", "reasoning_done", "usage", "done"]) {
      source.addEventListener(name, (e) => {
        events.push([name, e.data, e.lastEventId]);
        if (name === "done" && closeOnDone) {
          source.close();
          clearTimeout(guard);
          resolve({ events, state: source.readyState });
        }
      });
    }
    source.addEventListener("error", (e) => {
      // After a stream ends, EventSource reconnects with Last-Event-ID; streamfn's 204 stops it.
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(guard);
        resolve({ events, state: source.readyState, code: e.code });
      }
    });
  });
}

const { events } = await collect(
  { prompt: "one two three", reasoning_effort: "low" },
  { closeOnDone: true },
);
const names = events.map(([name]) => name);
assert.deepEqual(names.slice(-5), ["token", "token", "token", "usage", "done"]);
assert.equal(names.filter((n) => n === "reasoning_done").length, 1);
assert.equal(events.filter(([n]) => n === "token").map(([, d]) => d).join(""), "one two three");
// Ids are `<stream>:<n>`: one stream, numbered from 1.
const streams = new Set(events.map(([, , id]) => id.split(":")[0]));
assert.equal(streams.size, 1);
const ids = events.map(([, , id]) => Number(id.split(":")[1]));
assert.deepEqual(ids, ids.map((_, i) => i + 1));

// Not closed on done: the reconnect (Last-Event-ID: the last event) finds nothing left to
// resume, gets 204, and EventSource stops for good.
const left = await collect({ prompt: "a b" }, { closeOnDone: false });
assert.equal(left.state, EventSource.CLOSED);
assert.equal(left.code, 204);
assert.equal(left.events.filter(([n]) => n === "done").length, 1); // not generated twice

// A refused request: EventSource fails with the status and does not retry.
const refused = await collect({ prompt: "x", model: "nope" }, { closeOnDone: true });
assert.equal(refused.code, 400);
assert.equal(refused.events.length, 0);
console.log(JSON.stringify({ ok: true }));
