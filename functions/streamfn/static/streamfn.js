// streamfn's JavaScript client: a dependency-free ES module for browsers and Node 18+.
// Served by every streamfn at GET /streamfn.js.
//
//   import { chat } from "https://your-streamfn/streamfn.js";
//   const stream = chat({ messages: [{ role: "user", content: "Hi" }] }, { baseUrl });
//   for await (const event of stream) if (event.type === "text") show(event.text);
//   const { message, usage } = await stream.result;  // message: ready for the next request
//
// or with callbacks: chat(body, { onText: (text) => ..., onToolCall: (call) => ... }).
// It POSTs the native body to /chat/stream and parses the event stream as it arrives
// (WHATWG "event stream interpretation"); EventSource cannot POST, send headers or a body.
// Streams are resumable: a connection lost mid-stream is resumed (GET /chat/stream/{id} with
// Last-Event-ID) without a second generation, and abort() stops the generation on the server.

/**
 * @typedef {{ type: "thinking", text: string, signature: string | null }
 *   | { type: "redacted_thinking", data: string }} ReasoningBlock
 * @typedef {{ id: string, name: string, arguments: string }} ToolCall
 * @typedef {{ input_tokens: number, output_tokens: number, estimated: boolean,
 *   reasoning_tokens: number | null, cached_input_tokens: number | null }} Usage
 * @typedef {{ type: "text", text: string }
 *   | { type: "reasoning", text: string }
 *   | { type: "reasoning-done", block: ReasoningBlock }
 *   | { type: "tool-call-start", id: string, name: string }
 *   | { type: "tool-call-delta", id: string, arguments: string }
 *   | { type: "tool-call", call: ToolCall }
 *   | { type: "usage", usage: Usage }
 *   | { type: "done", finishReason: string }} ChatEvent
 * @typedef {{ role: "assistant", content: string, tool_calls?: ToolCall[],
 *   reasoning?: ReasoningBlock[] }} AssistantMessage
 * @typedef {{ text: string, reasoning: ReasoningBlock[], toolCalls: ToolCall[],
 *   usage: Usage | null, finishReason: string, requestId: string | null,
 *   streamId: string | null,
 *   message: AssistantMessage }} ChatResult
 * @typedef {{ baseUrl?: string, headers?: Record<string, string>, signal?: AbortSignal,
 *   fetch?: typeof fetch, resume?: boolean, resumeAttempts?: number,
 *   onText?: (text: string, soFar: string) => void,
 *   onReasoning?: (text: string) => void,
 *   onReasoningDone?: (block: ReasoningBlock) => void,
 *   onToolCallStart?: (call: { id: string, name: string }) => void,
 *   onToolCallDelta?: (delta: { id: string, arguments: string }) => void,
 *   onToolCall?: (call: ToolCall) => void,
 *   onUsage?: (usage: Usage) => void,
 *   onDone?: (result: ChatResult) => void,
 *   onError?: (error: StreamfnError) => void }} ChatOptions
 */

/** An error from streamfn: an HTTP status before the stream, or an `error` event in it. */
export class StreamfnError extends Error {
  /**
   * @param {string} message
   * @param {{ type?: string, status?: number | null, retryable?: boolean,
   *   param?: string | null, retryAfter?: number | null }} [details]
   */
  constructor(message, details = {}) {
    super(message);
    this.name = "StreamfnError";
    /** streamfn's error type: rate_limit, timeout, bad_request, ... or "connection". */
    this.type = details.type ?? "unknown";
    /** The HTTP status, for an error before the stream began; null for one within it. */
    this.status = details.status ?? null;
    this.retryable = details.retryable ?? false;
    /** The request field at fault, when streamfn named one. */
    this.param = details.param ?? null;
    /** Seconds to wait before retrying, when the server said (Retry-After). */
    this.retryAfter = details.retryAfter ?? null;
  }
}

/**
 * Parse a `text/event-stream` body into events as bytes arrive. Lines end at CRLF, LF or CR
 * (a CR at the end of one chunk may pair with an LF at the start of the next); `data` lines
 * join with LF; comments (keepalives) are skipped; an event with no data is not dispatched.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<{ event: string, data: string, id: string, retry: number | null }>}
 */
export async function* parseEventStream(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  let id = "";
  let retry = null;
  let crPending = false; // the last chunk ended with CR: an LF first in the next is its pair
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      if (crPending && buffer.startsWith("\n")) buffer = buffer.slice(1);
      crPending = false;
      let start = 0;
      for (;;) {
        let end = start;
        while (end < buffer.length && buffer[end] !== "\n" && buffer[end] !== "\r") end++;
        if (end === buffer.length) break;
        const line = buffer.slice(start, end);
        if (buffer[end] === "\r" && end + 1 === buffer.length) crPending = true;
        start = buffer[end] === "\r" && buffer[end + 1] === "\n" ? end + 2 : end + 1;
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n"), id, retry };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "data") data.push(val);
        else if (field === "event") event = val;
        else if (field === "id" && !val.includes("\0")) id = val;
        else if (field === "retry" && /^\d+$/.test(val)) retry = Number(val);
      }
      buffer = buffer.slice(start);
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => {});
  }
}

/**
 * Stream a chat from streamfn. Iterate the returned stream for events, await `result` for the
 * whole answer, or pass callbacks; `abort()` (or `options.signal`) stops it, and the server
 * cancels the provider's request.
 * @param {object} body the native request body (messages, provider, model, tools, ...)
 * @param {ChatOptions} [options]
 * @returns {ChatStream}
 */
export function chat(body, options = {}) {
  return new ChatStream(body, options);
}

export class ChatStream {
  /** @param {object} body @param {ChatOptions} options */
  constructor(body, options) {
    this._options = options;
    this._base = (options.baseUrl ?? "").replace(/\/$/, "");
    this._opened = false;
    /** @type {string | null} the stream's id (X-Stream-Id), to resume or stop it */
    this.streamId = null;
    this._controller = new AbortController();
    if (options.signal) {
      if (options.signal.aborted) this._controller.abort(options.signal.reason);
      options.signal.addEventListener("abort", () => this.abort());
    }
    /** @type {ChatEvent[]} */
    this._queue = [];
    this._waiting = null;
    this._ended = false;
    this._failure = null;
    /** @type {Promise<ChatResult>} the whole answer, once the stream has ended */
    this.result = this._run(body);
    this.result.catch(() => {}); // a caller that only iterates still sees the failure there
  }

  /** Stop the stream: the server stops the generation and closes the provider's request. */
  abort() {
    if (this._opened && this.streamId && !this._ended && !this._controller.signal.aborted) {
      // Leaving is not enough: the server keeps a stream going a while for its client to
      // resume it. Fire and forget; the fetch below is aborted either way.
      const o = this._options;
      (o.fetch ?? fetch)(`${this._base}/chat/stream/${this.streamId}/stop`, {
        method: "POST",
        headers: { ...o.headers },
      }).catch(() => {});
    }
    this._controller.abort();
    this._wake();
  }

  _push(event) {
    this._queue.push(event);
    this._wake();
  }

  _wake() {
    if (this._waiting) {
      const wake = this._waiting;
      this._waiting = null;
      wake();
    }
  }

  /** @returns {AsyncGenerator<ChatEvent>} */
  async *[Symbol.asyncIterator]() {
    for (;;) {
      // Once aborted, nothing more is delivered, even what had already been read.
      if (this._controller.signal.aborted) throw abortError(this._controller.signal);
      if (this._queue.length) {
        yield this._queue.shift();
        continue;
      }
      if (this._ended) {
        if (this._failure) throw this._failure;
        return;
      }
      await new Promise((resolve) => (this._waiting = resolve));
    }
  }

  async _run(body) {
    const o = this._options;
    const call = (name, ...args) => o[name] && o[name](...args);
    try {
      const result = await this._stream(body, call);
      call("onDone", result);
      return result;
    } catch (error) {
      const failure =
        error instanceof StreamfnError || error?.name === "AbortError"
          ? error
          : new StreamfnError(`the connection failed: ${error?.message ?? error}`, {
              type: "connection",
              retryable: true,
            });
      this._failure = failure;
      if (failure instanceof StreamfnError) call("onError", failure);
      throw failure;
    } finally {
      this._ended = true;
      this._wake();
    }
  }

  async _stream(body, call) {
    const o = this._options;
    const resume = o.resume ?? true;
    const attempts = resume ? (o.resumeAttempts ?? 3) : 0;
    const send = o.fetch ?? fetch;
    if (resume) body = { ...body, stream_id: body.stream_id ?? newStreamId() };
    this.streamId = body.stream_id ?? null;
    this._opened = true;
    let response = await send(`${this._base}/chat/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream", ...o.headers },
      body: JSON.stringify(body),
      signal: this._controller.signal,
    });
    if (!response.ok) throw await httpError(response);
    this.streamId = response.headers.get("x-stream-id") ?? this.streamId;
    const result = {
      text: "",
      reasoning: [],
      toolCalls: [],
      usage: null,
      finishReason: "",
      requestId: response.headers.get("x-request-id"),
      streamId: this.streamId,
    };
    let lastId = "";
    for (let attempt = 0; ; attempt++) {
      let lost;
      try {
        for await (const { event, data, id } of parseEventStream(response.body)) {
          lastId = id;
          if (this._handle(event, data, result, call)) return result;
        }
        lost = new StreamfnError("the stream ended before it finished", {
          type: "connection",
          retryable: true,
        });
      } catch (error) {
        if (error instanceof StreamfnError || this._controller.signal.aborted) throw error;
        lost = error;
      }
      // The connection was lost mid-stream: resume where it broke off, from the server's log.
      if (attempt >= attempts || !this.streamId) throw lost;
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      response = await send(`${this._base}/chat/stream/${this.streamId}`, {
        headers: { accept: "text/event-stream", "last-event-id": lastId, ...o.headers },
        signal: this._controller.signal,
      }).catch(() => null);
      if (response?.status === 204) throw lost; // nothing more will come
      if (!response?.ok) throw lost;
    }
  }

  /** Handle one event; true once the stream is done. */
  _handle(event, data, result, call) {
    switch (event) {
      case "token":
        result.text += data;
        this._push({ type: "text", text: data });
        call("onText", data, result.text);
        break;
      case "reasoning":
        this._push({ type: "reasoning", text: data });
        call("onReasoning", data);
        break;
      case "reasoning_done": {
        const block = JSON.parse(data);
        result.reasoning.push(block);
        this._push({ type: "reasoning-done", block });
        call("onReasoningDone", block);
        break;
      }
      case "tool_call_start": {
        const { id, name } = JSON.parse(data);
        this._push({ type: "tool-call-start", id, name });
        call("onToolCallStart", { id, name });
        break;
      }
      case "tool_call_delta": {
        const delta = JSON.parse(data);
        this._push({ type: "tool-call-delta", ...delta });
        call("onToolCallDelta", delta);
        break;
      }
      case "tool_call": {
        const toolCall = JSON.parse(data);
        result.toolCalls.push(toolCall);
        this._push({ type: "tool-call", call: toolCall });
        call("onToolCall", toolCall);
        break;
      }
      case "usage":
        result.usage = JSON.parse(data);
        this._push({ type: "usage", usage: result.usage });
        call("onUsage", result.usage);
        break;
      case "done":
        result.finishReason = data;
        this._push({ type: "done", finishReason: data });
        result.message = assistantMessage(result);
        return true;
      case "error": {
        const error = JSON.parse(data);
        throw new StreamfnError(error.message, { ...error, status: null });
      }
      default: // events of later versions: not this client's business
    }
    return false;
  }
}

/** A stream id (the server's pattern: 8 to 128 of [A-Za-z0-9_-]), made here so that a stream
 * lost even before its first event can be resumed. */
function newStreamId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16)); // not a secure context
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function abortError(signal) {
  const reason = signal.reason;
  return reason instanceof Error && reason.name === "AbortError"
    ? reason
    : new DOMException("the stream was aborted", "AbortError");
}

function assistantMessage(result) {
  const message = { role: "assistant", content: result.text };
  if (result.toolCalls.length) message.tool_calls = result.toolCalls;
  if (result.reasoning.length) message.reasoning = result.reasoning;
  return message;
}

async function httpError(response) {
  let error = {};
  try {
    error = (await response.json()).error ?? {};
  } catch {
    // not streamfn's JSON: a proxy's page, say
  }
  const after = Number(response.headers.get("retry-after"));
  return new StreamfnError(error.message ?? `HTTP ${response.status} ${response.statusText}`, {
    type: error.type ?? "http_error",
    status: response.status,
    retryable: error.retryable ?? response.status >= 500,
    param: error.param ?? null,
    retryAfter: Number.isFinite(after) && after > 0 ? after : null,
  });
}
