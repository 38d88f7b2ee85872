// The chat page (GET /): a multi-turn chat on streamfn's JavaScript client, served as a file
// (GET /chat.js) because the page's Content-Security-Policy allows no inline script.
//
// The conversation is a list of entries, a user's message or one model turn each; what is sent
// is derived from it (`history`), so a failed exchange is shown but never sent again, and the
// whole of it is kept in localStorage to survive a reload (issue #27).
import { MarkdownView, copyText, flash, handleCodeCopy } from "./markdown.js";
import { chat } from "./streamfn.js";

const $ = (id) => document.getElementById(id);
const MAX_IMAGE_BYTES = 4 * 1024 * 1024;
const TOOL_ROUNDS = 5;
const STORE = { chat: "streamfn.chat", settings: "streamfn.settings", key: "streamfn.apiKey" };

// The page's own tools, run in the browser when the model calls them.
const TOOLS = {
  get_time: {
    spec: { name: "get_time", description: "The current date and time, ISO 8601",
            parameters: { type: "object", properties: {} } },
    run: () => new Date().toISOString(),
  },
  roll_dice: {
    spec: { name: "roll_dice", description: "Roll a die",
            parameters: { type: "object", properties: { sides: { type: "integer", minimum: 2 } } } },
    run: ({ sides = 6 } = {}) => String(1 + Math.floor(Math.random() * Math.max(2, sides))),
  },
};

/**
 * @typedef {{ id: number, role: "user", text: string, images: string[] }} UserEntry
 * @typedef {{ id: string, name: string, args: string, result?: string }} ToolRun
 * @typedef {{ id: number, role: "assistant", text: string, reasoning: string, tools: ToolRun[],
 *   state: "streaming" | "done" | "stopped" | "failed", message: object | null,
 *   meta: string, error: string }} ReplyEntry
 * An exchange is a user's entry and the replies (one per tool round) that follow it.
 * @typedef {{ user: UserEntry, replies: ReplyEntry[] }} Exchange
 */

/** @type {(UserEntry | ReplyEntry)[]} */
let entries = [];
let nextId = 1;
const nodes = new Map(); // entry id -> its element
const views = new Map(); // reply id -> its MarkdownView
let attachments = []; // data URLs
let current = null; // the stream in flight
let running = false;
let wantsKey = false; // the server refused the last request for want of an API key

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // text, never HTML
  return node;
}

function button(text, onClick, title) {
  const node = el("button", "", text);
  node.type = "button";
  if (title) node.title = title;
  node.addEventListener("click", onClick);
  return node;
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "failed" : "";
}

// Streaming keeps the newest text in view unless the reader has scrolled up to read.
let pinned = true;

function scrollDown(force = false) {
  const main = document.querySelector("main");
  if (force) pinned = true;
  if (pinned) main.scrollTop = main.scrollHeight;
}

// --- the conversation ---------------------------------------------------------------------

/** @returns {Exchange[]} */
function exchanges() {
  const out = [];
  for (const entry of entries) {
    if (entry.role === "user") out.push({ user: entry, replies: [] });
    else out.at(-1)?.replies.push(entry);
  }
  return out;
}

const failed = (exchange) => exchange.replies.some((r) => r.state === "failed");

function userContent(text, images) {
  if (!images.length) return text;
  return [
    ...(text ? [{ type: "text", text }] : []),
    ...images.map((url) => ({ type: "image", url })),
  ];
}

/** The native messages to send: every exchange but the failed ones, in order. */
function history() {
  const messages = [];
  for (const exchange of exchanges()) {
    if (failed(exchange)) continue;
    messages.push({ role: "user", content: userContent(exchange.user.text, exchange.user.images) });
    for (const reply of exchange.replies) {
      if (reply.message) messages.push(reply.message);
      for (const run of reply.tools) {
        if (run.result !== undefined) {
          messages.push({ role: "tool", tool_call_id: run.id, content: run.result });
        }
      }
    }
  }
  return messages;
}

function remove(entry) {
  entries.splice(entries.indexOf(entry), 1);
  nodes.get(entry.id)?.remove();
  nodes.delete(entry.id);
  views.delete(entry.id);
}

// --- keeping it across reloads ------------------------------------------------------------

function save() {
  const stored = { version: 1, entries };
  try {
    localStorage.setItem(STORE.chat, JSON.stringify(stored));
  } catch {
    // Over the quota (images are data URLs): keep the words, and say what was dropped.
    try {
      const lean = entries.map((e) => (e.role === "user" && e.images.length
        ? { ...e, images: [], text: `${e.text}\n[${e.images.length} image(s) not kept]` } : e));
      localStorage.setItem(STORE.chat, JSON.stringify({ ...stored, entries: lean }));
      setStatus("the conversation's images are too large to keep across a reload", true);
    } catch (error) {
      setStatus(`the conversation cannot be kept across a reload: ${error.message}`, true);
    }
  }
}

/** A stored entry in the shape this page draws, whatever an older page stored. */
function restored(entry) {
  if (entry.role === "user") {
    return { id: Number(entry.id), role: "user", text: String(entry.text ?? ""),
             images: Array.isArray(entry.images) ? entry.images : [] };
  }
  const reply = {
    id: Number(entry.id), role: "assistant", text: String(entry.text ?? ""),
    reasoning: String(entry.reasoning ?? ""), tools: Array.isArray(entry.tools) ? entry.tools : [],
    state: entry.state ?? "done", message: entry.message ?? null, meta: entry.meta ?? "",
    error: entry.error ?? "",
  };
  if (reply.state === "streaming") {
    // The page went away while this one streamed: it is incomplete, so it is not sent.
    reply.state = "failed";
    reply.error = "interrupted: the page was closed or reloaded while this reply streamed";
  }
  return reply;
}

function load() {
  let stored = null;
  try {
    stored = JSON.parse(localStorage.getItem(STORE.chat) ?? "null");
  } catch {
    // a corrupt copy: start afresh
  }
  if (stored?.version !== 1 || !Array.isArray(stored.entries)) return;
  entries = stored.entries
    .filter((e) => (e?.role === "user" || e?.role === "assistant") && Number.isFinite(e.id))
    .map(restored);
  while (entries[0]?.role === "assistant") entries.shift(); // no message of its own to answer
  nextId = Math.max(0, ...entries.map((e) => e.id)) + 1;
  // A message the page went away from before any reply began: failed, to be retried.
  for (const exchange of exchanges()) {
    if (exchange.replies.length) continue;
    entries.splice(entries.indexOf(exchange.user) + 1, 0, {
      ...restored({ id: nextId++, role: "assistant", state: "failed" }),
      error: "interrupted: the page was closed or reloaded before a reply came",
    });
  }
  for (const entry of entries) {
    $("log").append(entry.role === "user" ? userNode(entry) : replyNode(entry));
  }
}

function saveSettings() {
  const settings = {
    provider: $("provider").value,
    model: $("model").value,
    system: $("system").value,
    effort: $("effort").value,
    maxTokens: $("max-tokens").value,
    tools: $("tools").checked,
    rememberKey: $("remember-key").checked,
  };
  try {
    localStorage.setItem(STORE.settings, JSON.stringify(settings));
    if (settings.rememberKey && $("api-key").value.trim()) {
      localStorage.setItem(STORE.key, $("api-key").value.trim());
    } else {
      localStorage.removeItem(STORE.key);
    }
  } catch {
    // storage refused (a private window's, or full): the page still works, unremembered
  }
}

function loadSettings() {
  let s = {};
  try {
    s = JSON.parse(localStorage.getItem(STORE.settings) ?? "{}") ?? {};
  } catch {
    // as if none were kept
  }
  if (typeof s.model === "string") $("model").value = s.model;
  if (typeof s.system === "string") $("system").value = s.system;
  if (typeof s.effort === "string") $("effort").value = s.effort;
  if (typeof s.maxTokens === "string") $("max-tokens").value = s.maxTokens;
  if (typeof s.tools === "boolean") $("tools").checked = s.tools;
  const key = localStorage.getItem(STORE.key);
  // A key kept before "remember" existed was remembered: show it so, to be unticked at will.
  $("remember-key").checked = s.rememberKey ?? key !== null;
  if ($("remember-key").checked && key) $("api-key").value = key;
  return s;
}

// --- drawing ------------------------------------------------------------------------------

function userNode(entry) {
  const node = el("article", "msg user");
  node.setAttribute("aria-label", "You");
  node.append(el("div", "text", entry.text));
  if (entry.images.length) {
    const row = el("div", "images");
    for (const url of entry.images) {
      const img = el("img");
      img.src = url;
      img.alt = "attached image";
      row.append(img);
    }
    node.append(row);
  }
  node.append(el("div", "note"), el("div", "actions"));
  nodes.set(entry.id, node);
  return node;
}

function replyNode(entry) {
  const node = el("article", "msg assistant");
  node.setAttribute("aria-label", "Assistant");
  const reasoning = el("details", "reasoning");
  reasoning.hidden = !entry.reasoning;
  reasoning.append(el("summary", "", "Reasoning"), el("div", "thought", entry.reasoning));
  const text = el("div", "text md");
  node.append(reasoning, text);
  const view = new MarkdownView(text, () => { if (running) scrollDown(); });
  if (entry.text) view.flush(entry.text);
  views.set(entry.id, view);
  node.append(el("div", "actions"));
  for (const run of entry.tools) {
    const card = toolCard(node, run.id, run.name);
    card.querySelector(".args").textContent = run.args;
    if (run.result !== undefined) toolResult(card, run.result);
  }
  nodes.set(entry.id, node);
  showEnd(entry);
  return node;
}

/** The end of a reply: its error, or its meta line, just above its buttons. */
function showEnd(entry) {
  const node = nodes.get(entry.id);
  for (const [name, text] of [["error", entry.error], ["meta", entry.meta]]) {
    let line = node.querySelector(`:scope > .${name}`);
    if (!text) {
      line?.remove();
      continue;
    }
    if (!line) node.querySelector(":scope > .actions").before((line = el("div", name)));
    line.textContent = text;
  }
}

function toolCard(node, id, name) {
  node.classList.add("has-tools");
  const card = el("div", "tool");
  card.dataset.id = id;
  const head = el("div", "head");
  head.append(el("span", "name", name), el("span", "state", "calling…"));
  card.append(head, el("pre", "args"));
  node.querySelector(":scope > .actions").before(card);
  return card;
}

function toolResult(card, output) {
  card.querySelector(".state").textContent = "returned";
  card.append(el("pre", "result", output));
}

/** Mark failed exchanges and put each message's buttons where they apply now. */
function refresh() {
  const all = exchanges();
  $("welcome").hidden = entries.length > 0;
  all.forEach((exchange, i) => {
    const isFailed = failed(exchange);
    const last = i === all.length - 1;
    const userNodeOf = nodes.get(exchange.user.id);
    userNodeOf.classList.toggle("failed", isFailed);
    userNodeOf.querySelector(".note").textContent = isFailed
      ? "Failed: left out of the conversation, not sent again" : "";
    userNodeOf.querySelector(".note").hidden = !isFailed;
    const userActions = userNodeOf.querySelector(".actions");
    userActions.replaceChildren();
    if (!running && !userNodeOf.querySelector(".editor")) {
      userActions.append(button("Edit", () => startEdit(exchange.user), "Edit and send again"));
    }
    exchange.replies.forEach((reply, j) => {
      const node = nodes.get(reply.id);
      node.classList.toggle("failed", reply.state === "failed");
      const actions = node.querySelector(":scope > .actions");
      actions.replaceChildren();
      if (running) return;
      if (reply.text) {
        const copy = (event) => copyReply(event.currentTarget, reply);
        actions.append(button("Copy", copy, "Copy the reply as Markdown"));
      }
      if (j !== exchange.replies.length - 1) return;
      if (isFailed) {
        actions.append(button("Retry", () => rerun(exchange), "Send this message again"));
      } else if (last) {
        actions.append(button("Regenerate", () => rerun(exchange), "Ask for another answer"));
      }
    });
  });
}

function copyReply(target, reply) {
  copyText(reply.text).then(() => flash(target, "Copied"), () => flash(target, "Copy failed"));
}

function busy(on) {
  running = on;
  $("send").disabled = on;
  $("stop").disabled = !on;
  $("new-chat").disabled = on;
  refresh();
}

// --- sending ------------------------------------------------------------------------------

function requestBody() {
  const body = { messages: history() };
  const system = $("system").value.trim();
  if (system) body.messages.unshift({ role: "system", content: system });
  body.provider = $("provider").value || undefined;
  body.model = $("model").value.trim() || undefined;
  if ($("effort").value) body.reasoning = { effort: $("effort").value };
  if ($("max-tokens").value) body.max_tokens = Number($("max-tokens").value);
  if ($("tools").checked) body.tools = Object.values(TOOLS).map((t) => t.spec);
  return body;
}

function addUser(text, images) {
  const entry = { id: nextId++, role: "user", text, images };
  entries.push(entry);
  $("log").append(userNode(entry));
  return entry;
}

/** One model turn, streamed into a new reply. Returns the tool calls to run, or null. */
async function turn() {
  const body = requestBody(); // before the reply exists: it is not part of its own request
  /** @type {ReplyEntry} */
  const reply = {
    id: nextId++, role: "assistant", text: "", reasoning: "", tools: [], state: "streaming",
    message: null, meta: "", error: "",
  };
  entries.push(reply);
  const node = replyNode(reply);
  $("log").append(node);
  scrollDown(true);
  const view = views.get(reply.id);
  const reasoning = node.querySelector(".reasoning");
  const cards = new Map();
  const started = performance.now();
  let firstAt = null;
  const first = () => { firstAt ??= performance.now() - started; };
  setStatus("waiting for the first token…");
  const key = $("api-key").value.trim();
  current = chat(body, {
    headers: key ? { authorization: `Bearer ${key}` } : {},
    onText: (_piece, soFar) => {
      first();
      reply.text = soFar;
      view.update(soFar);
      setStatus("streaming…");
    },
    onReasoning: (piece) => {
      first();
      reply.reasoning += piece;
      reasoning.hidden = false;
      reasoning.querySelector(".thought").textContent = reply.reasoning;
      setStatus("reasoning…");
    },
    onToolCallStart: ({ id, name }) => {
      first();
      reply.tools.push({ id, name, args: "" });
      cards.set(id, toolCard(node, id, name));
      scrollDown();
    },
    onToolCallDelta: ({ id, arguments: piece }) => {
      const run = reply.tools.find((t) => t.id === id);
      if (run) run.args += piece;
      cards.get(id).querySelector(".args").textContent += piece;
    },
  });
  try {
    const result = await current.result;
    view.flush(result.text);
    reply.text = result.text;
    reply.message = result.message;
    reply.state = "done";
    const usage = result.usage;
    const meta = [`${result.finishReason}`];
    if (usage) meta.push(`${usage.input_tokens} in · ${usage.output_tokens} out${usage.estimated ? " (estimated)" : ""}`);
    if (firstAt !== null) meta.push(`first token ${Math.round(firstAt)} ms`);
    reply.meta = meta.join(" · ");
    setStatus(`done (${result.finishReason})`);
    if (result.finishReason === "tool_calls" && result.toolCalls.length) {
      return { reply, calls: result.toolCalls, cards };
    }
    return null;
  } catch (error) {
    view.flush(reply.text);
    if (error.name === "AbortError") {
      // Keep what arrived, so the conversation can go on from it.
      reply.state = "stopped";
      if (reply.text) reply.message = { role: "assistant", content: reply.text };
      reply.meta = "stopped";
      setStatus("stopped");
    } else {
      reply.state = "failed";
      const where = error.status ? `HTTP ${error.status}` : "the stream failed";
      reply.error = `${where}: ${error.message}`;
      if (error.status === 401) {
        document.querySelector("details.settings").open = true;
        wantsKey = true;
      }
      setStatus(`error: ${error.message}`, true);
    }
    return null;
  } finally {
    current = null;
    showEnd(reply);
    save();
    scrollDown();
  }
}

function runTools({ reply, calls, cards }) {
  for (const call of calls) {
    const tool = TOOLS[call.name];
    let output;
    try {
      output = tool ? tool.run(JSON.parse(call.arguments || "{}")) : `no tool named ${call.name}`;
    } catch (error) {
      output = `the tool failed: ${error.message}`;
    }
    let run = reply.tools.find((t) => t.id === call.id);
    if (!run) reply.tools.push((run = { id: call.id, name: call.name, args: call.arguments }));
    run.result = output;
    const card = cards.get(call.id);
    if (card) toolResult(card, output);
  }
  save();
}

/** Run the exchange that ends the conversation: model turns until one calls no tool. */
async function run() {
  busy(true);
  wantsKey = false;
  try {
    for (let round = 0; round < TOOL_ROUNDS; round++) {
      const calls = await turn();
      if (!calls) break;
      runTools(calls);
    }
  } finally {
    busy(false);
    scrollDown(); // to the buttons busy(false) put back
    (wantsKey ? $("api-key") : $("prompt")).focus();
  }
}

/** Retry (a failed exchange) or Regenerate (the last one): its replies go, and its message is
 * sent again as the conversation's last, with every exchange before it that did not fail. */
function rerun(exchange) {
  if (running) return;
  for (const reply of exchange.replies) remove(reply);
  if (entries.at(-1) !== exchange.user) {
    entries.splice(entries.indexOf(exchange.user), 1);
    entries.push(exchange.user);
    $("log").append(nodes.get(exchange.user.id));
  }
  save();
  run();
}

function startEdit(entry) {
  if (running) return;
  const node = nodes.get(entry.id);
  const text = node.querySelector(".text");
  const editor = el("div", "editor");
  const area = el("textarea");
  area.value = entry.text;
  area.setAttribute("aria-label", "Edit your message");
  const buttons = el("div", "buttons");
  const cancel = () => { editor.remove(); text.hidden = false; refresh(); };
  const resend = () => {
    const edited = area.value.trim();
    if (!edited && !entry.images.length) return;
    if (running) return;
    // Everything from the edited message on is replaced by the edited message and its answer.
    for (const later of entries.slice(entries.indexOf(entry))) remove(later);
    addUser(edited, entry.images);
    save();
    run();
  };
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      resend();
    } else if (event.key === "Escape") {
      cancel();
    }
  });
  buttons.append(button("Cancel", cancel), button("Resend", resend, "Send the edited message"));
  editor.append(area, buttons);
  text.hidden = true;
  text.after(editor);
  refresh();
  area.focus();
}

async function send(event) {
  event.preventDefault();
  if (running) return;
  const text = $("prompt").value.trim();
  if (!text && !attachments.length) return;
  addUser(text, attachments);
  $("prompt").value = "";
  attachments = [];
  renderAttachments();
  save();
  await run();
}

function renderAttachments() {
  const box = $("attachments");
  box.replaceChildren();
  attachments.forEach((url, i) => {
    const chip = el("span", "chip");
    const img = el("img");
    img.src = url;
    img.alt = "image to send";
    const drop = button("×", () => { attachments.splice(i, 1); renderAttachments(); }, "Remove");
    chip.append(img, drop);
    box.append(chip);
  });
}

async function attach(files) {
  for (const file of files) {
    if (file.size > MAX_IMAGE_BYTES) {
      setStatus(`${file.name} is larger than 4 MB`, true);
      continue;
    }
    const url = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
    attachments.push(url);
  }
  renderAttachments();
}

function newChat() {
  if (running) return;
  for (const entry of [...entries]) remove(entry);
  entries = [];
  try {
    localStorage.removeItem(STORE.chat);
  } catch {
    // nothing was kept
  }
  setStatus("");
  refresh();
  $("prompt").focus();
}

// --- start --------------------------------------------------------------------------------

async function loadProviders(saved) {
  const response = await fetch("providers");
  const { default: fallback, providers } = await response.json();
  const usable = (name) => providers.some((p) => p.name === name && p.reachable !== false);
  const chosen = usable(saved) ? saved : fallback;
  for (const p of providers) {
    const unreachable = p.reachable === false;
    const label = unreachable ? `${p.name} (not reachable)` : p.name;
    const option = new Option(label, p.name, false, p.name === chosen);
    option.disabled = unreachable;
    option.dataset.model = p.default_model;
    if (unreachable) option.title = p.detail || "nothing answers at its address";
    $("provider").add(option);
    $("models").append(new Option(p.default_model));
  }
  $("provider").value = chosen;
  showDefaultModel();
}

function showDefaultModel() {
  const option = $("provider").selectedOptions[0];
  $("model").placeholder = option ? option.dataset.model : "";
}

$("composer").addEventListener("submit", send);
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    if (!$("send").disabled) $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => current?.abort());
$("attach-button").addEventListener("click", () => $("attach").click());
$("attach").addEventListener("change", (event) => attach([...event.target.files]).finally(() => { event.target.value = ""; }));
$("provider").addEventListener("change", () => { $("model").value = ""; showDefaultModel(); saveSettings(); });
for (const id of ["model", "system", "effort", "max-tokens", "tools", "api-key", "remember-key"]) {
  $(id).addEventListener("change", saveSettings);
}
$("api-key").addEventListener("input", saveSettings);
$("new-chat").addEventListener("click", newChat);
// A form only so that browsers see a password field in one; Enter in it submits nothing.
$("key-form").addEventListener("submit", (event) => { event.preventDefault(); saveSettings(); });
// What streamed so far is kept if the page goes away mid-reply (it is marked interrupted).
window.addEventListener("pagehide", () => { if (running) save(); });
document.querySelector("main").addEventListener("scroll", (event) => {
  const main = event.currentTarget;
  pinned = main.scrollHeight - main.scrollTop - main.clientHeight < 60;
}, { passive: true });
handleCodeCopy($("log"));

const saved = loadSettings();
load();
refresh();
scrollDown(true);
loadProviders(saved.provider).catch((error) => setStatus(`could not list providers: ${error}`, true));
