// The chat page's Markdown (issue #27): marked parses what the model writes, highlight.js colours
// fenced code, DOMPurify keeps only the markup marked itself produces. Bundled by web/build.mjs
// into functions/streamfn/static/markdown.js (`make bundle`); the page imports it from there.
//
// Safety does not rest on one layer. Raw HTML in the model's text is escaped by the renderer
// below, so `<img onerror>`, `<script>`, `<iframe>` and `<svg onload>` arrive as text; links
// keep only http(s) and mailto targets; the HTML is then sanitized against an allowlist of
// marked's own tags with no event handler, style or data attribute; and the page's
// Content-Security-Policy forbids inline script should anything get through anyway.

import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/common";
import { Marked } from "marked";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const LINKABLE = new Set(["http:", "https:", "mailto:"]);

/** `href` as an absolute URL if a reply may link to it (http, https, mailto), else null:
 * `javascript:`, `data:`, `vbscript:`, `blob:` and anything unparsable are dropped. */
export function safeUrl(href) {
  try {
    const url = new URL(href, document.baseURI);
    return LINKABLE.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

// A fence's info string names the language; anything but a plain name gets no class at all.
const LANGUAGE = /^[\w+#.-]{1,40}$/;

const marked = new Marked({
  gfm: true,
  renderer: {
    // The model's HTML is shown as the text it is, never parsed as markup.
    html({ text, block }) {
      return block ? `<p>${escape(text.replace(/\n+$/, ""))}</p>\n` : escape(text);
    },
    link({ href, title, tokens }) {
      const text = this.parser.parseInline(tokens);
      const url = safeUrl(href);
      if (url === null) return text; // the words stay, the target goes
      return `<a href="${escape(url)}"${title ? ` title="${escape(title)}"` : ""}>${text}</a>`;
    },
    // No remote images: an image URL the model writes can carry the conversation to a third
    // party the moment it loads. It becomes a link the reader may choose to follow.
    image({ href, text }) {
      const label = escape(`[image: ${text || "untitled"}]`);
      const url = safeUrl(href);
      return url === null ? label : `<a href="${escape(url)}">${label}</a>`;
    },
    checkbox({ checked }) {
      return checked ? "☑ " : "☐ ";
    },
    code({ text, lang }) {
      const name = (lang || "").match(/^\S*/)[0];
      const language = LANGUAGE.test(name) ? name : "";
      const known = language !== "" && hljs.getLanguage(language) !== undefined;
      // Only a named language is highlighted: guessing one while the block streams in would
      // restyle it as the guess changes, and costs a pass of every grammar.
      const body = known
        ? hljs.highlight(text, { language, ignoreIllegals: true }).value
        : escape(text);
      const classes = language ? ` class="language-${escape(language)}${known ? " hljs" : ""}"` : "";
      return `<pre><code${classes}>${body}</code></pre>\n`;
    },
  },
});

// What marked's renderer above can produce, and highlight.js's spans.
const ALLOWED_TAGS = [
  "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li",
  "ol", "p", "pre", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
];
const PURIFY = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ["href", "title", "class", "start", "align"],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  // Every attribute not listed as URI-safe must match this, so align and start are listed.
  ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i,
  ADD_URI_SAFE_ATTR: ["align", "start"],
  RETURN_DOM_FRAGMENT: true,
};
const purify = DOMPurify; // the bundle's own copy: nothing else shares its hooks
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A" && node.hasAttribute("href")) {
    // A reply's links open elsewhere and get no handle on this page (window.opener).
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

/** One top-level Markdown block as sanitized, decorated DOM. */
function renderBlock(token, links) {
  const tokens = [token];
  tokens.links = links;
  const fragment = purify.sanitize(marked.parser(tokens), PURIFY);
  // marked puts a newline between blocks; without it a reply's textContent is its text.
  for (const node of [...fragment.childNodes]) {
    if (node.nodeType === Node.TEXT_NODE && !node.textContent.trim()) node.remove();
  }
  for (const pre of fragment.querySelectorAll("pre")) decorateCode(pre);
  for (const table of fragment.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap"; // wide tables scroll in place, not the page
    table.replaceWith(wrap);
    wrap.append(table);
  }
  return fragment;
}

function decorateCode(pre) {
  const code = pre.querySelector("code");
  const language = [...(code?.classList ?? [])].find((c) => c.startsWith("language-"));
  const box = document.createElement("div");
  box.className = "code-block";
  const head = document.createElement("div");
  head.className = "code-head";
  const label = document.createElement("span");
  label.className = "code-lang";
  label.textContent = language ? language.slice("language-".length) : "text";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.textContent = "Copy";
  copy.title = "Copy the code";
  head.append(label, copy);
  pre.replaceWith(box);
  box.append(head, pre);
}

// While a reply streams, each render lexes again only its last few blocks, from the start of
// the third last that is not blank: a block can still change while text that may join it comes
// (an item after a blank line joins the list above it, a line of === turns a paragraph into a
// heading). Three was found by streaming random Markdown a character at a time and comparing
// with lexing the whole text each time, which two does not always match. The end of the stream
// lexes the whole text regardless, so the reply ends as marked renders it whole.
const OPEN_BLOCKS = 3;
// A link reference definition, which changes blocks anywhere before it: then the whole text is
// lexed every time (rare in a model's replies, so the cost is rarely paid).
const DEFINITION = /^[ \t>*+\-\d.)]*\[[^\]]+\]:/m;

/**
 * A message's Markdown, rendered as it streams in.
 *
 * Only the blocks whose source changed since the last render are rebuilt, which while
 * streaming is the last, still open one: finished blocks keep their elements, so a selection,
 * a scrolled code block or a click on Copy in them survives the tokens that follow. Renders are
 * coalesced to one per animation frame, so a fast stream costs a render per frame, not per
 * token, and each lexes only the end of the text (OPEN_BLOCKS), so a long reply costs no more
 * per frame than a short one.
 */
export class MarkdownView {
  /** @param {HTMLElement} element @param {() => void} [onRender] */
  constructor(element, onRender = () => {}) {
    this.element = element;
    this.onRender = onRender;
    /** @type {{ raw: string, type: string, end: number, node: HTMLElement }[]} */
    this.blocks = [];
    this.links = "{}";
    this.text = "";
    this.rendered = ""; // the (normalized) text the blocks show
    this.exact = false;
    this.frame = 0;
  }

  /** Show `text` at the next animation frame. */
  update(text) {
    this.text = text;
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render(false);
      });
    }
  }

  /** Show `text` now, lexed whole: the stream has ended, or the message was stored. */
  flush(text = this.text) {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.text = text;
    this.render(true);
  }

  render(whole) {
    const text = this.text.replace(/\r\n?/g, "\n"); // as marked's lexer does
    let start = 0; // the first block lexed again
    if (!whole && this.exact && text.startsWith(this.rendered) && !DEFINITION.test(text)) {
      start = this.blocks.length;
      for (let open = 0; start > 0 && open < OPEN_BLOCKS; ) {
        start--;
        if (this.blocks[start].type !== "space") open++;
      }
    }
    const offset = start ? this.blocks[start - 1].end : 0;
    const tokens = marked.lexer(text.slice(offset));
    const links = JSON.stringify(tokens.links);
    if (start && links !== this.links) return this.render(true);
    let kept = start;
    if (links === this.links) {
      // A link definition changes how earlier blocks render: then all of them are rebuilt.
      for (const token of tokens) {
        if (kept >= this.blocks.length || this.blocks[kept].raw !== token.raw) break;
        kept++;
      }
    } else {
      kept = 0;
    }
    for (const stale of this.blocks.splice(kept)) stale.node.remove();
    let end = kept ? this.blocks[kept - 1].end : 0;
    for (const token of tokens.slice(kept - start)) {
      const node = document.createElement("div");
      node.className = "block";
      node.append(renderBlock(token, tokens.links));
      this.element.append(node);
      end += token.raw.length;
      this.blocks.push({ raw: token.raw, type: token.type, end, node });
    }
    this.links = links;
    this.rendered = text;
    // The blocks' ends are where the next render starts lexing: only while they add up to the
    // text (they always have; should marked ever drop a character, lex it whole instead).
    this.exact = end === text.length;
    this.onRender();
  }
}

/** Put `text` on the clipboard; falls back to a selection and execCommand where the page is
 * not a secure context (plain http to a name other than localhost has no navigator.clipboard)
 * or the clipboard API refuses. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch {
      // refused (the document lost focus, a permission policy): try the old way
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  try {
    if (!document.execCommand("copy")) throw new Error("the browser refused to copy");
  } finally {
    area.remove();
  }
}

/** Make the Copy buttons of code blocks under `root` work (one listener for all of them). */
export function handleCodeCopy(root) {
  root.addEventListener("click", (event) => {
    const button = event.target.closest?.(".code-block button.copy");
    if (!button) return;
    const code = button.closest(".code-block").querySelector("pre code");
    copyText(code.textContent).then(
      () => flash(button, "Copied"),
      () => flash(button, "Copy failed"),
    );
  });
}

/** Show `text` on `button` for a moment. */
export function flash(button, text) {
  const label = button.dataset.label ?? button.textContent;
  button.dataset.label = label;
  button.textContent = text;
  clearTimeout(Number(button.dataset.timer));
  button.dataset.timer = String(setTimeout(() => { button.textContent = label; }, 1500));
}
