// The key holder's console: overview, usage charts with their tables and CSV, keys,
// latest requests, rates. Everything comes from /console/api/… with the session cookie.
/* global gettext, interpolate */
import {
  $,
  TIME_ZONE,
  announce,
  api,
  bucketSeconds,
  cell,
  colorOf,
  commonControls,
  consoleSession,
  copyText,
  count,
  dateTime,
  el,
  fillRows,
  isoDate,
  millis,
  money,
  redrawAll,
  sparkline,
  stackedBars,
  tabs,
} from "./console-kit.js";

const state = { session: null, requestsBefore: null, providers: [] };

// --- session ------------------------------------------------------------------------------

const { guarded, refresh } = consoleSession({
  signInPath: "/console/api/session",
  field: "key",
  onSession: (session) => {
    state.session = session;
    const key = session.key;
    if (key && session.person) return `${session.person.email} · ${gettext("pays")}: ${session.account.name} (#${session.account.id})`;
    return key ? `${session.account.name} · ${key.name} (${key.prefix}…)` : null;
  },
  show: () => showTab(),
});

// --- overview -----------------------------------------------------------------------------

function rateLine(used, limit) {
  return limit === null ? interpolate(gettext("%s (no limit)"), [count(used)]) : `${count(used)} / ${count(limit)}`;
}

function setMeter(id, used, limit) {
  const meter = $(id);
  meter.max = limit || 1;
  meter.value = limit ? Math.min(used, limit) : 0;
  meter.hidden = limit === null;
}

async function loadOverview() {
  const data = await api(`/console/api/overview?tz=${encodeURIComponent(TIME_ZONE)}`);
  $("ov-balance").textContent = money(data.balance);
  $("ov-tier").textContent = data.tier;
  $("ov-membership").textContent = data.membership_expires_at
    ? interpolate(gettext("Membership until %s"), [dateTime(data.membership_expires_at)])
    : gettext("No expiry");
  $("ov-rpm").textContent = rateLine(data.rate.requests, data.rate.rpm);
  $("ov-tpm").textContent = rateLine(data.rate.tokens, data.rate.tpm);
  setMeter("ov-rpm-meter", data.rate.requests, data.rate.rpm);
  setMeter("ov-tpm-meter", data.rate.tokens, data.rate.tpm);
  $("ov-today").textContent = money(data.spend.today);
  $("ov-month").textContent = money(data.spend.month);
  const days = [];
  for (let day = new Date(`${data.trend.from}T00:00`); isoDate(day) <= data.trend.to; day.setDate(day.getDate() + 1)) {
    days.push(isoDate(day));
  }
  const models = [...new Set(data.trend.data.map((row) => row.model))].sort();
  const rows = models.map((model, index) => {
    const mine = data.trend.data.filter((row) => row.model === model);
    const byDay = new Map(mine.map((row) => [row.bucket, Number(row.cost)]));
    const total = (name) => mine.reduce((sum, row) => sum + Number(row[name]), 0);
    return el(
      "tr",
      {},
      el("th", { scope: "row" }, model),
      el("td", {}, sparkline(days.map((day) => byDay.get(day) || 0), colorOf(index))),
      cell(count(total("requests")), true),
      cell(count(total("prompt_tokens") + total("completion_tokens")), true),
      cell(money(mine.reduce((sum, row) => sum + Number(row.cost), 0)), true),
    );
  });
  fillRows($("ov-models").tBodies[0], rows, gettext("No usage in the last 30 days."));
  showBudgets(data.budgets || []);
  await loadAccountBudget();
  await loadPayments();
}

// --- budgets ------------------------------------------------------------------------------

const BUDGET_SCOPE = {
  key: () => gettext("This key"),
  member: () => gettext("You, as a member"),
  account: () => gettext("The account"),
};
const BUDGET_PERIOD = { day: () => gettext("a day"), week: () => gettext("a week"), month: () => gettext("a month") };

function showBudgets(budgets) {
  $("budgets").hidden = budgets.length === 0;
  $("budget-cards").replaceChildren(
    ...budgets.map((b) => {
      const used = Number(b.spent) + Number(b.held);
      const period = b.period ? BUDGET_PERIOD[b.period]() : gettext("for ever");
      return el(
        "div",
        { class: "card", "data-budget": b.scope },
        el("h2", {}, BUDGET_SCOPE[b.scope]()),
        el("p", { class: "big" }, `${money(b.spent)} / ${money(b.amount)}`),
        el("meter", { min: "0", max: String(Number(b.amount) || 1), value: String(Math.min(used, Number(b.amount))),
          "aria-label": interpolate(gettext("%(used)s of %(amount)s used"), { used: money(used), amount: money(b.amount) }, true) }),
        el("p", { class: "muted" }, b.resets_at
          ? interpolate(gettext("%(period)s · resets %(when)s"), { period, when: dateTime(b.resets_at) }, true)
          : period),
      );
    }),
  );
}

async function loadAccountBudget() {
  const manage = Boolean(state.session?.key?.manage);
  if (!manage) {
    $("account-budget-form").hidden = true;
    return;
  }
  const data = await api("/console/api/budget");
  $("account-budget").value = data.budget ? Number(data.budget.amount) : "";
  $("account-budget-period").value = data.budget ? data.budget.period || "" : "month";
  $("account-time-zone").value = data.time_zone;
  $("account-budget-form").hidden = false; // shown once it holds what is saved
}

async function setAccountBudget(event) {
  event.preventDefault();
  await guarded(async () => {
    const amount = $("account-budget").value;
    const body = { budget: amount === "" ? null : { amount, period: $("account-budget-period").value || null } };
    if ($("account-time-zone").value.trim()) body.time_zone = $("account-time-zone").value.trim();
    await api("/console/api/budget", { method: "PUT", body });
    announce(gettext("Budget set."));
    await loadOverview();
  });
}

// --- add funds and payments ----------------------------------------------------------------

const PAYMENT_STATUS = {
  pending: () => gettext("Pending"),
  succeeded: () => gettext("Paid"),
  failed: () => gettext("Failed"),
  expired: () => gettext("Expired"),
  refunded: () => gettext("Refunded"),
};

function providerLabel(provider) {
  const currency = JSON.parse($("currency").textContent);
  return provider.currency === currency ? `${provider.name} (${provider.currency})`
    : interpolate(gettext("%(name)s (%(currency)s at %(rate)s %(wallet)s)"), {
      name: provider.name, currency: provider.currency, rate: Number(provider.rate), wallet: currency }, true);
}

function emailNeeded() {
  const chosen = state.providers.find((p) => p.name === $("funds-provider").value);
  return Boolean(chosen && chosen.receipt && !state.session?.person);
}

async function loadPayments() {
  const manage = Boolean(state.session?.key?.manage);
  $("funds").hidden = $("payments").hidden = !manage;
  if (!manage) return;
  const data = await api("/console/api/payments");
  state.providers = data.providers;
  $("funds").hidden = data.providers.length === 0;
  const select = $("funds-provider");
  if (select.options.length !== data.providers.length) {
    select.replaceChildren(...data.providers.map((p) => el("option", { value: p.name }, providerLabel(p))));
    $("funds-presets").replaceChildren(
      ...data.presets.map((amount) =>
        el("button", { type: "button", onclick: () => ($("funds-amount").value = Number(amount).toFixed(2)) }, money(amount)),
      ),
    );
    $("funds-amount").min = Number(data.min);
    $("funds-amount").max = Number(data.max);
  }
  $("funds-email-label").hidden = !emailNeeded();
  $("payments").hidden = data.data.length === 0;
  fillRows(
    $("payments-table").tBodies[0],
    data.data.map((p) =>
      el(
        "tr",
        { "data-payment": p.id },
        cell(dateTime(p.created_at)),
        cell(money(p.amount), true),
        cell(`${Number(p.charged.amount).toFixed(2)} ${p.charged.currency}`, true),
        el("td", {}, `${p.provider} `, el("code", {}, p.reference)),
        el("td", { "data-status": p.status }, (PAYMENT_STATUS[p.status] || (() => p.status))()),
        el("td", {}, el("a", { href: p.receipt_url }, gettext("Receipt"))),
      ),
    ),
    "",
  );
}

async function addFunds(event) {
  event.preventDefault();
  await guarded(async () => {
    const body = { amount: $("funds-amount").value, provider: $("funds-provider").value };
    if (emailNeeded()) body.email = $("funds-email").value;
    const payment = await api("/console/api/payments", { method: "POST", body });
    $("funds-status").textContent = gettext("Taking you to the payment page…");
    window.location.assign(payment.redirect_url);
  });
}

async function paymentReturned() {
  // Back from the provider: ask about the payment (the server asks the provider if needed).
  const params = new URLSearchParams(window.location.search);
  const id = params.get("payment");
  if (!id || !state.session?.key) return;
  history.replaceState(null, "", window.location.pathname + window.location.hash);
  const payment = await api(`/console/api/payments/${encodeURIComponent(id)}`);
  const messages = {
    succeeded: gettext("Paid: %s added to your balance."),
    pending: gettext("Payment of %s is pending: the balance updates when the provider confirms it."),
  };
  const text = messages[payment.status] || gettext("The payment of %s did not go through.");
  $("funds-status").textContent = interpolate(text, [money(payment.amount)]);
  announce($("funds-status").textContent);
  await loadOverview();
}

// --- usage --------------------------------------------------------------------------------

function usageParams() {
  const params = new URLSearchParams({
    from: $("usage-from").value,
    to: $("usage-to").value,
    bucket: $("usage-bucket").value,
    tz: TIME_ZONE,
  });
  if ($("usage-key").value) params.set("key", $("usage-key").value);
  if ($("usage-model").value) params.set("model", $("usage-model").value);
  return params;
}

function fillSelect(select, options, chosen) {
  const first = select.options[0];
  select.replaceChildren(first, ...options.map(([value, label]) => el("option", { value }, label)));
  select.value = options.some(([value]) => String(value) === chosen) ? chosen : "";
}

// Rows = buckets, columns = models + total: the chart's numbers, readable without it.
function pivotTable(table, buckets, models, valueOf, format) {
  const head = el("tr", {}, el("th", { scope: "col" }, gettext("Time")));
  for (const model of models) head.append(el("th", { scope: "col", class: "num" }, model));
  head.append(el("th", { scope: "col", class: "num" }, gettext("Total")));
  table.tHead.replaceChildren(head);
  const columnTotals = models.map(() => 0);
  const rows = buckets.map((bucket) => {
    const row = el("tr", {}, el("th", { scope: "row" }, bucket));
    let total = 0;
    models.forEach((model, i) => {
      const value = valueOf(bucket, model);
      total += value;
      columnTotals[i] += value;
      row.append(cell(format(value), true));
    });
    row.append(cell(format(total), true));
    return row;
  });
  fillRows(table.tBodies[0], rows, gettext("No usage in this range."));
  const foot = el("tr", {}, el("th", { scope: "row" }, gettext("Total")));
  for (const value of columnTotals) foot.append(cell(format(value), true));
  foot.append(cell(format(columnTotals.reduce((a, b) => a + b, 0)), true));
  table.tFoot.replaceChildren(buckets.length ? foot : "");
}

async function loadUsage() {
  const params = usageParams();
  const data = await api(`/console/api/usage?${params}`);
  fillSelect(
    $("usage-key"),
    data.keys.map((k) => [k.id, k.name ? `${k.name} (${k.prefix}…)` : interpolate(gettext("deleted key #%s"), [k.id])]),
    params.get("key") || "",
  );
  fillSelect($("usage-model"), data.models.map((m) => [m, m]), params.get("model") || "");
  $("usage-csv").href = `/console/api/usage.csv?${params}`;
  $("usage-totals").textContent = interpolate(
    gettext("%(requests)s requests · %(tokens)s tokens · %(cost)s %(currency)s"),
    {
      requests: count(data.totals.requests),
      tokens: count(data.totals.prompt_tokens + data.totals.completion_tokens),
      cost: money(data.totals.cost),
      currency: data.currency,
    },
    true,
  );
  if (data.totals.cache_hits) {
    $("usage-totals").textContent += " · " + interpolate(
      ngettext(
        "%(hits)s answer from the response cache, saving %(saved)s %(currency)s",
        "%(hits)s answers from the response cache, saving %(saved)s %(currency)s",
        data.totals.cache_hits,
      ),
      { hits: count(data.totals.cache_hits), saved: money(data.totals.cache_saved), currency: data.currency },
      true,
    );
  }
  const buckets = [...new Set(data.data.map((row) => row.bucket))].sort();
  const axis = everyBucket(String(data.from), String(data.to), data.bucket); // the chart shows empty ones too
  const models = [...new Set(data.data.map((row) => row.model))].sort();
  const cellOf = new Map(data.data.map((row) => [`${row.bucket}|${row.model}`, row]));
  const value = (name) => (bucket, model) => {
    const row = cellOf.get(`${bucket}|${model}`);
    if (!row) return 0;
    return name === "tokens" ? row.prompt_tokens + row.completion_tokens : Number(row[name]);
  };
  const xs = axis.map(bucketSeconds);
  for (const [name, format] of [
    ["cost", money],
    ["tokens", count],
  ]) {
    const series = models.map((model) => ({ label: model, values: axis.map((b) => value(name)(b, model)) }));
    stackedBars($(`chart-${name}`), xs, series, format, data.bucket === "day" ? 86400 : 3600);
    pivotTable($(`table-${name}`), buckets, models, value(name), format);
  }
}

// Every bucket label of the range, in the browser's zone (the API's labels for its buckets).
function everyBucket(from, to, bucket) {
  const labels = [];
  const pad = (n) => String(n).padStart(2, "0");
  const end = new Date(`${to}T23:59:59`);
  for (const at = new Date(`${from}T00:00:00`); at <= end; ) {
    labels.push(bucket === "day" ? isoDate(at) : `${isoDate(at)}T${pad(at.getHours())}:00`);
    if (bucket === "day") at.setDate(at.getDate() + 1);
    else at.setHours(at.getHours() + 1);
  }
  return labels;
}

function usageDefaults() {
  const today = new Date();
  const from = new Date(today);
  from.setDate(from.getDate() - 29);
  $("usage-from").value = isoDate(from);
  $("usage-to").value = isoDate(today);
}

// --- keys ---------------------------------------------------------------------------------

function keyState(key) {
  if (key.disabled_by_operator) return gettext("Disabled by the operator");
  if (!key.active) return gettext("Disabled");
  if (key.expires_at && new Date(key.expires_at) <= new Date()) return gettext("Expired");
  return gettext("Active");
}

function keyLimits(key) {
  const parts = [];
  if (key.rpm !== null) parts.push(interpolate(gettext("%s RPM"), [count(key.rpm)]));
  if (key.tpm !== null) parts.push(interpolate(gettext("%s TPM"), [count(key.tpm)]));
  if (key.budget) {
    const per = key.budget.period ? BUDGET_PERIOD[key.budget.period]() : gettext("for ever");
    parts.push(`${money(key.budget.spent)} / ${money(key.budget.amount)} ${per}`);
  }
  return parts.join(", ") || gettext("tier");
}

function askBudget(key) {
  const now = key.budget ? `${Number(key.budget.amount)} ${key.budget.period || "ever"}` : "";
  const answer = prompt(gettext("Budget for this key — an amount and day, week, month or ever (empty: none):"), now);
  if (answer === null) return;
  const [amount, period = "month"] = answer.trim().split(/\s+/);
  const body = amount ? { budget: { amount, period: period === "ever" ? null : period } } : { budget: null };
  patchKey(key, body, gettext("Budget set."));
}

async function patchKey(key, body, done) {
  await guarded(async () => {
    await api(`/console/api/keys/${key.id}`, { method: "PATCH", body });
    announce(done);
    await loadKeys();
  });
}

function keyActions(key) {
  const current = key.id === state.session.key.id;
  const actions = el("td", { class: "actions" });
  actions.append(
    el(
      "button",
      {
        type: "button",
        onclick: () => {
          const name = prompt(gettext("New name for this key:"), key.name);
          if (name && name.trim()) patchKey(key, { name: name.trim() }, gettext("Key renamed."));
        },
      },
      gettext("Rename"),
    ),
  );
  if (!current) {
    actions.append(
      el("button", { type: "button", class: "set-budget", onclick: () => askBudget(key) }, gettext("Budget")),
      el(
        "button",
        {
          type: "button",
          onclick: () =>
            patchKey(key, { active: !key.active }, key.active ? gettext("Key disabled.") : gettext("Key enabled.")),
        },
        key.active ? gettext("Disable") : gettext("Enable"),
      ),
      el(
        "button",
        {
          type: "button",
          class: "danger",
          onclick: async () => {
            if (!confirm(interpolate(gettext("Delete the key “%s”? Programs using it stop working."), [key.name]))) return;
            await guarded(async () => {
              await api(`/console/api/keys/${key.id}`, { method: "DELETE" });
              announce(gettext("Key deleted."));
              await loadKeys();
            });
          },
        },
        gettext("Delete"),
      ),
    );
  }
  return actions;
}

async function loadKeys() {
  const manage = state.session.key.manage;
  $("keys-readonly").hidden = manage;
  $("key-form").hidden = !manage;
  if (!manage) {
    fillRows($("keys-table").tBodies[0], [], gettext("Keys are listed for keys with the full scope."));
    return;
  }
  const data = await api("/console/api/keys");
  const rows = data.data.map((key) =>
    el(
      "tr",
      { "data-key": key.id },
      el("th", { scope: "row" }, key.name, key.id === state.session.key.id ? el("span", { class: "badge" }, gettext("this session")) : null),
      el("td", {}, el("code", {}, `${key.prefix}…`)),
      cell(key.scope === "full" ? gettext("Full") : gettext("Inference")),
      cell(key.models.length ? key.models.join(", ") : gettext("all")),
      cell(keyLimits(key)),
      cell(key.expires_at ? dateTime(key.expires_at) : gettext("never")),
      cell(key.last_used_at ? dateTime(key.last_used_at) : gettext("never")),
      cell(keyState(key)),
      keyActions(key),
    ),
  );
  fillRows($("keys-table").tBodies[0], rows);
}

async function createKey(event) {
  event.preventDefault();
  const body = { name: $("key-name").value.trim(), scope: $("key-scope").value };
  const models = $("key-models").value.split(",").map((m) => m.trim()).filter(Boolean);
  if (models.length) body.models = models;
  if ($("key-expires").value) body.expires_at = new Date(`${$("key-expires").value}T23:59:59`).toISOString();
  for (const name of ["rpm", "tpm"]) if ($(`key-${name}`).value !== "") body[name] = Number($(`key-${name}`).value);
  if ($("key-budget").value !== "") body.budget = { amount: $("key-budget").value, period: $("key-budget-period").value || null };
  await guarded(async () => {
    const created = await api("/console/api/keys", { method: "POST", body });
    $("key-form").reset();
    $("secret-value").value = created.key;
    $("secret-copy").textContent = gettext("Copy");
    $("secret-dialog").showModal();
    $("secret-value").select();
    await loadKeys();
  });
}

// --- requests -----------------------------------------------------------------------------

async function loadRequests(more = false) {
  const params = new URLSearchParams({ limit: "50" });
  if (more && state.requestsBefore) params.set("before", state.requestsBefore);
  const data = await api(`/console/api/requests?${params}`);
  const rows = data.data.map((row) =>
    el(
      "tr",
      { "data-request": row.request_id },
      cell(dateTime(row.created_at)),
      cell(row.requested_model && row.requested_model !== row.model ? `${row.model} (${row.requested_model})` : row.model),
      cell(row.dialect || "—"),
      cell(row.key ? `${row.key.name} (${row.key.prefix}…)` : "—"),
      cell(tokensWithParts(row.prompt_tokens, [
        [row.cached_tokens, gettext("cached")],
        [row.cache_write_tokens, gettext("written to cache")],
      ]), true),
      cell(tokensWithParts(row.completion_tokens, [[row.reasoning_tokens, gettext("reasoning")]]), true),
      cell(money(row.cost), true),
      el(
        "td",
        {},
        el("span", { class: `status ${row.status}` }, row.status === "ok" ? gettext("OK") : gettext("Error")),
        row.cache_hit
          ? el(
              "span",
              { class: "cache-hit", title: interpolate(gettext("Saved %s"), [money(row.cache_saved)]) },
              gettext("cached"),
            )
          : null,
      ),
      cell(millis(row.ttft_ms), true),
      cell(millis(row.duration_ms), true),
      el("td", {}, el("code", {}, row.request_id), data.text ? requestText(row) : null),
    ),
  );
  const body = $("requests-table").tBodies[0];
  if (more) body.append(...rows);
  else fillRows(body, rows, gettext("No requests yet."));
  state.requestsBefore = data.data.length ? data.data[data.data.length - 1].id : null;
  $("requests-more").hidden = !data.has_more;
}

// The start of the prompt and the answer, where the operator keeps them.
function requestText(row) {
  return el(
    "details",
    { class: "request-text" },
    el("summary", {}, gettext("Text")),
    el("p", {}, el("strong", {}, gettext("Prompt")), ": ", row.prompt || "—"),
    el("p", {}, el("strong", {}, gettext("Answer")), ": ", row.answer || "—"),
  );
}

// A token count with the parts its provider bills apart: "1,200 (1,000 cached)".
function tokensWithParts(total, parts) {
  const named = parts.filter(([n]) => n).map(([n, name]) => `${count(n)} ${name}`);
  return named.length ? `${count(total)} (${named.join(", ")})` : count(total);
}

// --- rates --------------------------------------------------------------------------------

async function loadRates(event) {
  event?.preventDefault();
  const params = new URLSearchParams({
    prompt_tokens: $("quote-prompt").value || "0",
    cached_tokens: $("quote-cached").value || "0",
    completion_tokens: $("quote-completion").value || "0",
    reasoning_tokens: $("quote-reasoning").value || "0",
    requests: $("quote-requests").value || "1",
  });
  const data = await api(`/console/api/quote?${params}`);
  const rows = data.data.map((row) =>
    el(
      "tr",
      {},
      el("th", { scope: "row" }, row.model, row.served ? null : el("span", { class: "badge" }, gettext("not served"))),
      cell(money(row.prompt_per_million), true),
      cell(money(row.cached_prompt_per_million), true),
      cell(money(row.cache_write_per_million), true),
      cell(money(row.completion_per_million), true),
      cell(money(row.reasoning_per_million), true),
      cell(money(row.cost), true),
      cell(money(row.total), true),
    ),
  );
  fillRows($("rates-table").tBodies[0], rows);
}

// --- wiring -------------------------------------------------------------------------------

// --- alerts and webhooks -------------------------------------------------------------------

async function loadAlerts() {
  const manage = Boolean(state.session?.key?.manage);
  if (!manage) {
    for (const id of ["alert-settings", "webhook-form"]) $(id).hidden = true;
    return;
  }
  const settings = await api("/console/api/alerts");
  $("alert-balance").value = settings.balance_below === null ? "" : Number(settings.balance_below);
  $("alert-email").checked = settings.email;
  for (const id of ["alert-settings", "webhook-form"]) $(id).hidden = false; // once they hold what is saved
  const hooks = await api("/console/api/webhooks");
  const events = $("webhook-events");
  if (!events.querySelector("input")) {
    events.append(
      ...hooks.events.filter((e) => e !== "test").map((e) =>
        el("label", { class: "check" }, el("input", { type: "checkbox", value: e }), ` ${e}`),
      ),
    );
  }
  fillRows(
    $("webhooks-table").tBodies[0],
    hooks.data.map((hook) =>
      el(
        "tr",
        { "data-webhook": hook.id },
        el("td", {}, el("code", {}, hook.url)),
        cell(hook.events.length ? hook.events.join(", ") : gettext("all")),
        cell(hook.active ? gettext("Active") : gettext("Off")),
        el(
          "td",
          { class: "actions" },
          el("button", { type: "button", class: "send-test", onclick: () => guarded(() => sendTest(hook.id)) }, gettext("Send test event")),
          el("button", { type: "button", onclick: () => guarded(() => loadDeliveries(hook.id)) }, gettext("Deliveries")),
          el("button", { type: "button", class: "danger", onclick: () => guarded(async () => {
            await api(`/console/api/webhooks/${hook.id}`, { method: "DELETE" });
            await loadAlerts();
          }) }, gettext("Delete")),
        ),
      ),
    ),
    gettext("No webhook endpoints."),
  );
}

async function sendTest(id) {
  await api(`/console/api/webhooks/${id}/test`, { method: "POST" });
  announce(gettext("Test event sent."));
  setTimeout(() => guarded(() => loadDeliveries(id)), 1000);
}

async function loadDeliveries(id) {
  const log = await api(`/console/api/webhooks/${id}/deliveries`);
  $("deliveries-title").hidden = $("deliveries-table").hidden = false;
  fillRows(
    $("deliveries-table").tBodies[0],
    log.data.map((d) =>
      el(
        "tr",
        { "data-delivery": d.id },
        cell(dateTime(d.created_at)),
        el("td", {}, el("code", {}, d.event)),
        el("td", { "data-status": d.status }, d.status),
        cell(count(d.attempts), true),
        cell(d.last_status !== null ? String(d.last_status) : d.last_error || "—"),
        cell(d.latency_ms !== null ? `${d.latency_ms} ms` : "—", true),
      ),
    ),
    gettext("Nothing sent yet."),
  );
}

async function saveAlertSettings(event) {
  event.preventDefault();
  await guarded(async () => {
    const value = $("alert-balance").value;
    await api("/console/api/alerts", { method: "PUT", body: { balance_below: value === "" ? null : value, email: $("alert-email").checked } });
    $("alert-saved").textContent = gettext("Saved.");
  });
}

async function addWebhook(event) {
  event.preventDefault();
  await guarded(async () => {
    const events = [...$("webhook-events").querySelectorAll("input:checked")].map((input) => input.value);
    const hook = await api("/console/api/webhooks", { method: "POST", body: { url: $("webhook-url").value, events } });
    $("webhook-secret").hidden = false;
    $("webhook-secret").replaceChildren(gettext("Signing secret (shown once): "), el("code", { id: "webhook-secret-value" }, hook.secret));
    $("webhook-form").reset();
    await loadAlerts();
  });
}

const LOADERS = {
  overview: loadOverview,
  usage: loadUsage,
  keys: loadKeys,
  requests: () => loadRequests(),
  rates: loadRates,
  alerts: loadAlerts,
};

const showTab = tabs((name) => {
  if (!state.session?.key) return;
  guarded(LOADERS[name]);
});

async function start() {
  commonControls(redrawAll);
  usageDefaults();
  $("usage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(loadUsage);
  });
  $("key-form").addEventListener("submit", createKey);
  $("funds-form").addEventListener("submit", addFunds);
  $("alert-settings").addEventListener("submit", saveAlertSettings);
  $("account-budget-form").addEventListener("submit", setAccountBudget);
  $("webhook-form").addEventListener("submit", addWebhook);
  $("funds-provider").addEventListener("change", () => ($("funds-email-label").hidden = !emailNeeded()));
  $("quote-form").addEventListener("submit", (event) => guarded(() => loadRates(event)));
  $("requests-more").addEventListener("click", () => guarded(() => loadRequests(true)));
  $("secret-copy").addEventListener("click", async () => {
    await copyText($("secret-value").value);
    $("secret-copy").textContent = gettext("Copied");
  });
  $("secret-dialog").addEventListener("close", () => ($("secret-value").value = ""));
  await guarded(refresh);
  await guarded(paymentReturned);
  document.body.dataset.ready = "true";
}

start();
