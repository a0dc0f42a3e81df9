// Markdown → sanitized HTML, shared by the chat and the share page (and, re-exported, the
// helpers of common.js, so these pages import from one place).
// markdown-it (raw HTML off) + markdown-it-texmath/KaTeX for $…$, $$…$$, \(…\), \[…\]
// + highlight.js, then DOMPurify: nothing a message contains can run script.
/* global markdownit, DOMPurify, hljs, katex, texmath, gettext */

import { copyText } from "./common.js";

const md = markdownit({ html: false, linkify: true, breaks: false });
md.use(texmath, {
  engine: katex,
  delimiters: ["dollars", "brackets"],
  katexOptions: { throwOnError: false, strict: "ignore", trust: false, maxExpand: 500 },
});
md.options.highlight = (code, lang) => {
  const language = lang && hljs.getLanguage(lang) ? lang : null;
  const html = language ? hljs.highlight(code, { language, ignoreIllegals: true }).value : md.utils.escapeHtml(code);
  return `<pre><code class="hljs${language ? " language-" + language : ""}">${html}</code></pre>`;
};

// Images load only from this origin or data:/blob: URLs (the page's CSP says the same): an
// answer that a prompt-injected page wrote cannot leak the chat through an image URL. A
// remote image stays visible as its alt text and address, not fetched.
function isLocalImage(src) {
  try {
    const url = new URL(src, location.href);
    return url.protocol === "data:" || url.protocol === "blob:" || url.origin === location.origin;
  } catch (e) {
    return false;
  }
}

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.getAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
  if (node.tagName === "IMG") {
    const src = node.getAttribute("src") || "";
    node.removeAttribute("srcset");
    if (src && !isLocalImage(src)) {
      node.removeAttribute("src");
      node.setAttribute("alt", `[${node.getAttribute("alt") || "image"}: ${src}]`);
      node.classList.add("blocked-image");
    }
  }
});

const PURIFY = { USE_PROFILES: { html: true, mathMl: true, svg: true }, FORBID_TAGS: ["style", "form", "input"] };

export function markdownToHtml(text) {
  return DOMPurify.sanitize(md.render(text || ""), PURIFY);
}

// Render into `element`; code blocks get a copy button (made with DOM calls, not HTML).
export function renderMarkdown(element, text) {
  element.innerHTML = markdownToHtml(text);
  for (const pre of element.querySelectorAll("pre")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = gettext("Copy");
    button.addEventListener("click", async () => {
      await copyText(pre.querySelector("code")?.innerText ?? pre.innerText);
      button.textContent = gettext("Copied");
      setTimeout(() => (button.textContent = gettext("Copy")), 1500);
    });
    pre.append(button);
  }
}

export { ApiFailure, api, applyTheme, copyText, csrfToken, describeFailure, el, toggleTheme } from "./common.js";
