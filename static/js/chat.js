// The chat page. Conversations live on the server; answers are generated server-side and
// watched over SSE (/api/messages/{id}/stream), so a reload re-attaches to a live answer.
/* global gettext, ngettext, interpolate */
import {
  api,
  ApiFailure,
  applyTheme,
  copyText,
  csrfToken,
  describeFailure,
  el,
  renderMarkdown,
  toggleTheme,
} from "./render.js";
import { openViewer } from "/gg-doc-viewer.js";

const $ = (id) => document.getElementById(id);
const data = (id) => JSON.parse($(id).textContent);
const LIMITS = data("limits");
const POLL_MS = 400;
const DOCUMENT_TYPES = /\.(pdf|docx|txt|text|md|markdown|csv|html?)$/i; // files the server indexes (documents/extract.py)
const DOCUMENT_MEDIA = ["application/pdf", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "text/plain", "text/markdown", "text/csv", "text/html"];
const OPTIONS = ["temperature", "max_tokens", "seed"]; // sampling settings sent with each turn

const state = {
  conversations: [],
  conversation: null, // {id, title, model, system_prompt, current_leaf}
  messages: new Map(), // id -> message
  path: [], // messages shown, root → leaf
  watching: null, // {id, source}
  pending: [], // attachments in the composer
  pinned: true, // follow the answer while it streams
  project: null, // the project open in the sidebar: {id, name, instructions, archived, conversations}
  projects: [],
  showArchived: false,
  searching: false,
};

// --- helpers ------------------------------------------------------------------------------

function announce(text) {
  $("announcer").textContent = text;
}

function draftKey() {
  return `gg-draft:${state.conversation?.id || "new"}`;
}

function saveDraft() {
  try {
    const value = $("input").value;
    if (value) localStorage.setItem(draftKey(), value);
    else localStorage.removeItem(draftKey());
  } catch {}
}

function loadDraft() {
  try {
    $("input").value = localStorage.getItem(draftKey()) || "";
  } catch {}
}

function showError(text) {
  const box = el("div", { class: "msg" }, el("div", { class: "error", role: "alert" }, text));
  $("messages").append(box);
  scrollToEnd(true);
}

// --- sidebar ------------------------------------------------------------------------------
// Projects, then pinned chats, then the recent ones; inside a project, its own chats. A
// search lists matching chats, each with the line that matched: a click opens the message.

async function loadConversations() {
  const query = $("search").value.trim();
  const params = new URLSearchParams();
  if (query) params.set("q", query);
  const inProject = state.project && (!query || $("search-scope").value === "project");
  if (inProject) params.set("project", state.project.id);
  else if (!query) params.set("project", "none");
  // While searching (a request per pause in typing) the projects are not shown: not asked for.
  const [result, projects] = await Promise.all([
    api(`/api/conversations?${params}`),
    query ? null : api(`/api/projects${state.showArchived ? "?archived=1" : ""}`),
  ]);
  state.conversations = result.data;
  state.searching = Boolean(query);
  if (projects) state.projects = projects.data;
  if (state.project) state.project = state.projects.find((p) => p.id === state.project.id) || state.project;
  renderSidebar();
}

function conversationItem(c) {
  const match = c.match;
  return el(
    "li",
    { class: c.id === state.conversation?.id ? "active" : "", "data-id": c.id },
    el("a", { href: `/?c=${c.id}`, onclick: (e) => (e.preventDefault(), openConversation(c.id, match?.message_id)) },
      el("span", { class: "name" }, c.title || gettext("New chat")),
      match?.excerpt ? el("span", { class: "excerpt" }, match.excerpt) : null),
    el("button", { type: "button", class: "icon", title: c.pinned ? gettext("Unpin") : gettext("Pin"), "aria-label": c.pinned ? gettext("Unpin") : gettext("Pin"), "aria-pressed": String(c.pinned), onclick: () => pin(c) }, c.pinned ? "★" : "☆"),
    el("button", { type: "button", class: "icon", title: gettext("Move to a project"), "aria-label": gettext("Move to a project"), onclick: () => move(c) }, "⇄"),
    el("a", { class: "icon", href: `/api/conversations/${c.id}/export?format=md`, download: "", title: gettext("Export as Markdown"), "aria-label": gettext("Export as Markdown") }, "⤓"),
    el("button", { type: "button", class: "icon", title: gettext("Rename"), "aria-label": gettext("Rename"), onclick: () => rename(c) }, "✎"),
    el("button", { type: "button", class: "icon", title: gettext("Delete"), "aria-label": gettext("Delete"), onclick: () => remove(c) }, "×"),
  );
}

function renderSidebar() {
  const project = state.project;
  $("project-bar").hidden = !project;
  if (project) $("project-name").textContent = project.name + (project.archived ? ` (${gettext("archived")})` : "");
  $("search-scope-label").hidden = !project;
  $("projects-section").hidden = Boolean(project) || state.searching;
  $("projects").replaceChildren(
    ...state.projects.map((p) =>
      el("li", { "data-id": p.id, class: p.archived ? "archived" : "" },
        el("a", { href: `/?p=${p.id}`, onclick: (e) => (e.preventDefault(), openProject(p)) }, p.name),
        el("span", { class: "count", title: gettext("Chats") }, String(p.conversations))),
    ),
  );
  $("show-archived").textContent = state.showArchived ? gettext("Hide archived projects") : gettext("Show archived projects");
  const pinned = state.searching ? [] : state.conversations.filter((c) => c.pinned);
  $("pinned-section").hidden = !pinned.length;
  $("pinned").replaceChildren(...pinned.map(conversationItem));
  const rest = state.searching ? state.conversations : state.conversations.filter((c) => !c.pinned);
  $("recent-heading").textContent = state.searching ? gettext("Found") : project ? gettext("Chats in this project") : gettext("Recent");
  $("conversations").replaceChildren(...rest.map(conversationItem));
}

async function openProject(project) {
  state.project = project;
  state.conversations = []; // the other list's, until this one's arrive
  $("search").value = "";
  history.replaceState(null, "", `/?p=${project.id}`);
  newChat();
  await loadConversations();
}

async function leaveProject() {
  state.project = null;
  state.conversations = [];
  $("search").value = "";
  newChat();
  await loadConversations();
}

function editProject(project) {
  const dialog = $("project-dialog");
  dialog.dataset.id = project?.id || "";
  $("project-dialog-title").textContent = project ? gettext("Project") : gettext("New project");
  $("project-form-name").value = project?.name || "";
  $("project-form-instructions").value = project?.instructions || "";
  fillEmbeddingModels(project?.embedding_model);
  $("project-form-error").hidden = true;
  $("project-archive").hidden = $("project-delete").hidden = !project;
  $("project-archive").textContent = project?.archived ? gettext("Restore") : gettext("Archive");
  $("project-files").hidden = !project;
  $("project-files-list").replaceChildren();
  dialog.showModal();
  $("project-form-name").focus();
  if (project) loadProjectFiles(project.id);
}

// The model that embeds a project's files: the built-in one, or a routed embeddings model
// (priced: whoever adds a file, or changes the model, pays for its passages).
const BUILT_IN_EMBEDDINGS = "all-MiniLM-L6-v2";

function fillEmbeddingModels(current) {
  const routed = state.embeddingModels || [];
  const select = $("project-form-embedding");
  const priced = (m) => m.pricing && m.pricing.prompt_per_million;
  select.replaceChildren(
    el("option", { value: BUILT_IN_EMBEDDINGS }, interpolate(gettext("Built in (%s, free)"), [BUILT_IN_EMBEDDINGS])),
    ...routed.map((m) => el("option", { value: m.id }, priced(m) ? `${m.id} · ${gettext("priced")}` : m.id)));
  select.value = current && [BUILT_IN_EMBEDDINGS, ...routed.map((m) => m.id)].includes(current) ? current : BUILT_IN_EMBEDDINGS;
  select.dataset.initial = select.value;
  $("project-form-embedding-label").hidden = !routed.length;
}

// --- a project's files ------------------------------------------------------------------------

async function loadProjectFiles(id) {
  const list = await api(`/api/documents?project=${id}`);
  if ($("project-dialog").dataset.id !== id) return;
  $("project-files-list").replaceChildren(...list.data.map(projectFileItem));
  for (const document of list.data) if (document.status === "queued" || document.status === "indexing") followProjectFile(document);
}

function projectFileItem(document) {
  const status = document.status === "ready"
    ? interpolate(ngettext("%s page", "%s pages", document.pages), [document.pages])
    : document.status === "failed" ? errorText(document.error || {}) : interpolate(gettext("indexing… %s%"), [document.progress || 0]);
  return el("li", { "data-id": document.id, "data-status": document.status },
    el("button", { type: "button", class: "link name", onclick: () => openDocument({ ...document, document_id: document.id, format: document.kind }) }, document.name),
    el("span", { class: document.status === "failed" ? "status error" : "status" }, status),
    el("button", { type: "button", class: "icon", "aria-label": interpolate(gettext("Remove %s"), [document.name]), onclick: () => removeProjectFile(document) }, "✕"));
}

function showProjectFile(document) {
  const list = $("project-files-list");
  const item = projectFileItem(document);
  const old = list.querySelector(`li[data-id="${document.id}"]`);
  if (old) old.replaceWith(item);
  else list.append(item);
}

async function followProjectFile(document) {
  try {
    showProjectFile(await waitForDocument(document, (progress) => showProjectFile({ ...document, status: "indexing", progress })));
  } catch (failure) {
    showProjectFile({ ...document, status: "failed", error: failure.error || { message: describeFailure(failure) } });
  }
}

async function addProjectFiles(event) {
  const id = $("project-dialog").dataset.id;
  const files = [...event.target.files];
  event.target.value = "";
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("project_id", id);
    try {
      const document = await api("/api/documents", { method: "POST", form });
      showProjectFile(document);
      followProjectFile(document);
    } catch (failure) {
      showError(describeFailure(failure));
    }
  }
}

async function addProjectPage() {
  const url = $("project-url").value.trim();
  if (!url) return;
  try {
    const document = await api("/api/documents", { method: "POST", body: { url, project_id: $("project-dialog").dataset.id } });
    $("project-url").value = "";
    showProjectFile(document);
    followProjectFile(document);
  } catch (failure) {
    showError(describeFailure(failure));
  }
}

async function removeProjectFile(document) {
  await api(`/api/documents/${document.id}`, { method: "DELETE" });
  $("project-files-list").querySelector(`li[data-id="${document.id}"]`)?.remove();
}

async function saveProject(event) {
  event.preventDefault();
  const id = $("project-dialog").dataset.id;
  const body = { name: $("project-form-name").value, instructions: $("project-form-instructions").value };
  const embedding = $("project-form-embedding");
  if (embedding.value !== embedding.dataset.initial) body.embedding_model = embedding.value;
  try {
    const project = await api(id ? `/api/projects/${id}` : "/api/projects", { method: id ? "PATCH" : "POST", body });
    $("project-dialog").close();
    if (project.embedding_pending) {
      announce(interpolate(ngettext("%s file is being read again by %s.", "%s files are being read again by %s.", project.embedding_pending), [project.embedding_pending, project.embedding_model]));
    }
    if (id) {
      if (state.project?.id === id) state.project = project;
      await loadConversations();
    } else {
      await openProject(project);
    }
  } catch (failure) {
    $("project-form-error").textContent = describeFailure(failure);
    $("project-form-error").hidden = false;
  }
}

async function archiveProject() {
  const id = $("project-dialog").dataset.id;
  const project = state.projects.find((p) => p.id === id) || state.project;
  const updated = await api(`/api/projects/${id}`, { method: "PATCH", body: { archived: !project.archived } });
  $("project-dialog").close();
  if (state.project?.id === id) state.project = updated;
  if (updated.archived) announce(interpolate(gettext("“%s” is archived."), [updated.name]));
  await loadConversations();
}

async function deleteProject() {
  const id = $("project-dialog").dataset.id;
  const project = state.projects.find((p) => p.id === id) || state.project;
  const question = interpolate(
    ngettext("Delete the project “%s” and its %s chat? This cannot be undone.", "Delete the project “%s” and its %s chats? This cannot be undone.", project.conversations),
    [project.name, project.conversations],
  );
  if (!confirm(question)) return;
  await api(`/api/projects/${id}`, { method: "DELETE" });
  $("project-dialog").close();
  if (state.conversation?.project_id === id) state.conversation = null;
  await leaveProject();
}

async function pin(conversation) {
  const updated = await api(`/api/conversations/${conversation.id}`, { method: "PATCH", body: { pinned: !conversation.pinned } });
  conversation.pinned = updated.pinned;
  renderSidebar();
}

function move(conversation) {
  const select = $("move-project");
  select.replaceChildren(
    el("option", { value: "" }, gettext("No project")),
    ...state.projects.filter((p) => !p.archived).map((p) => el("option", { value: p.id }, p.name)),
  );
  select.value = conversation.project_id || "";
  $("move-dialog").dataset.id = conversation.id;
  $("move-dialog").showModal();
}

async function moveChosen(event) {
  event.preventDefault();
  const id = $("move-dialog").dataset.id;
  const project = $("move-project").value || null;
  try {
    const updated = await api(`/api/conversations/${id}`, { method: "PATCH", body: { project_id: project } });
    if (state.conversation?.id === id) state.conversation.project_id = updated.project_id;
    $("move-dialog").close();
    await loadConversations();
  } catch (failure) {
    $("move-dialog").close();
    showError(describeFailure(failure));
  }
}

async function rename(conversation) {
  const title = prompt(gettext("New name for this chat:"), conversation.title);
  if (title === null) return;
  const updated = await api(`/api/conversations/${conversation.id}`, { method: "PATCH", body: { title } });
  conversation.title = updated.title;
  if (state.conversation?.id === conversation.id) {
    state.conversation.title = updated.title;
    $("conversation-title").textContent = updated.title;
  }
  renderSidebar();
}

async function remove(conversation) {
  if (!confirm(interpolate(gettext("Delete “%s”? This cannot be undone."), [conversation.title || gettext("New chat")]))) return;
  await api(`/api/conversations/${conversation.id}`, { method: "DELETE" });
  state.conversations = state.conversations.filter((c) => c.id !== conversation.id);
  if (state.conversation?.id === conversation.id) newChat();
  renderSidebar();
}

// --- conversation -------------------------------------------------------------------------

function newChat() {
  stopWatching();
  state.conversation = null;
  state.messages.clear();
  state.path = [];
  history.replaceState(null, "", state.project ? `/?p=${state.project.id}` : "/");
  $("conversation-title").textContent = state.project ? `${state.project.name} / ${gettext("New chat")}` : gettext("New chat");
  $("share").disabled = true;
  if ($("system-prompt")) $("system-prompt").value = "";
  renderMessages();
  loadDraft();
  renderSidebar();
  $("input").focus();
}

// `found`: a message to show (a search's match) — on its own branch when it is on another.
async function openConversation(id, found = null) {
  stopWatching();
  saveDraft();
  const conversation = await api(`/api/conversations/${id}`);
  state.conversation = conversation;
  state.messages = new Map(conversation.messages.map((m) => [m.id, m]));
  computePath();
  const target = found && state.messages.get(found);
  if (target && !state.path.includes(target)) {
    indexTree();
    state.conversation.current_leaf = latestLeaf(target).id;
    computePath();
  }
  history.replaceState(null, "", `/?c=${id}`);
  try {
    localStorage.setItem("gg-last", id);
  } catch {}
  $("conversation-title").textContent = titleOf(conversation);
  $("share").disabled = state.path.length === 0;
  if (conversation.model) $("model").value = conversation.model;
  if ($("system-prompt")) $("system-prompt").value = conversation.system_prompt || "";
  loadDraft();
  renderMessages(Boolean(target));
  renderSidebar();
  scrollToEnd(true);
  if (target) showFound(target.id);
  const last = state.path[state.path.length - 1];
  if (last?.status === "streaming") watch(last.id);
  document.getElementById("app").classList.remove("menu-open");
}

function titleOf(conversation) {
  const project = conversation.project_id && state.projects.find((p) => p.id === conversation.project_id);
  const title = conversation.title || gettext("New chat");
  return project ? `${project.name} / ${title}` : title;
}

function computePath() {
  indexTree();
  const path = [];
  let current = state.messages.get(state.conversation?.current_leaf);
  const seen = new Set();
  while (current && !seen.has(current.id)) {
    seen.add(current.id);
    path.push(current);
    current = current.parent_id ? state.messages.get(current.parent_id) : null;
  }
  state.path = path.reverse();
}

// parent id (or "") → its children in creation order; rebuilt whenever the tree changes.
let childrenOf = new Map();

function indexTree() {
  childrenOf = new Map();
  for (const message of state.messages.values()) {
    const key = message.parent_id || "";
    if (!childrenOf.has(key)) childrenOf.set(key, []);
    childrenOf.get(key).push(message);
  }
}

function siblings(message) {
  return (childrenOf.get(message.parent_id || "") || []).filter((m) => m.role === message.role);
}

function latestLeaf(message) {
  let current = message;
  for (;;) {
    const children = childrenOf.get(current.id) || [];
    if (!children.length) return current;
    current = children[children.length - 1];
  }
}

async function switchBranch(message, step) {
  const list = siblings(message);
  const next = list[list.indexOf(message) + step];
  if (!next) return;
  const leaf = latestLeaf(next);
  await api(`/api/conversations/${state.conversation.id}`, { method: "PATCH", body: { current_leaf: leaf.id } });
  state.conversation.current_leaf = leaf.id;
  stopWatching();
  computePath();
  renderMessages();
  if (leaf.status === "streaming") watch(leaf.id);
}

// --- messages -----------------------------------------------------------------------------

const EAGER_MESSAGES = 30; // drawn at once; older ones follow in idle time, newest first
const CHUNK = 40;
let renderRound = 0;

function showFound(id) {
  const article = document.querySelector(`article[data-id="${id}"]`);
  if (!article) return;
  state.pinned = false;
  article.classList.add("found");
  article.scrollIntoView({ block: "center" });
  setTimeout(() => article.classList.remove("found"), 4000);
}

// `all`: draw every message at once (to scroll to one that may be old).
function renderMessages(all = false) {
  const box = $("messages");
  const round = ++renderRound;
  box.replaceChildren();
  if (!state.path.length) {
    box.append(
      el("div", { class: "empty", id: "empty" }, el("h1", {}, gettext("What can I help with?")),
        el("p", {}, gettext("Attach PDFs, images or audio, or turn on web research for rates and weather."))),
    );
    return;
  }
  const split = all ? 0 : Math.max(0, state.path.length - EAGER_MESSAGES);
  box.append(...state.path.slice(split).map(messageView));
  if (split > 0) renderOlder(round, state.path.slice(0, split));
}

// Long chats: the newest messages are on screen at once; older ones are drawn above them in
// idle time, keeping what the person is looking at in place.
function renderOlder(round, older) {
  let end = older.length;
  const step = () => {
    if (round !== renderRound) return; // another conversation or branch was drawn since
    const box = $("messages");
    const from = Math.max(0, end - CHUNK);
    const fragment = document.createDocumentFragment();
    for (const message of older.slice(from, end)) fragment.append(messageView(message));
    const height = box.scrollHeight;
    box.prepend(fragment);
    box.scrollTop += box.scrollHeight - height;
    end = from;
    if (end > 0) idle(step);
  };
  idle(step);
}

const idle = (callback) => (window.requestIdleCallback ? requestIdleCallback(callback, { timeout: 100 }) : setTimeout(callback, 1));

function attachmentChips(message) {
  if (!message.attachments?.length) return null;
  return el(
    "div",
    { class: "attachments" },
    ...message.attachments.map((a) =>
      el("button", { type: "button", class: "chip", onclick: () => (a.kind === "document" ? openDocument(a) : openViewer({ ...a, dataUrl: a.data_url, blob: a.blob })) },
        `${{ pdf: "PDF", image: gettext("Image"), audio: gettext("Audio"), web: gettext("Web"), url: gettext("Link"), document: gettext("File") }[a.kind] || ""}: `, el("span", { class: "name" }, a.name || a.kind)),
    ),
  );
}

function messageView(message) {
  const isUser = message.role === "user";
  const bubble = el("div", { class: isUser ? "bubble" : "bubble markdown" });
  if (isUser) bubble.textContent = message.content;
  else {
    renderMarkdown(bubble, message.content);
    if (message.status !== "streaming") linkCitations(bubble, message.retrieval);
  }
  const article = el(
    "article",
    { class: `msg ${message.role}${message.status === "streaming" ? " streaming" : ""}`, "data-id": message.id, "aria-busy": message.status === "streaming" ? "true" : "false" },
    el("div", { class: "role" }, isUser ? gettext("You") : message.model || "GhostGPT"),
    bubble,
    attachmentChips(message),
    retrievalLine(message.retrieval),
    message.error ? el("div", { class: "error", role: "alert" }, errorText(message.error)) : null,
    message.status === "stopped" ? el("div", { class: "status" }, gettext("Stopped")) : null,
    actions(message),
  );
  return article;
}

function errorText(error) {
  return describeFailure(new ApiFailure(error.status, error, error.retry_after));
}

function actions(message) {
  const bar = el("div", { class: "actions" });
  const list = siblings(message);
  if (list.length > 1) {
    const index = list.indexOf(message);
    bar.append(
      el("span", { class: "branches" },
        el("button", { type: "button", class: "icon", "aria-label": gettext("Previous version"), disabled: index === 0, onclick: () => switchBranch(message, -1) }, "‹"),
        `${index + 1}/${list.length}`,
        el("button", { type: "button", class: "icon", "aria-label": gettext("Next version"), disabled: index === list.length - 1, onclick: () => switchBranch(message, 1) }, "›")),
    );
  }
  bar.append(el("button", { type: "button", class: "icon", title: gettext("Copy"), onclick: () => copyText(message.content) }, gettext("Copy")));
  if (message.role === "user") {
    bar.append(el("button", { type: "button", class: "icon", onclick: () => editMessage(message) }, gettext("Edit")));
    if (message.attachments?.some((a) => a.text)) {
      bar.append(el("button", { type: "button", class: "icon", onclick: () => showModelView(message) }, gettext("What the model saw")));
    }
  } else if (message.status !== "streaming") {
    bar.append(el("button", { type: "button", class: "icon", onclick: () => regenerate(message) }, gettext("Regenerate")));
  }
  return bar;
}

async function showModelView(message) {
  const view = await api(`/api/conversations/${state.conversation.id}/messages/${message.id}/model-view`);
  openViewer({ name: gettext("What the model saw"), kind: "text", text: view.text });
}

function editMessage(message) {
  const article = document.querySelector(`article[data-id="${message.id}"]`);
  const area = el("textarea", { class: "edit", rows: 4, "aria-label": gettext("Edit message") });
  area.value = message.content;
  const save = el("button", { type: "button", class: "primary" }, gettext("Save and send"));
  const cancel = el("button", { type: "button" }, gettext("Cancel"));
  const box = el("div", { class: "composer" }, area, el("div", { class: "row" }, save, cancel));
  article.querySelector(".bubble").replaceWith(box);
  area.focus();
  cancel.addEventListener("click", renderMessages);
  save.addEventListener("click", () =>
    startTurn({ content: area.value, parent_id: message.parent_id, attachments: message.attachments || [] }),
  );
}

// --- scrolling ----------------------------------------------------------------------------

function nearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 60;
}

function scrollToEnd(force = false) {
  const box = $("messages");
  if (force || state.pinned) {
    box.scrollTop = box.scrollHeight;
    state.pinned = true;
  }
  $("jump").hidden = state.pinned || !state.watching;
}

// --- sending and watching ----------------------------------------------------------------

// A new chat has no conversation yet: its first turn goes to /api/conversations/new/…,
// which creates it in the same request.
function adoptConversation(conversation) {
  if (state.conversation?.id === conversation.id) {
    Object.assign(state.conversation, conversation);
  } else {
    try {
      localStorage.removeItem(draftKey()); // the "new chat" draft was just sent
    } catch {}
    state.conversation = { ...conversation };
    history.replaceState(null, "", `/?c=${conversation.id}`);
  }
  $("conversation-title").textContent = titleOf(state.conversation);
  $("share").disabled = false;
}

// Sends a turn; the answer streams back in the same response (one request). Resolves
// true once the server accepted the turn, while the answer keeps streaming.
async function startTurn(body) {
  if (state.watching) return false;
  setBusy(true);
  const target = state.conversation?.id || "new";
  const system = state.conversation ? {} : { system_prompt: $("system-prompt")?.value || "", project_id: state.project?.id || null };
  let response;
  try {
    response = await fetch(`/api/conversations/${target}/messages`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ model: $("model").value, ...samplingOptions(), ...system, ...body }),
    });
  } catch {
    setBusy(false);
    showError(describeFailure(new ApiFailure(0)));
    return false;
  }
  if (!response.ok) {
    let error = null;
    try {
      error = (await response.json()).error;
    } catch {}
    setBusy(false);
    showError(describeFailure(new ApiFailure(response.status, error, Number(response.headers.get("Retry-After")) || undefined)));
    return false;
  }
  return new Promise((accepted) => {
    const reader = response.body.getReader();
    let follower = null;
    readEvents(reader, (name, data) => {
      if (name === "turn") {
        adoptConversation(data.conversation);
        for (const message of [data.user_message, data.assistant_message]) if (message) state.messages.set(message.id, message);
        state.conversation.current_leaf = data.assistant_message.id;
        computePath();
        renderMessages();
        scrollToEnd(true);
        follower = follow(data.assistant_message.id, () => reader.cancel());
        accepted(true);
        refreshSidebar();
      } else if (follower) {
        follower[name]?.(data);
      }
    }).then(() => {
      // The response ended without "done" (connection lost): re-attach the usual way.
      if (follower && state.watching?.id === follower.id) watch(follower.id);
      accepted(false);
    });
  });
}

// Server-sent events from a fetch() body: calls onEvent(name, data) for each.
async function readEvents(reader, onEvent) {
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  } catch {
    // cancelled (stop, another conversation) or the connection broke
  }
}

// The sidebar learns about the turn locally (no request competing with the answer).
function refreshSidebar() {
  const current = state.conversation;
  const project = state.projects.find((p) => p.id === current.project_id);
  if (project && !state.conversations.some((c) => c.id === current.id)) project.conversations += 1;
  state.conversations = [
    { ...current },
    ...state.conversations.filter((c) => c.id !== current.id),
  ];
  renderSidebar();
}

function samplingOptions() {
  const options = {};
  for (const name of OPTIONS) {
    const value = $(`opt-${name}`).value;
    if (value !== "") options[name] = Number(value);
  }
  return options;
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
}

// Shows the answer `id` as it streams: snapshot / delta / done handlers, painted once per frame.
function follow(id, close) {
  stopWatching();
  setBusy(true);
  state.watching = { id, close };
  let text = state.messages.get(id)?.content || "";
  let frame = 0;
  const paint = () => {
    frame = 0;
    const message = state.messages.get(id);
    if (!message || state.watching?.id !== id) return;
    message.content = text;
    const article = document.querySelector(`article[data-id="${id}"]`);
    if (article) renderMarkdown(article.querySelector(".bubble"), text);
    scrollToEnd();
  };
  const schedule = () => (frame ||= requestAnimationFrame(paint));
  return {
    id,
    snapshot: (data) => ((text = data.text), schedule()),
    delta: (data) => ((text = text.slice(0, data.offset) + data.text), schedule()),
    done: (data) => finish(id, data),
  };
}

// Re-attaches to an answer that is still being generated (after a reload, a branch switch).
function watch(id) {
  const source = new EventSource(`/api/messages/${id}/stream`);
  const follower = follow(id, () => source.close());
  for (const name of ["snapshot", "delta", "done"]) {
    source.addEventListener(name, (event) => follower[name](JSON.parse(event.data)));
  }
  source.onerror = () => {
    // EventSource reconnects by itself; the server sends a fresh snapshot on reconnect.
    if (source.readyState === EventSource.CLOSED) finish(id, null);
  };
}

function finish(id, done) {
  const message = state.messages.get(id);
  if (message && done) Object.assign(message, { content: done.text, status: done.status, error: done.error, retrieval: done.retrieval ?? message.retrieval });
  stopWatching();
  if (state.path.some((m) => m.id === id)) {
    const article = document.querySelector(`article[data-id="${id}"]`);
    if (article && message) article.replaceWith(messageView(message));
    scrollToEnd();
  }
  announce(message?.status === "failed" ? gettext("The answer failed.") : gettext("The answer is complete."));
}

function stopWatching() {
  if (state.watching) state.watching.close();
  state.watching = null;
  setBusy(false);
  $("jump").hidden = true;
}

async function stopGeneration() {
  const id = state.watching?.id;
  if (!id) return;
  try {
    const message = await api(`/api/messages/${id}/stop`, { method: "POST" });
    finish(id, { text: message.content, status: message.status, error: message.error });
  } catch (failure) {
    showError(describeFailure(failure));
  }
}

async function regenerate(message) {
  await startTurn({ regenerate: message.id });
}

// --- attachments --------------------------------------------------------------------------

function renderChips() {
  $("chips").replaceChildren(
    ...state.pending.map((item) =>
      el("span", { class: `chip${item.failed ? " failed" : ""}` },
        el("button", { type: "button", class: "name", title: item.name, onclick: () => (item.kind === "document" ? previewDocument(item) : openViewer(item)) }, item.name),
        item.progress !== undefined && item.progress < 100 && !item.failed
          ? el("progress", { max: 100, value: item.progress, "aria-label": interpolate(gettext("%s: processing"), [item.name]) })
          : null,
        item.failed ? el("span", {}, item.failed) : null,
        el("button", { type: "button", "aria-label": interpolate(gettext("Remove %s"), [item.name]), onclick: () => removePending(item) }, "✕")),
    ),
  );
}

function removePending(item) {
  state.pending = state.pending.filter((p) => p !== item);
  renderChips();
}

async function runTool(path, file, onProgress) {
  const form = new FormData();
  form.append("file", file, file.name || "recording.webm");
  // Speech in an unclear language is taken to be in the page's own.
  if (path === "/api/transcribe") form.append("language_hint", (document.documentElement.lang || "en").slice(0, 2));
  let job = await api(`${path}?async=1`, { method: "POST", form });
  while (job && job.object === "tool.job" && job.status !== "succeeded" && job.status !== "failed") {
    onProgress(job.progress || 0);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    job = await api(`/api/jobs/${job.id}`);
  }
  if (job?.object !== "tool.job") return job; // answered synchronously
  if (job.status === "failed") throw new ApiFailure(job.error?.status || 422, job.error);
  return job.result;
}

// Chats from an export (GhostGPT, ChatGPT, Open WebUI, LibreChat), as a job with progress.
async function importChats(event) {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  const status = $("import-status");
  try {
    const result = await runTool("/api/import", file, (p) => (status.textContent = interpolate(gettext("Importing… %s%"), [p])));
    status.textContent = "";
    announce(interpolate(ngettext("%s chat imported.", "%s chats imported.", result.conversations), [result.conversations]));
    if (result.missing_attachments?.length) {
      showError(interpolate(gettext("Files the export names but does not hold: %s"), [result.missing_attachments.join(", ")]));
    }
    await loadConversations();
  } catch (failure) {
    status.textContent = "";
    showError(describeFailure(failure));
  }
}

function addFile(file) {
  const type = file.type || "";
  if (type.startsWith("image/")) return addImage(file);
  if (type.startsWith("audio/") || type === "video/webm" || /\.(mp3|m4a|ogg|oga|opus|wav|webm)$/i.test(file.name)) return transcribe(file);
  if (DOCUMENT_TYPES.test(file.name) || DOCUMENT_MEDIA.includes(type)) return addDocument(file);
  showError(interpolate(gettext("%s: this file type is not supported."), [file.name]));
}

function addImage(file) {
  const reader = new FileReader();
  const item = { kind: "image", name: file.name, blob: file };
  reader.onload = () => {
    item.dataUrl = item.data_url = reader.result;
    renderChips();
  };
  reader.readAsDataURL(file);
  state.pending.push(item);
  renderChips();
}

// A file for this chat (PDF, DOCX, text, Markdown, CSV, HTML): uploaded and indexed on the
// server, then read by every turn (the best passages, or the whole text when it fits).
async function addDocument(file) {
  const item = { kind: "document", name: file.name, blob: file, progress: 0, format: file.name.split(".").pop().toLowerCase() };
  state.pending.push(item);
  renderChips();
  if (file.size > LIMITS.document_max_bytes) return failPending(item, gettext("too large"));
  try {
    const document = await uploadDocument(file, state.conversation ? { conversation_id: state.conversation.id } : {}, (p) => ((item.progress = p), renderChips()));
    Object.assign(item, { document_id: document.id, pages: document.pages, progress: 100 });
    renderChips();
  } catch (failure) {
    failPending(item, describeFailure(failure));
  }
}

// Uploads a document and waits for it to be indexed, reporting progress (0-100).
export async function uploadDocument(file, where, onProgress) {
  const form = new FormData();
  form.append("file", file, file.name);
  for (const [name, value] of Object.entries(where)) form.append(name, value);
  return waitForDocument(await api("/api/documents", { method: "POST", form }), onProgress);
}

export async function waitForDocument(document, onProgress) {
  while (document.status === "queued" || document.status === "indexing") {
    onProgress(document.progress || 0);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    document = await api(`/api/documents/${document.id}`);
  }
  if (document.status === "failed") throw new ApiFailure(document.error?.status || 422, document.error);
  return document;
}

// A file in the composer: a PDF drawn from the file itself; any other kind as its text.
async function previewDocument(item) {
  if (item.format === "pdf") return openViewer({ name: item.name, kind: "pdf", blob: item.blob });
  if (item.document_id) return openDocument(item);
  openViewer({ name: item.name, kind: "text", text: await item.blob.text() });
}

export function openDocument(item, page) {
  const format = item.format || item.kind;
  openViewer({ name: item.name, kind: format === "pdf" ? "pdf" : "text", url: `/api/documents/${item.document_id}/file`, page, textUrl: format === "pdf" ? null : `/api/documents/${item.document_id}/file` });
}

// [1], [2] in an answer become links that open the cited source at its page.
function linkCitations(bubble, retrieval) {
  const sources = new Map((retrieval?.sources || []).map((s) => [String(s.n), s]));
  if (!sources.size) return;
  const walker = document.createTreeWalker(bubble, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) if (/\[\d+\]/.test(walker.currentNode.nodeValue) && !walker.currentNode.parentElement.closest("pre,code")) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const parts = node.nodeValue.split(/(\[\d+\])/);
    const fragment = document.createDocumentFragment();
    for (const part of parts) {
      const source = sources.get(part.slice(1, -1));
      if (!/^\[\d+\]$/.test(part) || !source) {
        fragment.append(part);
        continue;
      }
      const where = source.page ? interpolate(gettext("%s, page %s"), [source.name, source.page]) : source.name;
      fragment.append(el("button", { type: "button", class: "cite", title: where, "aria-label": interpolate(gettext("Source %s: %s"), [source.n, where]), onclick: () => openDocument({ ...source, format: source.name.toLowerCase().endsWith(".pdf") ? "pdf" : "text" }, source.page) }, part));
    }
    node.replaceWith(fragment);
  }
}

// What went in from the documents: never a silent cut.
function retrievalLine(retrieval) {
  if (!retrieval) return null;
  let text;
  if (retrieval.mode === "whole") {
    text = retrieval.files_total === 1 ? gettext("Whole document") : interpolate(gettext("Whole documents: %s files"), [retrieval.files_total]);
  } else {
    text = interpolate(ngettext("%s passage", "%s passages", retrieval.passages), [retrieval.passages]) + " " +
      interpolate(ngettext("from %s file", "from %s files", retrieval.files), [retrieval.files]);
    const cut = retrieval.pages_total - retrieval.pages_sent;
    if (cut > 0) text += " · " + interpolate(gettext("cut: %s of %s pages did not fit"), [cut, retrieval.pages_total]);
    for (const skipped of retrieval.words_only || []) {
      text += " · " + interpolate(gettext("searched by words only: %s could not read the question"), [skipped.model]);
    }
  }
  return el("button", { type: "button", class: "retrieval link", title: gettext("What went in from the documents"), onclick: (event) => showSources(event.target.closest("article").dataset.id) }, text);
}

async function showSources(id) {
  const sources = await api(`/api/messages/${id}/sources`);
  openViewer({ name: gettext("What went in from the documents"), kind: "text", text: sources.text });
}

function failPending(item, reason) {
  item.failed = reason;
  renderChips();
}

async function transcribe(file) {
  const item = { kind: "audio", name: file.name || gettext("Recording"), blob: file, progress: 0 };
  state.pending.push(item);
  renderChips();
  if (file.size > LIMITS.audio_max_bytes) return failPending(item, gettext("too large"));
  try {
    const result = await runTool("/api/transcribe", file, (p) => ((item.progress = p), renderChips()));
    removePending(item);
    const input = $("input");
    input.value = (input.value ? input.value + "\n" : "") + result.text.trim();
    input.focus();
    saveDraft();
    announce(gettext("The transcript is in the message box."));
  } catch (failure) {
    failPending(item, describeFailure(failure));
  }
}

let recorder = null;

async function toggleRecording() {
  const button = $("record");
  if (recorder) {
    recorder.stop();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (event) => chunks.push(event.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      button.classList.remove("recording");
      button.querySelector("span").textContent = gettext("Record");
      const blob = new Blob(chunks, { type: chunks[0]?.type || "audio/webm" });
      transcribe(new File([blob], `recording-${Date.now()}.webm`, { type: blob.type }));
    };
    recorder.start();
    button.classList.add("recording");
    button.querySelector("span").textContent = gettext("Stop recording");
  } catch {
    showError(gettext("The microphone is not available."));
  }
}

const URL_ONLY = /^https?:\/\/\S+$/i;

async function fetchLink(url) {
  const item = { kind: "url", name: url, progress: 0 };
  state.pending.push(item);
  renderChips();
  try {
    const page = await api("/api/fetch-url", { method: "POST", body: { url } });
    Object.assign(item, { name: page.title || page.final_url, text: `${page.final_url}\n\n${page.text}`, url: page.final_url, progress: 100 });
    renderChips();
  } catch (failure) {
    failPending(item, describeFailure(failure));
  }
}

// --- send ---------------------------------------------------------------------------------

async function send() {
  const input = $("input");
  const content = input.value.trim();
  if (state.pending.some((p) => p.progress !== undefined && p.progress < 100 && !p.failed)) {
    announce(gettext("Wait for the attachments to finish."));
    return;
  }
  const attachments = state.pending.filter((p) => !p.failed).map(({ kind, name, text, data_url, pages, url, document_id, format }) => ({ kind, name, text, data_url, pages, url, document_id, format }));
  if (!content && !attachments.length) return;
  if ($("research").checked && content) {
    try {
      const research = await api("/api/web-research", { method: "POST", body: { query: content } });
      if (research.kind !== "none") attachments.push({ kind: "web", name: gettext("Web research"), text: research.text, sources: research.sources });
    } catch (failure) {
      showError(describeFailure(failure));
      return;
    }
  }
  const parent = state.path[state.path.length - 1]?.id || null;
  const ok = await startTurn({ content, attachments, parent_id: parent });
  if (ok) {
    input.value = "";
    state.pending = [];
    renderChips();
    saveDraft();
  }
}

// --- wiring -------------------------------------------------------------------------------

async function loadModels() {
  try {
    const models = await api("/v1/models");
    const select = $("model");
    const current = select.value;
    // Only models that chat (an embedding model answers every message with a 400), each
    // with where it runs and whether it is priced.
    const chat = models.data.filter((m) => m.mode !== "embedding");
    state.embeddingModels = models.data.filter((m) => m.mode === "embedding" && m.source !== "local");
    const sources = { local: gettext("local"), routed: gettext("routed"), agents: gettext("agents") };
    const label = (m) => {
      const price = m.pricing && (m.pricing.prompt_per_million || m.pricing.completion_per_million);
      const parts = [sources[m.source] || m.source, price ? gettext("priced") : gettext("free")].filter(Boolean);
      return `${m.id} · ${parts.join(", ")}`;
    };
    select.replaceChildren(...chat.map((m) => el("option", { value: m.id, title: label(m) }, label(m))));
    select.value = chat.some((m) => m.id === current) ? current : chat[0]?.id;
  } catch {}
}

async function shareConversation() {
  if (!state.conversation || !state.path.length) return;
  const blocks = [
    {
      conv: { id: state.conversation.id, name: state.conversation.title || "" },
      messages: state.path.filter((m) => m.content).map((m) => ({ role: m.role, content: m.content, timestamp: m.created_at })),
    },
  ];
  try {
    const share = await api("/api/share", { method: "POST", body: blocks });
    $("share-url").value = share.url;
    $("share-open").href = share.url;
    $("share-delete").dataset.id = share.id;
    $("share-dialog").showModal();
    $("share-url").select();
  } catch (failure) {
    showError(describeFailure(failure));
  }
}

function wire() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("input").addEventListener("input", saveDraft);
  $("input").addEventListener("paste", (event) => {
    const text = event.clipboardData?.getData("text")?.trim();
    const files = [...(event.clipboardData?.files || [])];
    if (files.length) {
      event.preventDefault();
      files.forEach(addFile);
    } else if (text && URL_ONLY.test(text)) {
      fetchLink(text);
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.watching && !document.querySelector("dialog[open]")) stopGeneration();
  });
  $("stop").addEventListener("click", stopGeneration);
  $("new-chat").addEventListener("click", newChat);
  $("attach").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", (event) => {
    [...event.target.files].forEach(addFile);
    event.target.value = "";
  });
  $("record").addEventListener("click", toggleRecording);
  const drop = $("app");
  drop.addEventListener("dragover", (event) => event.preventDefault());
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    [...(event.dataTransfer?.files || [])].forEach(addFile);
  });
  let searchTimer = 0;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadConversations, 200);
  });
  $("search-scope").addEventListener("change", loadConversations);
  $("new-project").addEventListener("click", () => editProject(null));
  $("project-edit").addEventListener("click", () => editProject(state.project));
  $("project-back").addEventListener("click", leaveProject);
  $("project-form").addEventListener("submit", saveProject);
  $("project-file-input").addEventListener("change", addProjectFiles);
  $("project-url-add").addEventListener("click", addProjectPage);
  $("project-archive").addEventListener("click", archiveProject);
  $("project-delete").addEventListener("click", deleteProject);
  $("move-form").addEventListener("submit", moveChosen);
  $("show-archived").addEventListener("click", () => {
    state.showArchived = !state.showArchived;
    loadConversations();
  });
  $("messages").addEventListener("scroll", () => {
    state.pinned = nearBottom();
    $("jump").hidden = state.pinned || !state.watching;
  });
  $("jump").addEventListener("click", () => scrollToEnd(true));
  $("theme-toggle").addEventListener("click", toggleTheme);
  $("import-file").addEventListener("change", importChats);
  $("menu-toggle").addEventListener("click", () => $("app").classList.toggle("menu-open"));
  $("share").addEventListener("click", shareConversation);
  $("share-copy").addEventListener("click", async () => {
    await copyText($("share-url").value);
    $("share-copy").textContent = gettext("Copied");
  });
  $("share-delete").addEventListener("click", async () => {
    await api(`/api/share/${$("share-delete").dataset.id}`, { method: "DELETE" });
    $("share-dialog").close();
    announce(gettext("The share link was deleted."));
  });
  for (const button of document.querySelectorAll("dialog [data-close]")) button.addEventListener("click", () => button.closest("dialog").close());
  $("settings-toggle").addEventListener("click", () => {
    const panel = $("settings-panel");
    panel.hidden = !panel.hidden;
    $("settings-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  });
  for (const name of OPTIONS) {
    const input = $(`opt-${name}`);
    try {
      input.value = localStorage.getItem(`gg-opt:${name}`) || "";
    } catch {}
    input.addEventListener("change", () => {
      try {
        localStorage.setItem(`gg-opt:${name}`, input.value);
      } catch {}
    });
  }
  const systemToggle = $("system-toggle");
  if (systemToggle) {
    systemToggle.addEventListener("click", () => {
      const panel = $("system-panel");
      panel.hidden = !panel.hidden;
      systemToggle.setAttribute("aria-expanded", String(!panel.hidden));
    });
    $("system-prompt").addEventListener("change", async () => {
      if (!state.conversation) return;
      await api(`/api/conversations/${state.conversation.id}`, { method: "PATCH", body: { system_prompt: $("system-prompt").value } });
    });
  }
  $("model").addEventListener("change", () => {
    if (state.conversation) api(`/api/conversations/${state.conversation.id}`, { method: "PATCH", body: { model: $("model").value } });
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
}

async function boot() {
  applyTheme();
  wire();
  try {
    if (!data("has-session")) await api("/api/session/bootstrap", { method: "POST" });
    const query = new URLSearchParams(location.search);
    if (query.get("p")) state.project = { id: query.get("p"), name: "" };
    await Promise.all([loadConversations(), loadModels()]);
    if (state.project && !state.projects.some((p) => p.id === state.project.id)) {
      state.project = null; // not one of this person's (or archived and hidden): the plain list
      await loadConversations();
    }
    if (query.get("c")) await openConversation(query.get("c"));
    else newChat();
  } catch (failure) {
    showError(describeFailure(failure));
  }
  document.body.dataset.ready = "true";
}

boot();
