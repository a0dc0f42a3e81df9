// What the console and the operators' page share: DOM helpers, tabs, formatting, and the
// charts (uPlot, from npm through `make vendor`) with a table of the same numbers under each.
/* global uPlot, gettext */
import { ApiFailure, api, applyTheme, copyText, describeFailure, el, toggleTheme } from "./common.js";

export { api, copyText, el };

export const $ = (id) => document.getElementById(id);
const LOCALE = document.documentElement.lang || undefined;

export function announce(text) {
  $("announcer").textContent = text;
}

function showFailure(failure) {
  const box = $("failure");
  if (!failure) {
    box.hidden = true;
    return;
  }
  box.textContent = failure instanceof ApiFailure ? describeFailure(failure) : String(failure.message || failure);
  box.hidden = false;
}

// --- numbers ------------------------------------------------------------------------------

// Money arrives as decimal strings with 10 places; shown with the places it needs: 2 from
// one unit up, 4 below it, 6 below a cent (token prices make small sums).
export function money(value) {
  const number = Number(value);
  const size = Math.abs(number);
  const digits = size >= 1 || number === 0 ? 2 : size >= 0.01 ? 4 : 6;
  return number.toLocaleString(LOCALE, { minimumFractionDigits: 2, maximumFractionDigits: digits });
}

export function count(value) {
  return value === null || value === undefined ? "—" : Number(value).toLocaleString(LOCALE);
}

export function millis(value) {
  if (value === null || value === undefined) return "—";
  return value >= 1000 ? `${(value / 1000).toLocaleString(LOCALE, { maximumFractionDigits: 2 })} s` : `${value} ms`;
}

export function seconds(value) {
  return value === null || value === undefined ? "—" : millis(Math.round(value * 1000));
}

export function dateTime(value) {
  return value ? new Date(value).toLocaleString(LOCALE, { dateStyle: "medium", timeStyle: "short" }) : "—";
}

export function isoDate(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

// --- tabs (the URL's #fragment) ----------------------------------------------------------

export function tabs(onShow) {
  const names = [...document.querySelectorAll("[data-tab]")].map((a) => a.dataset.tab);
  const show = () => {
    const name = names.includes(location.hash.slice(1)) ? location.hash.slice(1) : names[0];
    for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.id !== name;
    for (const link of document.querySelectorAll("[data-tab]")) {
      if (link.dataset.tab === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    onShow(name);
  };
  window.addEventListener("hashchange", show);
  return show;
}

function signedInLayout(signedIn) {
  $("signin").hidden = signedIn;
  $("tabs").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  if (!signedIn) for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = true;
}

export function commonControls(redrawCharts) {
  applyTheme();
  $("theme-toggle").addEventListener("click", () => {
    toggleTheme();
    redrawCharts();
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redrawCharts);
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
}

// --- the session --------------------------------------------------------------------------

// The page's sign-in form, sign-out button and session. `onSession(session)` keeps what the
// page needs of GET /console/api/session and returns the line shown for who is signed in, or
// null when nobody is; then `show()` loads the current tab. `guarded(work)` runs a request,
// showing what failed; a 401 means the session ended (signed out elsewhere, the key
// disabled): back to the sign-in form — except while signing in, where it is the answer.
export function consoleSession({ signInPath, field, onSession, show }) {
  async function refresh() {
    const who = onSession(await api("/console/api/session"));
    signedInLayout(who !== null);
    $("who").textContent = who || "";
    if (who !== null) show();
    else $("signin-key").focus();
  }

  async function guarded(work, { signingIn = false } = {}) {
    try {
      showFailure(null);
      return await work();
    } catch (failure) {
      if (failure instanceof ApiFailure && failure.status === 401 && !signingIn) {
        await refresh();
        return null;
      }
      showFailure(failure);
      return null;
    }
  }

  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(
      async () => {
        await api(signInPath, { method: "POST", body: { [field]: $("signin-key").value } });
        $("signin-key").value = "";
        await refresh();
        announce(gettext("Signed in."));
      },
      { signingIn: true },
    );
  });
  $("sign-out").addEventListener("click", async () => {
    await guarded(() => api("/console/api/session", { method: "DELETE" }));
    await refresh();
    announce(gettext("Signed out."));
  });
  return { guarded, refresh };
}

// --- tables -------------------------------------------------------------------------------

export function fillRows(tbody, rows, empty) {
  tbody.replaceChildren(...rows);
  if (!rows.length) {
    const columns = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.append(el("tr", {}, el("td", { colspan: columns, class: "muted" }, empty || gettext("Nothing yet."))));
  }
}

export function cell(text, numeric = false) {
  return el("td", numeric ? { class: "num" } : {}, text);
}

// --- charts -------------------------------------------------------------------------------

const PALETTE = {
  light: ["#3b5bdb", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d"],
  dark: ["#7c93f5", "#ff922b", "#69db7c", "#da77f2", "#3bc9db", "#ffd43b", "#f783ac", "#a9e34b"],
};

function themeColors() {
  const style = getComputedStyle(document.documentElement);
  const dark = style.getPropertyValue("color-scheme").trim() === "dark";
  return {
    palette: PALETTE[dark ? "dark" : "light"],
    fg: style.getPropertyValue("--fg").trim(),
    muted: style.getPropertyValue("--muted").trim(),
    grid: style.getPropertyValue("--line").trim(),
  };
}

export function colorOf(index) {
  const { palette } = themeColors();
  return palette[index % palette.length];
}

// Axis ticks: three significant digits (0.012 stays 0.012, not a second "0.01").
function tick(value) {
  return Number(value).toLocaleString(LOCALE, { maximumSignificantDigits: 3 });
}

function axes(colors) {
  const axis = { stroke: colors.muted, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid } };
  return [axis, { ...axis, size: 70, values: (u, values) => values.map(tick) }];
}

const charts = new Map(); // container id -> {plot, build}

function mount(container, build) {
  charts.get(container.id)?.plot.destroy();
  const width = Math.max(container.clientWidth, 280);
  const plot = build(width);
  container.replaceChildren(plot.root);
  charts.set(container.id, { plot, build, container });
}

export function redrawAll() {
  for (const { build, container } of [...charts.values()]) mount(container, build);
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(redrawAll, 150);
});

// Bars stacked by series: each series is drawn from 0 to its cumulative sum, the tallest
// first, so every band shows; the legend shows each series' own value.
export function stackedBars(container, xs, series, yFormat, step) {
  mount(container, (width) => {
    const colors = themeColors();
    const cumulative = [];
    let running = xs.map(() => 0);
    for (const s of series) {
      running = running.map((value, i) => value + (s.values[i] || 0));
      cumulative.push(running);
    }
    const order = series.map((_, i) => i).reverse();
    const bars = uPlot.paths.bars({ size: [0.7, 48], align: 0 });
    return new uPlot(
      {
        width,
        height: 260,
        legend: { live: true },
        cursor: { points: { show: false } },
        scales: {
          x: { time: true, range: (u, min, max) => [min - step / 2, max + step / 2] },
          y: { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] },
        },
        axes: axes(colors),
        series: [
          {},
          ...order.map((i) => ({
            label: series[i].label,
            fill: colors.palette[i % colors.palette.length],
            stroke: colors.palette[i % colors.palette.length],
            width: 0,
            paths: bars,
            points: { show: false },
            value: (u, v, si, idx) => (idx === null || idx === undefined ? "—" : yFormat(series[i].values[idx] || 0)),
          })),
        ],
      },
      [xs, ...order.map((i) => cumulative[i])],
    );
  });
}

// Lines over a fixed window [start, end] (Unix seconds), however few points there are.
export function lines(container, xs, series, yFormat, [start, end]) {
  mount(container, (width) => {
    const colors = themeColors();
    return new uPlot(
      {
        width,
        height: 220,
        scales: { x: { time: true, range: () => [start, end] }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: axes(colors),
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: colors.palette[i % colors.palette.length],
            width: 2,
            value: (u, v) => (v === null || v === undefined ? "—" : yFormat(v)),
          })),
        ],
      },
      [xs, ...series.map((s) => s.values)],
    );
  });
}

// A small trend line, drawn as SVG (no library needed for 30 points).
export function sparkline(values, color) {
  const width = 120;
  const height = 28;
  const max = Math.max(...values, 0);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (max ? (v / max) * (height - 4) : 0)).toFixed(1)}`);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", color);
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}

// A bucket label from the API ("2026-12-01" or "2026-12-01T14:00", in the browser's zone)
// as Unix seconds for the chart's x axis.
export function bucketSeconds(label) {
  const [day, time] = label.split("T");
  const [y, m, d] = day.split("-").map(Number);
  const hour = time ? Number(time.slice(0, 2)) : 0;
  return new Date(y, m - 1, d, hour).getTime() / 1000;
}
