// Helpers every page shares: the theme, clipboard, same-origin JSON calls with the CSRF
// header, and error messages people understand. No third-party library needed.
/* global gettext, ngettext, interpolate */

// An element with attributes (`class`, `on…` listeners, the rest as attributes) and children.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// Theme: the user's pick (light/dark) or the system's; highlight.js follows it.
export function applyTheme() {
  const picked = document.documentElement.dataset.theme;
  const dark = picked ? picked === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const light = document.getElementById("hljs-light");
  const darkSheet = document.getElementById("hljs-dark");
  if (light && darkSheet) {
    light.disabled = dark;
    darkSheet.disabled = !dark;
  }
}

export function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const next = dark ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  try {
    localStorage.setItem("gg-theme", next);
  } catch {}
  applyTheme();
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// JSON requests with the session cookie and the CSRF header. Errors → ApiFailure.
export class ApiFailure extends Error {
  constructor(status, error, retryAfter) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.error = error || {};
    this.retryAfter = retryAfter;
  }
}

export async function api(path, { method = "GET", body, form, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRFToken": csrfToken(), ...headers } };
  if (form) init.body = form;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {}
  if (!response.ok && response.status !== 202) {
    const retry = Number(response.headers.get("Retry-After")) || undefined;
    throw new ApiFailure(response.status, data?.error, retry);
  }
  return data;
}

// A message a person understands, for an API failure.
export function describeFailure(failure) {
  const status = failure.status;
  if (status === 429) {
    const seconds = failure.retryAfter || failure.error?.retry_after || 0;
    return seconds
      ? interpolate(
          ngettext("Too many requests. Try again in %s second.", "Too many requests. Try again in %s seconds.", seconds),
          [seconds],
        )
      : gettext("Too many requests. Try again shortly.");
  }
  if (status === 402) return gettext("Your balance is too low for this request.");
  if (status === 503) return gettext("The model is busy or still loading. Try again in a moment.");
  if (status === 413) return gettext("That is too large.");
  if (!status) return gettext("Could not reach the server. Check your connection.");
  return failure.error?.message || failure.message || gettext("Something went wrong.");
}
