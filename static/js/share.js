// The public share page: the frozen snapshot rendered as sanitized Markdown, and
// "Continue this chat", which copies it into the visitor's own session.
/* global gettext */
import { api, applyTheme, describeFailure, renderMarkdown } from "./render.js";

const read = (id) => JSON.parse(document.getElementById(id).textContent);

// The page arrives with every message as escaped text (readable without scripts); answers
// are turned into Markdown as they come near the screen, so a 2 MB share opens at once.
function render(onFirstPaint) {
  const container = document.getElementById("shared");
  const articles = container.querySelectorAll("article");
  const contents = new Map();
  let index = 0;
  for (const block of read("snapshot")) {
    for (const message of block.messages) {
      const article = articles[index++];
      if (article && message.role !== "user") contents.set(article, message.content); // user text stays as typed
    }
  }
  let first = true;
  const observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting || !contents.has(entry.target)) continue;
        const bubble = entry.target.querySelector(".bubble");
        bubble.classList.add("markdown");
        renderMarkdown(bubble, contents.get(entry.target));
        contents.delete(entry.target);
        observer.unobserve(entry.target);
      }
      if (first) {
        first = false;
        onFirstPaint();
      }
    },
    { rootMargin: "1500px 0px" },
  );
  for (const article of contents.keys()) observer.observe(article);
  if (!contents.size) onFirstPaint();
}

async function continueChat() {
  const button = document.getElementById("continue");
  button.disabled = true;
  try {
    if (!read("has-session")) await api("/api/session/bootstrap", { method: "POST" });
    const result = await api(`/api/share/${read("share-id")}/continue`, { method: "POST" });
    location.href = result.url;
  } catch (failure) {
    button.disabled = false;
    alert(describeFailure(failure));
  }
}

applyTheme();
document.getElementById("continue").addEventListener("click", continueChat);
render(() => (document.body.dataset.ready = "true"));
