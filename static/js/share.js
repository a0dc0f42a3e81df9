// The public share page: the frozen snapshot rendered as sanitized Markdown, and
// "Continue this chat", which copies it into the visitor's own session.
/* global gettext */
import { api, applyTheme, describeFailure, renderMarkdown } from "./render.js";

const read = (id) => JSON.parse(document.getElementById(id).textContent);

function render() {
  const container = document.getElementById("shared");
  const articles = container.querySelectorAll("article");
  let index = 0;
  for (const block of read("snapshot")) {
    for (const message of block.messages) {
      const article = articles[index++];
      if (!article || message.role === "user") continue; // user text stays plain (as typed)
      const bubble = article.querySelector(".bubble");
      bubble.classList.add("markdown");
      renderMarkdown(bubble, message.content);
    }
  }
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
render();
document.getElementById("continue").addEventListener("click", continueChat);
document.body.dataset.ready = "true";
