// The operators' page: accounts (search, top-up, disable) and top-ups, model and upstream
// health, live traffic over the last hour, the audit trail (filters, CSV). Reads /console/api/ops/… with the session cookie.
/* global gettext, ngettext, interpolate */
import {
  $,
  announce,
  api,
  cell,
  commonControls,
  consoleSession,
  count,
  dateTime,
  el,
  fillRows,
  lines,
  millis,
  money,
  redrawAll,
  seconds,
  tabs,
} from "./console-kit.js";

const REFRESH_MS = 10_000;
const state = { signedIn: false, offset: 0, topUpAccount: null, timer: null, auditBefore: null };

const { guarded, refresh } = consoleSession({
  signInPath: "/console/api/ops/session",
  field: "admin_key",
  onSession: (session) => {
    state.signedIn = session.operator;
    return session.operator ? gettext("Operator") : null;
  },
  show: () => showTab(),
});

// --- accounts -----------------------------------------------------------------------------

function accountRow(account) {
  return el(
    "tr",
    { "data-account": account.id },
    cell(String(account.id), true),
    el("th", { scope: "row" }, account.name),
    cell(account.tier),
    el("td", { class: "num", "data-balance": "" }, money(account.balance)),
    cell(count(account.keys), true),
    cell(account.active ? gettext("Active") : gettext("Disabled")),
    el(
      "td",
      { class: "actions" },
      el("button", { type: "button", class: "primary", onclick: () => openTopUp(account) }, gettext("Top up")),
      el("button", { type: "button", onclick: () => guarded(() => openLog(account)) }, gettext("Requests")),
      el(
        "button",
        {
          type: "button",
          class: account.active ? "danger" : "",
          onclick: () =>
            guarded(async () => {
              await api(`/console/api/ops/accounts/${account.id}`, { method: "PATCH", body: { active: !account.active } });
              announce(account.active ? gettext("Account disabled.") : gettext("Account enabled."));
              await loadAccounts();
            }),
        },
        account.active ? gettext("Disable") : gettext("Enable"),
      ),
    ),
  );
}

async function loadAccounts(more = false) {
  state.offset = more ? state.offset + 50 : 0;
  const params = new URLSearchParams({ q: $("accounts-q").value, offset: String(state.offset), limit: "50" });
  const data = await api(`/console/api/ops/accounts?${params}`);
  const rows = data.data.map(accountRow);
  const body = $("accounts-table").tBodies[0];
  if (more) body.append(...rows);
  else fillRows(body, rows, gettext("No accounts match."));
  $("accounts-count").textContent = interpolate(ngettext("%s account", "%s accounts", data.total), [count(data.total)]);
  $("accounts-more").hidden = state.offset + data.data.length >= data.total;
  await loadTopUps();
  await loadPayments();
}

async function loadTopUps() {
  const data = await api("/console/api/ops/topups");
  const rows = data.data.map((entry) =>
    el(
      "tr",
      {},
      cell(dateTime(entry.created_at)),
      cell(`#${entry.account.id} ${entry.account.name}`),
      cell(money(entry.amount), true),
      cell(money(entry.balance_after), true),
      el("td", {}, el("code", {}, entry.idempotency_key || "—")),
    ),
  );
  fillRows($("topups-table").tBodies[0], rows, gettext("No top-ups yet."));
}

async function loadPayments() {
  const data = await api("/console/api/ops/payments");
  const rows = data.data.map((p) =>
    el(
      "tr",
      { "data-payment": p.id },
      cell(dateTime(p.created_at)),
      cell(`#${p.account.id} ${p.account.name}`),
      cell(money(p.amount), true),
      cell(`${Number(p.charged.amount).toFixed(2)} ${p.charged.currency}`, true),
      el("td", {}, `${p.provider} `, el("code", {}, p.reference)),
      cell(p.mismatch ? `${p.status} · ${gettext("mismatch")}: ${p.mismatch}` : p.status),
    ),
  );
  fillRows($("ops-payments-table").tBodies[0], rows, gettext("No payments yet."));
}

function openTopUp(account) {
  state.topUpAccount = account;
  $("topup-form").reset();
  $("topup-account").textContent = interpolate(gettext("Account #%(id)s %(name)s, balance %(balance)s"), {
    id: account.id, name: account.name, balance: money(account.balance) }, true);
  $("topup-idempotency").value = crypto.randomUUID(); // one per dialog: a double submit adds once
  $("topup-result").textContent = "";
  $("topup-dialog").showModal();
  $("topup-amount").focus();
}

// --- an account's request log ----------------------------------------------------------

async function openLog(account, more = false) {
  if (!more) {
    state.logAccount = account;
    state.logBefore = null;
    $("log-entries").replaceChildren();
  }
  const params = new URLSearchParams({ limit: "20" });
  if (more && state.logBefore) params.set("before", String(state.logBefore));
  const data = await api(`/console/api/ops/accounts/${account.id}/requests?${params}`);
  $("log-account").textContent = interpolate(
    data.logs
      ? gettext("Account #%(id)s %(name)s: requests with their text, redacted, kept %(days)s days.")
      : gettext("Account #%(id)s %(name)s: request logs are off (GHOSTGPT_REQUEST_LOGS); excerpts only, if kept."),
    { id: account.id, name: account.name, days: data.days },
    true,
  );
  $("log-entries").append(
    ...data.data.map((row) =>
      el(
        "li",
        { "data-request": row.request_id },
        el("p", {}, el("strong", {}, `${dateTime(row.created_at)} · ${row.model} · ${row.dialect || "—"}`), " ",
          el("code", {}, row.request_id), " · ", money(row.cost)),
        logText(gettext("Prompt"), row.prompt),
        logText(gettext("Answer"), row.answer),
        row.body ? el("details", {}, el("summary", {}, gettext("Request body")), el("pre", {}, row.body)) : null,
      ),
    ),
  );
  if (!more && !data.data.length) $("log-entries").append(el("li", {}, gettext("No requests yet.")));
  state.logBefore = data.data.length ? data.data[data.data.length - 1].id : null;
  $("log-more").hidden = !data.has_more;
  if (!more) $("log-dialog").showModal();
}

function logText(label, text) {
  return el("p", { class: "log-text" }, el("strong", {}, label), ": ", text || "—");
}

async function topUp(event) {
  event.preventDefault();
  const account = state.topUpAccount;
  await guarded(async () => {
    const result = await api("/console/api/ops/topup", {
      method: "POST",
      body: { user_id: account.id, amount: $("topup-amount").value, idempotency_key: $("topup-idempotency").value },
    });
    $("topup-result").textContent = result.applied
      ? interpolate(gettext("Added. Balance now %s."), [money(result.balance)])
      : interpolate(gettext("Already applied with this idempotency key. Balance %s."), [money(result.balance)]);
    announce($("topup-result").textContent);
    await loadAccounts();
  });
}

// --- models -------------------------------------------------------------------------------

function percentiles(p50, p95) {
  return p50 === null ? "—" : `${seconds(p50)} / ${seconds(p95)}`;
}

async function loadModels() {
  const data = await api("/console/api/ops/models");
  const rows = [];
  for (const model of data.data) {
    rows.push(
      el(
        "tr",
        { "data-model": model.model },
        el("th", { scope: "row" }, model.model),
        el("td", {}, el("span", { class: `status ${model.state === "ready" ? "ok" : "error"}` }, model.state), model.detail ? ` ${model.detail}` : ""),
        cell(count(model.requests), true),
        cell(model.error_rate === null ? "—" : `${(model.error_rate * 100).toFixed(1)} %`, true),
        cell(percentiles(model.ttft_p50, model.ttft_p95), true),
        cell(percentiles(model.total_p50, model.total_p95), true),
        cell(model.tokens_per_second === null ? "—" : count(model.tokens_per_second), true),
        cell(count(model.failovers), true),
        cell(count(model.agents), true),
        cell(`${count(model.running ?? 0)} / ${count(model.queue ?? 0)}`, true),
      ),
    );
    for (const d of model.deployments) {
      rows.push(
        el(
          "tr",
          { class: "sub" },
          el("td", {}, `↳ ${d.deployment}`),
          el("td", {}, el("span", { class: `status ${d.circuit === "open" ? "error" : "ok"}` }, d.circuit === "open" ? gettext("circuit open") : gettext("circuit closed")), ` ${d.probe || ""}`),
          cell(count(d.requests), true),
          cell(d.requests ? `${((d.errors / d.requests) * 100).toFixed(1)} %` : "—", true),
          cell(d.latency_ms === null ? "—" : millis(Math.round(d.latency_ms)), true),
          cell(""), cell(""), cell(""), cell(""), cell(""),
        ),
      );
    }
  }
  fillRows($("models-table").tBodies[0], rows, gettext("No models."));
}

// --- traffic ------------------------------------------------------------------------------

async function loadTraffic() {
  const data = await api("/console/api/ops/traffic");
  $("traffic-note").textContent = interpolate(
    gettext("The last hour, sampled every %s s by every web process; refreshed every 10 s."),
    [data.sample_seconds],
  );
  const xs = data.data.map((row) => new Date(row.at).getTime() / 1000);
  const now = Date.now() / 1000;
  const hour = [now - 3600, now];
  const rate = (v) => Number(v).toLocaleString(document.documentElement.lang || undefined, { maximumFractionDigits: 2 });
  lines($("chart-rps"), xs, [{ label: gettext("Requests/s"), values: data.data.map((r) => r.requests_per_second) }], rate, hour);
  lines(
    $("chart-load"),
    xs,
    [
      { label: gettext("Open streams"), values: data.data.map((r) => r.streams) },
      { label: gettext("Queue"), values: data.data.map((r) => r.queue) },
      { label: gettext("Agents"), values: data.data.map((r) => r.agents) },
    ],
    count,
    hour,
  );
  const states = [...new Set([...Object.keys(data.jobs.now), ...Object.keys(data.jobs.last_hour)])].sort();
  fillRows(
    $("jobs-table").tBodies[0],
    states.map((name) => el("tr", {}, el("th", { scope: "row" }, name), cell(count(data.jobs.now[name] || 0), true), cell(count(data.jobs.last_hour[name] || 0), true))),
    gettext("No tool jobs."),
  );
  fillRows(
    $("traffic-table").tBodies[0],
    [...data.data].reverse().map((row) =>
      el("tr", {}, cell(dateTime(row.at)), cell(rate(row.requests_per_second), true), cell(count(row.streams), true), cell(count(row.queue), true), cell(count(row.agents), true)),
    ),
    gettext("No samples yet: the web processes sample their traffic every few seconds."),
  );
}

// --- audit trail --------------------------------------------------------------------------

function auditQuery() {
  const params = new URLSearchParams();
  for (const [name, id] of [["action", "audit-action"], ["actor", "audit-actor"], ["account", "audit-account"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function change(event) {
  const parts = [];
  if (event.before !== null && event.before !== undefined) parts.push(JSON.stringify(event.before));
  if (event.after !== null && event.after !== undefined) parts.push(JSON.stringify(event.after));
  return parts.join(" → ");
}

async function loadAudit(more = false) {
  const params = auditQuery();
  $("audit-csv").href = `/console/api/ops/audit.csv?${params}`;
  params.set("limit", "100");
  if (more && state.auditBefore) params.set("before", String(state.auditBefore));
  const data = await api(`/console/api/ops/audit?${params}`);
  const rows = data.data.map((event) =>
    el(
      "tr",
      { "data-seq": event.seq },
      cell(String(event.seq), true),
      cell(dateTime(event.at)),
      el("td", {}, el("code", {}, event.action), event.count > 1 ? ` ×${count(event.count)}` : ""),
      cell(event.label || event.actor),
      cell(event.account_id ? `#${event.account_id}` : "—"),
      cell(event.target || "—"),
      cell(event.address || "—"),
      el("td", { class: "change" }, change(event)),
    ),
  );
  const body = $("audit-table").tBodies[0];
  if (more) body.append(...rows);
  else fillRows(body, rows, gettext("Nothing recorded matches."));
  state.auditBefore = data.next_before;
  $("audit-more").hidden = !data.has_more;
}

// --- the operators' webhooks ---------------------------------------------------------------

async function loadWebhooks() {
  const hooks = await api("/console/api/ops/webhooks");
  const rows = [];
  for (const hook of hooks.data) {
    const log = await api(`/console/api/ops/webhooks/${hook.id}/deliveries`);
    const last = log.data.slice(0, 3).map((d) => `${d.event}: ${d.status}`).join("; ") || "—";
    rows.push(
      el(
        "tr",
        { "data-webhook": hook.id },
        el("td", {}, el("code", {}, hook.url)),
        cell(hook.active ? gettext("Active") : gettext("Off")),
        el("td", { class: "deliveries" }, last),
        el(
          "td",
          { class: "actions" },
          el("button", { type: "button", class: "send-test", onclick: () => guarded(async () => {
            await api(`/console/api/ops/webhooks/${hook.id}/test`, { method: "POST" });
            announce(gettext("Test event sent."));
            setTimeout(() => guarded(loadWebhooks), 1000);
          }) }, gettext("Send test event")),
          el("button", { type: "button", class: "danger", onclick: () => guarded(async () => {
            await api(`/console/api/ops/webhooks/${hook.id}`, { method: "DELETE" });
            await loadWebhooks();
          }) }, gettext("Delete")),
        ),
      ),
    );
  }
  fillRows($("ops-webhooks-table").tBodies[0], rows, gettext("No webhook endpoints."));
}

async function addWebhook(event) {
  event.preventDefault();
  await guarded(async () => {
    const hook = await api("/console/api/ops/webhooks", {
      method: "POST",
      body: { url: $("ops-webhook-url").value, events: ["upstream.circuit_open", "upstream.circuit_closed"] },
    });
    $("ops-webhook-secret").hidden = false;
    $("ops-webhook-secret").replaceChildren(gettext("Signing secret (shown once): "), el("code", {}, hook.secret));
    $("ops-webhook-form").reset();
    await loadWebhooks();
  });
}

// --- wiring -------------------------------------------------------------------------------

const LOADERS = {
  accounts: () => loadAccounts(),
  models: loadModels,
  traffic: loadTraffic,
  audit: () => loadAudit(),
  webhooks: loadWebhooks,
};

const showTab = tabs((name) => {
  clearInterval(state.timer);
  if (!state.signedIn) return;
  guarded(LOADERS[name]);
  if (!["accounts", "audit", "webhooks"].includes(name)) state.timer = setInterval(() => guarded(LOADERS[name]), REFRESH_MS);
});

async function start() {
  commonControls(redrawAll);
  $("accounts-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(() => loadAccounts());
  });
  $("accounts-more").addEventListener("click", () => guarded(() => loadAccounts(true)));
  $("log-more").addEventListener("click", () => guarded(() => openLog(state.logAccount, true)));
  $("topup-form").addEventListener("submit", topUp);
  $("audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(() => loadAudit());
  });
  $("audit-more").addEventListener("click", () => guarded(() => loadAudit(true)));
  $("ops-webhook-form").addEventListener("submit", addWebhook);
  await guarded(refresh);
  document.body.dataset.ready = "true";
}

start();
