// views.js — the console's views. Each view is an async function (main, params)
// that fills main; data is always inserted as text (dom.js), never as HTML.

import { h, mount, clear, table, field, fmtTime, fmtBytes } from "./dom.js";
import * as api from "./api.js";
import * as hl7 from "./hl7.js";

const SHOW_MAX = 256 * 1024; // characters of a message shown before "download"

export function errorBox(e) {
  const text = e && e.status === 0 ? "The engine is not answering; retrying shortly." :
    e && e.status === 403 ? "Your role may not do this." :
    e && e.status === 404 ? "Not available on this engine (" + e.message + ")." :
    "Error: " + (e && e.message ? e.message : String(e));
  return h("p", { class: "error", role: "alert" }, text);
}

function button(label, onclick, attrs) {
  return h("button", Object.assign({ type: "button", onclick }, attrs || {}), label);
}

function link(href, text) { return h("a", { href }, text); }

function section(title, ...children) {
  return h("section", { "aria-label": title }, h("h2", {}, title), ...children);
}

function pretty(text) {
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

// ---- login ------------------------------------------------------------------

export function loginView(main, done, note) {
  const user = h("input", { name: "username", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const msg = h("p", { class: "error", role: "alert" }, note || "");
  const form = h("form", { class: "login", "aria-label": "Sign in" },
    h("h1", {}, "Sign in"), field("User name", user), field("Password", pass),
    h("button", { type: "submit" }, "Sign in"), msg);
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    msg.textContent = "";
    try {
      await api.login(user.value, pass.value);
      done();
    } catch (e) {
      msg.textContent = e.status === 401 || e.status === 400 ? "Wrong user name or password." :
        e.status === 429 ? "Too many attempts; wait a moment." : e.message;
    }
  });
  mount(main, form);
  user.focus();
}

// ---- dashboard ----------------------------------------------------------------

const history = new Map(); // channel id -> received counts of the last refreshes

function sparkline(values) {
  const w = 120, hgt = 24, n = values.length;
  const deltas = [];
  for (let i = 1; i < n; i++) deltas.push(Math.max(0, values[i] - values[i - 1]));
  const max = Math.max(1, ...deltas);
  const pts = deltas.map((d, i) => `${(i * w / Math.max(1, deltas.length - 1)).toFixed(1)},${(hgt - d * hgt / max).toFixed(1)}`);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", w);
  svg.setAttribute("height", hgt);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "messages received per refresh: " + deltas.join(", "));
  const pl = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  pl.setAttribute("points", pts.join(" "));
  pl.setAttribute("class", "spark");
  svg.appendChild(pl);
  return svg;
}

function channelRow(c) {
  const s = c.statistics || {};
  let queued = 0, dead = 0;
  for (const d of c.destinations || []) {
    queued += (d.statistics || {}).queued || 0;
    dead += (d.statistics || {}).dead_lettered || 0;
  }
  const hist = history.get(c.id) || [];
  hist.push(s.received || 0);
  while (hist.length > 30) hist.shift();
  history.set(c.id, hist);
  return { c, s, queued, dead, hist };
}

export async function dashboardView(main) {
  const [chans, health, errors, alerts, sec] = await Promise.all([
    api.get("/channels").catch(e => e), api.get("/health").catch(e => e),
    api.get("/errors").catch(e => e), api.get("/alerts").catch(e => e),
    api.get("/security/alerts").catch(e => e)]);
  const rows = chans instanceof Error ? [] : (chans.channels || []).map(channelRow);
  const alertItems = [alerts, sec].filter(a => !(a instanceof Error)).flatMap(a => a.alerts || a.items || []);
  mount(main,
    h("h1", {}, "Dashboard"),
    section("Engine health", health instanceof Error ? errorBox(health) :
      h("p", {}, "Status: ", h("strong", { class: "st-" + health.status, "data-testid": "health" }, health.status),
        " — version ", health.releaseId || health.version || "")),
    section("Channels", chans instanceof Error ? errorBox(chans) : table([
      { title: "Channel", cell: r => link("#/channels/" + encodeURIComponent(r.c.id), r.c.name || r.c.id) },
      { title: "State", cell: r => h("span", { class: "state st-" + r.c.state }, r.c.state) },
      { title: "Received", cell: r => String(r.s.received || 0) },
      { title: "Filtered", cell: r => String(r.s.filtered || 0) },
      { title: "Queued", cell: r => String(r.queued) },
      { title: "Sent", cell: r => String(r.s.sent || 0) },
      { title: "Errored", cell: r => String(r.s.errored || 0) },
      { title: "Dead-lettered", cell: r => String(r.dead) },
      { title: "Throughput", cell: r => sparkline(r.hist) },
    ], rows, "Every channel, refreshed every few seconds")),
    section("Recent errors", errors instanceof Error ? errorBox(errors) :
      (errors.errors || []).length === 0 ? h("p", {}, "None.") :
      h("ul", {}, (errors.errors || []).slice(0, 10).map(e => h("li", {}, fmtTime(e.time || e.ts), " ", e.message || e.event || JSON.stringify(e))))),
    section("Alerts", alertItems.length === 0 ? h("p", {}, "None.") :
      h("ul", {}, alertItems.slice(0, 10).map(x => h("li", {}, fmtTime(x.time || x.created || x.ts), " ",
        x.rule || x.name || "", " ", x.message || x.detail || "")))));
  return { refresh: 3000 };
}

// ---- channels -------------------------------------------------------------------

export async function channelsView(main) {
  const chans = await api.get("/channels");
  const rows = (chans.channels || []).map(channelRow);
  mount(main, h("h1", {}, "Channels"),
    chans.last_refused ? h("p", { class: "error" }, "Last refused file: ", chans.last_refused) : null,
    table([
      { title: "Channel", cell: r => link("#/channels/" + encodeURIComponent(r.c.id), r.c.id) },
      { title: "Source", cell: r => r.c.source },
      { title: "State", cell: r => r.c.state },
      { title: "Received", cell: r => String(r.s.received || 0) },
      { title: "Queued", cell: r => String(r.queued) },
      { title: "Errored", cell: r => String(r.s.errored || 0) },
      { title: "Messages", cell: r => link("#/messages/" + encodeURIComponent(r.c.id), "browse") },
    ], rows));
  return { refresh: 5000 };
}

async function act(path, after) {
  try {
    await api.post(path);
    after();
  } catch (e) {
    alert(e.message);
  }
}

export async function channelView(main, { id }, rerender) {
  const c = await api.get("/channels/" + encodeURIComponent(id));
  const ch = c.channels ? c.channels[0] : c;
  const base = "/channels/" + encodeURIComponent(id);
  mount(main,
    h("h1", {}, "Channel ", ch.id),
    h("p", {}, "Source: ", ch.source, " · state: ", h("strong", { "data-testid": "state" }, ch.state), " · file: ", ch.file || ""),
    h("div", { class: "actions", role: "group", "aria-label": "Channel actions" },
      ["start", "stop", "pause", "deploy", "undeploy"].map(a => button(a, () => act(base + "/" + a, rerender)))),
    h("p", {}, link("#/messages/" + encodeURIComponent(id), "Messages"), " · ",
      link("#/deadletter/" + encodeURIComponent(id), "Dead letters"), " · ",
      link("#/channels/" + encodeURIComponent(id) + "/edit", "Edit the channel file"), " · ",
      link("#/channels/" + encodeURIComponent(id) + "/test", "Test with a sample message")),
    section("Statistics", h("p", {}, Object.entries(ch.statistics || {}).map(([k, v]) => k + ": " + v).join(" · "))),
    section("Destinations", table([
      { title: "Name", cell: d => d.name },
      { title: "Type", cell: d => d.type },
      { title: "Queued", cell: d => h("span", { "data-testid": "queued-" + d.name }, String((d.statistics || {}).queued || 0)) },
      { title: "Sent", cell: d => String((d.statistics || {}).sent || 0) },
      { title: "Dead-lettered", cell: d => h("span", { "data-testid": "dead-" + d.name }, String((d.statistics || {}).dead_lettered || 0)) },
      { title: "Failed attempts", cell: d => String((d.statistics || {}).failed_attempts || 0) },
      { title: "Circuit", cell: d => d.circuit },
      { title: "Paused", cell: d => d.paused ? "yes" : "no" },
      { title: "", cell: d => button(d.paused ? "resume" : "pause",
          () => act(base + "/destinations/" + encodeURIComponent(d.name) + (d.paused ? "/resume" : "/pause"), rerender)) },
    ], ch.destinations || [])));
  return { refresh: 3000 };
}

// The channel file editor: validation errors are shown at their line and column,
// and the caret is put there.
export async function channelEditView(main, { id }) {
  const f = await api.get("/channels/" + encodeURIComponent(id) + "/file");
  const area = h("textarea", { rows: 24, cols: 100, spellcheck: "false", "aria-label": "Channel file", class: "code" });
  area.value = f.text;
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const numbers = () => { gutter.textContent = area.value.split("\n").map((_, i) => i + 1).join("\n"); };
  numbers();
  area.addEventListener("input", numbers);
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  const out = h("div", { role: "status", "aria-live": "polite", "data-testid": "edit-result" });
  async function send(validate) {
    clear(out);
    try {
      await api.put("/channels/" + encodeURIComponent(id) + "/file" + (validate ? "?validate=true" : ""), area.value,
                    { headers: { "Content-Type": "application/json" } });
      mount(out, h("p", { class: "ok" }, validate ? "The file is valid." : "Saved; the channel was reloaded."));
    } catch (e) {
      const b = e.body || {};
      if (e.status === 422 && b.line) {
        mount(out, h("p", { class: "error", role: "alert" }, `line ${b.line}, column ${b.column}: ${b.message}`));
        const lines = area.value.split("\n");
        let pos = 0;
        for (let i = 0; i < b.line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
        pos += Math.max(0, (b.column || 1) - 1);
        area.focus();
        area.setSelectionRange(pos, Math.min(area.value.length, pos + 1));
      } else {
        mount(out, errorBox(e));
      }
    }
  }
  mount(main, h("h1", {}, "Edit channel ", id), h("p", {}, f.path),
    h("div", { class: "editor" }, gutter, area),
    h("div", { class: "actions" }, button("Validate", () => send(true)), button("Save", () => send(false))), out);
}

export async function channelTestView(main, { id }) {
  const area = h("textarea", { rows: 10, cols: 100, "aria-label": "Sample message", class: "code" });
  const out = h("div", { "data-testid": "test-result" });
  async function run() {
    clear(out);
    try {
      const r = await api.request("POST", "/channels/" + encodeURIComponent(id) + "/test",
        { body: area.value, headers: { "Content-Type": "text/plain" } });
      mount(out,
        h("p", {}, "Content type: ", r.content_type),
        h("p", {}, "Filter: ", r.filter.passed ? "passed" : "FILTERED by rule " + r.filter.rule),
        (r.steps || []).map((s, i) => h("div", { class: "stage" },
          h("h3", {}, `Step ${i + 1} (${s.type}): ${s.ok ? "ok" : "ERROR"}`),
          s.ok ? h("pre", {}, pretty(s.output)) : h("p", { class: "error" }, s.error))),
        h("ul", {}, (r.destinations || []).map(d => h("li", {}, `${d.name} (${d.type}): `,
          d.receives ? "would receive the message" : "skipped by " + d.skipped_by))));
    } catch (e) { mount(out, errorBox(e)); }
  }
  mount(main, h("h1", {}, "Test channel ", id, " with a sample message"),
    h("p", {}, "A dry run of the filter, the steps and the destinations' conditions: nothing is stored or sent."),
    area, h("div", { class: "actions" }, button("Run", run)), out);
  area.focus();
}

// ---- messages ------------------------------------------------------------------

export async function messagesView(main, { id }, _rerender, query) {
  const q = new URLSearchParams(query || "");
  const status = h("select", { name: "status" },
    ["", "received", "filtered", "queued", "sent", "errored"].map(s => h("option", { value: s, selected: q.get("status") === s }, s || "any")));
  const type = h("input", { name: "type", value: q.get("type") || "", placeholder: "ADT^A01" });
  const control = h("input", { name: "control", value: q.get("control") || "", placeholder: "MSH-10" });
  const text = h("input", { name: "text", value: q.get("text") || "", type: "search" });
  const since = h("input", { name: "since", type: "datetime-local", value: q.get("since") || "" });
  const until = h("input", { name: "until", type: "datetime-local", value: q.get("until") || "" });
  const list = h("div", { "data-testid": "messages" });
  const more = button("Load more", () => load(), { hidden: true });
  let cursor = null;
  const selected = new Set();
  const search = h("form", { class: "filters", "aria-label": "Search messages" },
    field("Status", status), field("Type", type), field("Control ID", control), field("Text", text),
    field("Since", since), field("Until", until), h("button", { type: "submit" }, "Search"));
  search.addEventListener("submit", ev => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const el of [status, type, control, text, since, until]) if (el.value) p.set(el.name, el.value);
    location.hash = "#/messages/" + encodeURIComponent(id) + "?" + p.toString();
  });
  function apiQuery() {
    const p = new URLSearchParams();
    if (q.get("status")) p.set("status", q.get("status"));
    if (q.get("type")) p.set("type", q.get("type"));
    const words = [q.get("control"), q.get("text")].filter(Boolean).join(" ");
    if (words) p.set("text", words);
    if (q.get("since")) p.set("since", new Date(q.get("since")).toISOString());
    if (q.get("until")) p.set("until", new Date(q.get("until")).toISOString());
    p.set("limit", "50");
    if (cursor) p.set("cursor", cursor);
    return p.toString();
  }
  const tbody = h("tbody");
  const tbl = h("table", {}, h("thead", {}, h("tr", {}, ["", "Id", "Received", "Status", "Type", "Size", "Error"].map(t => h("th", { scope: "col" }, t)))), tbody);
  async function load() {
    try {
      const r = await api.get("/channels/" + encodeURIComponent(id) + "/messages?" + apiQuery());
      for (const m of r.messages || []) {
        const cb = h("input", { type: "checkbox", "aria-label": "select message " + m.id,
          onchange: ev => ev.target.checked ? selected.add(m.id) : selected.delete(m.id) });
        tbody.appendChild(h("tr", {}, h("td", {}, cb),
          h("td", {}, link("#/message/" + encodeURIComponent(id) + "/" + m.id, m.id)),
          h("td", {}, fmtTime(m.received_at)), h("td", {}, m.status), h("td", {}, m.content_type),
          h("td", {}, fmtBytes(m.size)), h("td", {}, m.error || m.filtered_by || issueCount(m.outcome))));
      }
      cursor = r.next;
      more.hidden = !cursor;
      if (!tbody.firstChild) mount(list, h("p", {}, "No messages match."));
    } catch (e) { mount(list, errorBox(e)); }
  }
  async function reprocess() {
    for (const mid of selected) await api.post("/channels/" + encodeURIComponent(id) + "/messages/" + mid + "/reprocess").catch(e => alert(e.message));
    alert("Reprocessing " + selected.size + " message(s).");
  }
  mount(main, h("h1", {}, "Messages of ", link("#/channels/" + encodeURIComponent(id), id)), search,
    h("div", { class: "actions" }, button("Reprocess selected", reprocess),
      link("#/deadletter/" + encodeURIComponent(id), "Dead-letter queue")),
    list, more);
  mount(list, tbl);
  await load();
}

// An XML document (a C-CDA) indented for reading: parsed with DOMParser (an XML
// document runs no script) and written back as text, one element per line.
function prettyXml(text) {
  const doc = new DOMParser().parseFromString(text, "application/xml");
  if (doc.getElementsByTagName("parsererror").length) return null;
  const out = [];
  const attrs = el => Array.from(el.attributes).map(a => ` ${a.name}="${a.value}"`).join("");
  (function walk(node, depth) {
    const pad = "  ".repeat(depth);
    for (const c of node.childNodes) {
      if (c.nodeType === Node.ELEMENT_NODE) {
        const kids = Array.from(c.childNodes);
        const onlyText = kids.length === 1 && kids[0].nodeType === Node.TEXT_NODE;
        if (kids.length === 0) out.push(`${pad}<${c.nodeName}${attrs(c)}/>`);
        else if (onlyText) out.push(`${pad}<${c.nodeName}${attrs(c)}>${kids[0].nodeValue.trim()}</${c.nodeName}>`);
        else {
          out.push(`${pad}<${c.nodeName}${attrs(c)}>`);
          walk(c, depth + 1);
          out.push(`${pad}</${c.nodeName}>`);
        }
      } else if (c.nodeType === Node.TEXT_NODE && c.nodeValue.trim()) {
        out.push(pad + c.nodeValue.trim());
      } else if (c.nodeType === Node.COMMENT_NODE) {
        out.push(`${pad}<!--${c.nodeValue}-->`);
      }
    }
  })(doc, 0);
  return out.join("\n");
}

function hl7View(text) {
  return h("table", { class: "hl7", "data-testid": "segments" },
    h("caption", {}, "Segments (hover a field for its name)"),
    h("tbody", {}, hl7.parse(text).map(seg => h("tr", {},
      h("th", { scope: "row" }, seg.id),
      h("td", {}, seg.fields.map(f => {
        const name = hl7.fieldName(seg.id, f.n);
        const label = `${seg.id}-${f.n}${name ? " " + name : ""}`;
        return h("span", { class: "f", title: label, "aria-label": label + ": " + f.value, tabindex: "0" }, f.value);
      }))))));
}

function contentView(content, type, size) {
  if (content === null || content === undefined) return h("p", {}, "(content not kept)");
  const truncated = content.length > SHOW_MAX;
  const shown = truncated ? content.slice(0, SHOW_MAX) : content;
  const blob = new Blob([content], { type: "application/octet-stream" });
  const dl = h("a", { href: URL.createObjectURL(blob), download: "message.txt" }, "Download the whole message");
  let body;
  if (!truncated && hl7.looksLikeHl7(content)) body = hl7View(content);
  else if (/json/.test(type || "") && !truncated) body = h("pre", { class: "code" }, pretty(content));
  else if (!truncated && (/xml/.test(type || "") || /^\s*</.test(content)))
    body = h("pre", { class: "code", "data-testid": "xml" }, prettyXml(content) || content);
  else body = h("pre", { class: "code" }, shown);
  return h("div", {}, truncated ? h("p", { class: "warn" }, `Shown truncated: ${fmtBytes(size || content.length)}. `, dl) : null,
    body, truncated ? null : h("p", {}, dl));
}

// The steps' OperationOutcomes stored with a message ([{step, type, outcome}]), one row per issue.
function outcomeIssues(outcome) {
  return (outcome || []).flatMap(o => ((o.outcome || {}).issue || []).map(issue => ({ step: o.step, type: o.type, issue })));
}
function issueCount(outcome) {
  const n = outcomeIssues(outcome).length;
  return n ? n + (n === 1 ? " mapping issue" : " mapping issues") : "";
}

export async function messageView(main, { id, mid }, rerender) {
  const m = await api.get("/channels/" + encodeURIComponent(id) + "/messages/" + encodeURIComponent(mid));
  mount(main,
    h("h1", {}, "Message ", m.id, " of ", link("#/messages/" + encodeURIComponent(id), id)),
    h("p", {}, "Received ", fmtTime(m.received_at), " · status ", h("strong", {}, m.status), " · ", m.content_type, " · ", fmtBytes(m.size)),
    m.error ? h("p", { class: "error" }, "Error: ", m.error) : null,
    m.filtered_by ? h("p", {}, "Filtered by rule ", m.filtered_by) : null,
    h("div", { class: "actions" }, button("Reprocess", () => act("/channels/" + encodeURIComponent(id) + "/messages/" + m.id + "/reprocess", rerender))),
    section("Raw message", contentView(m.content, m.content_type, m.size)),
    section("Output (after the steps)", m.transformed ? contentView(m.transformed, "application/json") : h("p", {}, "The steps did not change the message.")),
    m.outcome ? section("Step outcomes", table([
      { title: "Step", cell: o => o.step + " (" + o.type + ")" },
      { title: "Severity", cell: o => o.issue.severity || "" }, { title: "Code", cell: o => o.issue.code || "" },
      { title: "Problem", cell: o => o.issue.diagnostics || "" },
      { title: "Where", cell: o => (o.issue.location || []).join(", ") },
    ], outcomeIssues(m.outcome))) : null,
    section("Destinations", table([
      { title: "Destination", cell: d => d.name }, { title: "State", cell: d => d.state },
      { title: "Attempts", cell: d => String(d.attempts) }, { title: "Last result", cell: d => d.last_error || "" },
    ], m.destinations || [])));
}

export async function deadLetterView(main, { id }, rerender) {
  const r = await api.get("/channels/" + encodeURIComponent(id) + "/deadletter");
  const base = "/channels/" + encodeURIComponent(id) + "/deadletter/";
  mount(main, h("h1", {}, "Dead-letter queue of ", link("#/channels/" + encodeURIComponent(id), id)),
    h("div", { class: "actions" }, button("Requeue all", () => act(base + "requeue", rerender))),
    (r.dead_letters || []).length === 0 ? h("p", { "data-testid": "dlq-empty" }, "The dead-letter queue is empty.") :
    table([
      { title: "Message", cell: d => link("#/message/" + encodeURIComponent(id) + "/" + d.message, d.message) },
      { title: "Destination", cell: d => d.destination }, { title: "Attempts", cell: d => String(d.attempts) },
      { title: "Last error", cell: d => d.last_error || "" },
      { title: "", cell: d => h("span", {},
          button("Requeue", () => act(base + "requeue?dest=" + encodeURIComponent(d.destination) + "&message=" + d.message, rerender)),
          button("Discard", () => { if (confirm("Discard message " + d.message + "?")) act(base + "discard?dest=" + encodeURIComponent(d.destination) + "&message=" + d.message, rerender); })) },
    ], r.dead_letters));
  return { refresh: 3000 };
}

// ---- FHIR browser ------------------------------------------------------------------

let fhirTypes = null;

function refLinks(node) {
  // JSON with every "reference": "Type/id" as a link to that resource.
  const pre = h("pre", { class: "code", "data-testid": "resource" });
  const text = JSON.stringify(node, null, 2);
  const re = /("reference": ")([A-Za-z]+\/[A-Za-z0-9\-.]{1,64})(")/g;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    pre.appendChild(document.createTextNode(text.slice(last, m.index) + m[1]));
    pre.appendChild(link("#/fhir/" + m[2], m[2]));
    pre.appendChild(document.createTextNode(m[3]));
    last = re.lastIndex;
  }
  pre.appendChild(document.createTextNode(text.slice(last)));
  return pre;
}

export async function fhirView(main, _p, _r, query) {
  const q = new URLSearchParams(query || "");
  if (!fhirTypes) {
    try {
      const cs = await api.get("/fhir/metadata");
      fhirTypes = ((cs.rest || [])[0] || {}).resource ? cs.rest[0].resource.map(r => r.type) : [];
    } catch { fhirTypes = ["Patient", "Observation", "Encounter", "Condition"]; }
  }
  const type = h("select", { name: "type" }, fhirTypes.map(t => h("option", { value: t, selected: t === (q.get("type") || "Patient") }, t)));
  const params = h("input", { name: "params", value: q.get("params") || "", placeholder: "name=smith&_count=20", size: 40 });
  const out = h("div", { "data-testid": "fhir-results" });
  const form = h("form", { class: "filters", "aria-label": "FHIR search" }, field("Resource type", type), field("Search parameters", params),
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    location.hash = "#/fhir?" + new URLSearchParams({ type: type.value, params: params.value }).toString();
  });
  mount(main, h("h1", {}, "FHIR browser"), form, out);
  if (q.get("type")) {
    try {
      const b = await api.get("/fhir/" + encodeURIComponent(q.get("type")) + (q.get("params") ? "?" + q.get("params") : ""));
      const entries = (b.entry || []).filter(e => e.resource);
      mount(out, h("p", {}, b.total !== undefined ? b.total + " match(es)" : entries.length + " shown"),
        table([
          { title: "Resource", cell: e => link("#/fhir/" + e.resource.resourceType + "/" + e.resource.id, e.resource.resourceType + "/" + e.resource.id) },
          { title: "Last updated", cell: e => fmtTime((e.resource.meta || {}).lastUpdated) },
          { title: "Summary", cell: e => summary(e.resource) },
        ], entries));
    } catch (e) { mount(out, errorBox(e)); }
  }
}

function summary(r) {
  if (r.name && r.name[0]) return [].concat(r.name[0].given || []).join(" ") + " " + (r.name[0].family || "");
  if (r.code && r.code.coding && r.code.coding[0]) return r.code.text || r.code.coding[0].display || r.code.coding[0].code;
  return r.status || "";
}

export async function resourceView(main, { type, rid }) {
  const r = await api.get("/fhir/" + encodeURIComponent(type) + "/" + encodeURIComponent(rid));
  const hist = h("div");
  mount(main, h("h1", {}, type, "/", rid), h("p", {}, "Version ", (r.meta || {}).versionId || "", " · ", fmtTime((r.meta || {}).lastUpdated)),
    h("div", { class: "actions" }, button("History", async () => {
      try {
        const b = await api.get("/fhir/" + encodeURIComponent(type) + "/" + encodeURIComponent(rid) + "/_history");
        mount(hist, table([
          { title: "Version", cell: e => (e.resource && e.resource.meta || {}).versionId || "" },
          { title: "Updated", cell: e => fmtTime((e.resource && e.resource.meta || {}).lastUpdated) },
          { title: "Method", cell: e => (e.request || {}).method || "" },
        ], b.entry || []));
      } catch (e) { mount(hist, errorBox(e)); }
    })), hist, refLinks(r));
}

// ---- audit and compliance ----------------------------------------------------------------

export async function auditView(main, _p, _r, query) {
  const q = new URLSearchParams(query || "");
  const user = h("input", { name: "user", value: q.get("user") || "" });
  const patient = h("input", { name: "patient", value: q.get("patient") || "" });
  const action = h("input", { name: "action", value: q.get("action") || "" });
  const out = h("div", { "data-testid": "audit-results" });
  const verifyOut = h("div", { role: "status", "aria-live": "polite", "data-testid": "verify-result" });
  const form = h("form", { class: "filters", "aria-label": "Search the audit log" },
    field("User", user), field("Patient", patient), field("Action", action), h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const el of [user, patient, action]) if (el.value) p.set(el.name, el.value);
    location.hash = "#/audit?" + p.toString();
  });
  // Verification walks the hash chain and the signed checkpoints (GET /compliance/report
  // runs it for the period; docs/audit.md "Tamper evidence").
  async function verify() {
    clear(verifyOut);
    try {
      const r = await api.get("/compliance/report");
      const c = r.chain || {};
      mount(verifyOut, h("p", { class: c.ok ? "ok" : "error" },
        c.ok ? `The audit chain is intact (${c.records_checked} records, ${c.checkpoints} signed checkpoints).` :
          `The audit chain is BROKEN at record ${c.first_bad}: ${c.problem || ""} ${c.detail || ""}`));
    } catch (e) { mount(verifyOut, errorBox(e)); }
  }
  mount(main, h("h1", {}, "Audit and compliance"), form,
    h("div", { class: "actions" }, button("Verify the audit chain", verify), button("Compliance report", async () => {
      try { mount(out, h("pre", { class: "code" }, pretty(await api.get("/compliance/report")))); } catch (e) { mount(out, errorBox(e)); }
    })), verifyOut, out);
  try {
    const p = new URLSearchParams();
    for (const k of ["user", "patient", "action"]) if (q.get(k)) p.set(k, q.get(k));
    const r = await api.get("/audit/logs?" + p.toString());
    const items = r.entry ? r.entry.map(e => e.resource) : (r.logs || r.items || r.events || []);
    mount(out, table([
      { title: "Time", cell: e => fmtTime(e.recorded || e.time) },
      { title: "Action", cell: e => (e.subtype && e.subtype[0] && (e.subtype[0].code || e.subtype[0].display)) || e.action || "" },
      { title: "Who", cell: e => ((e.agent || [])[0] || {}).who ? (((e.agent[0].who.identifier || {}).value) || e.agent[0].who.display || "") : (e.user || "") },
      { title: "Outcome", cell: e => e.outcome || "" },
      { title: "What", cell: e => (e.entity || []).map(x => (x.what || {}).reference || "").filter(Boolean).join(", ") },
    ], items));
  } catch (e) { mount(out, errorBox(e)); }
  try {
    const a = await api.get("/security/alerts");
    out.appendChild(section("Security alerts", table([
      { title: "Time", cell: x => fmtTime(x.created || x.time) }, { title: "Rule", cell: x => x.rule || "" },
      { title: "Severity", cell: x => x.severity || "" }, { title: "Who", cell: x => x.who || "" },
      { title: "Detail", cell: x => x.detail || x.message || "" }], a.alerts || [])));
  } catch { /* shown by the log search already */ }
}

// ---- administration ----------------------------------------------------------------

export async function adminView(main) {
  const out = h("div");
  const uname = h("input", { name: "username", autocomplete: "off" });
  const upass = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const urole = h("select", { name: "role" }, ["clinician", "integrator", "auditor", "admin", "service"].map(r => h("option", { value: r }, r)));
  const umsg = h("p", { role: "status" });
  const addUser = h("form", { class: "filters", "aria-label": "Add a user" }, field("User name", uname), field("Password", upass), field("Role", urole),
    h("button", { type: "submit" }, "Add user"), umsg);
  addUser.addEventListener("submit", async ev => {
    ev.preventDefault();
    try { await api.post("/auth/register", { username: uname.value, password: upass.value, role: urole.value }); umsg.textContent = "User " + uname.value + " added."; }
    catch (e) { umsg.textContent = e.message; }
  });
  const term = h("input", { name: "q", type: "search" });
  const sys = h("select", { name: "system" }, ["loinc", "icd10", "snomed", "cpt"].map(s => h("option", { value: s }, s)));
  const termOut = h("div");
  const termForm = h("form", { class: "filters", "aria-label": "Terminology look-up" }, field("Code system", sys), field("Search", term), h("button", { type: "submit" }, "Look up"));
  termForm.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const r = await api.get(`/${sys.value}/search?q=` + encodeURIComponent(term.value));
      mount(termOut, table([{ title: "Code", cell: c => c.code }, { title: "Display", cell: c => c.display || "" }], r.results || r.items || r.concepts || []));
    } catch (e) { mount(termOut, errorBox(e)); }
  });
  const cv = h("input", { name: "value", value: "100", size: 8 }), cf = h("input", { name: "from", value: "mg/dL", size: 10 }), ct = h("input", { name: "to", value: "g/L", size: 10 });
  const cvOut = h("p", { role: "status" });
  const convForm = h("form", { class: "filters", "aria-label": "UCUM converter" }, field("Value", cv), field("From", cf), field("To", ct), h("button", { type: "submit" }, "Convert"), cvOut);
  convForm.addEventListener("submit", async ev => {
    ev.preventDefault();
    try { const r = await api.post("/convert/units", { value: Number(cv.value), from: cf.value, to: ct.value }); cvOut.textContent = `${cv.value} ${cf.value} = ${r.value} ${ct.value}`; }
    catch (e) { cvOut.textContent = e.message; }
  });
  const ehrVendor = h("select", { name: "vendor" }, ["epic", "cerner", "fhir"].map(x => h("option", { value: x }, x)));
  const ehrUrl = h("input", { name: "base_url", size: 40, placeholder: "https://ehr.example.org/fhir/R4" });
  const ehrClient = h("input", { name: "client_id" });
  const ehrKey = h("textarea", { name: "private_key_pem", rows: 3, cols: 40, placeholder: "-----BEGIN PRIVATE KEY-----" });
  const ehrTypes = h("input", { name: "resource_types", value: "Patient,Observation,Condition", size: 30 });
  const ehrSchedule = h("input", { name: "schedule", value: "daily", size: 12 });
  const ehrMsg = h("p", { role: "status" });
  const ehrForm = h("form", { class: "filters", "aria-label": "Connect an EHR" }, field("Vendor", ehrVendor), field("Base URL", ehrUrl),
    field("Client id", ehrClient), field("Private key (PEM; stored encrypted, never shown again)", ehrKey),
    field("Resource types", ehrTypes), field("Schedule", ehrSchedule), h("button", { type: "submit" }, "Connect"), ehrMsg);
  ehrForm.addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const r = await api.post("/ehr/connect", { vendor: ehrVendor.value, base_url: ehrUrl.value, client_id: ehrClient.value,
        private_key_pem: ehrKey.value || undefined, resource_types: ehrTypes.value.split(",").map(x => x.trim()).filter(Boolean),
        schedule: ehrSchedule.value });
      ehrKey.value = "";
      ehrMsg.textContent = "Connected (id " + r.id + ").";
    } catch (e) { ehrMsg.textContent = e.message; }
  });
  const history = h("div");
  const users = h("div", { "data-testid": "users" });
  const clients = h("div", { "data-testid": "clients" });
  // Registering a client: RFC 7591 metadata to POST /auth/register-client (docs/security.md).
  const cName = h("input", { name: "client_name" });
  const cType = h("select", { name: "type" }, [["public", "none"], ["confidential", "client_secret_basic"],
    ["backend", "private_key_jwt"]].map(([label, method]) => h("option", { value: method }, label)));
  const cRedirect = h("input", { name: "redirect_uris", size: 40, placeholder: "https://app.example.org/cb (apps)" });
  const cJwks = h("input", { name: "jwks_uri", size: 40, placeholder: "https://backend.example.org/jwks.json (backend)" });
  const cScope = h("input", { name: "scope", size: 40, value: "launch/patient openid fhirUser patient/*.rs" });
  const cMsg = h("div", { role: "status", "data-testid": "client-result" });
  const addClient = h("form", { class: "filters", "aria-label": "Register a SMART client" }, field("Name", cName),
    field("Type", cType), field("Redirect URI", cRedirect), field("JWKS URL", cJwks), field("Scope", cScope),
    h("button", { type: "submit" }, "Register client"), cMsg);
  addClient.addEventListener("submit", async ev => {
    ev.preventDefault();
    const meta = { client_name: cName.value, token_endpoint_auth_method: cType.value, scope: cScope.value };
    if (cType.value === "private_key_jwt") meta.jwks_uri = cJwks.value;
    else meta.redirect_uris = cRedirect.value.split(/\s+/).filter(Boolean);
    try {
      const r = await api.post("/auth/register-client", meta);
      // A confidential client's secret is shown once, here, and never again.
      mount(cMsg, h("p", { class: "ok" }, "Registered: client id ", h("code", {}, r.client_id),
        r.client_secret ? [" — secret (shown once): ", h("code", {}, r.client_secret)] : ""));
    } catch (e) { mount(cMsg, errorBox(e)); }
  });
  mount(main, h("h1", {}, "Administration"),
    section("Users", users, addUser),
    section("SMART clients", clients, addClient),
    section("EHR connections", out, ehrForm, h("h3", {}, "Sync history"), history),
    section("Terminology look-up", termForm, termOut),
    section("UCUM converter", convForm));
  const reload = () => adminView(main);
  try {
    const r = await api.get("/auth/users");
    mount(users, table([
      { title: "User", cell: u => u.username },
      { title: "Role", cell: u => h("select", { "aria-label": "role of " + u.username, onchange: async ev => {
          try { await api.put("/auth/users/" + encodeURIComponent(u.username) + "/role", { role: ev.target.value }); } catch (e) { alert(e.message); }
          reload();
        } }, ["admin", "integrator", "clinician", "auditor", "service"].map(x => h("option", { value: x, selected: x === u.role }, x))) },
      { title: "State", cell: u => u.disabled ? "disabled" : u.locked ? "locked" : "active" },
      { title: "Created", cell: u => fmtTime(u.created) },
      { title: "", cell: u => h("span", {},
          button(u.disabled ? "Enable" : "Disable", () => act("/auth/users/" + encodeURIComponent(u.username) + (u.disabled ? "/enable" : "/disable"), reload)),
          button("Reset password", async () => {
            const pw = prompt("New password for " + u.username + " (8 or more characters)");
            if (!pw) return;
            try { await api.post("/auth/users/" + encodeURIComponent(u.username) + "/password", { password: pw }); alert("Password changed."); }
            catch (e) { alert(e.message); }
          })) },
    ], r.users || []));
  } catch (e) { mount(users, errorBox(e)); }
  try {
    const r = await api.get("/auth/clients");
    mount(clients, (r.clients || []).length === 0 ? h("p", {}, "No SMART clients are registered (holovitals client add, or dynamic registration).") :
      table([
        { title: "Client id", cell: c => c.client_id }, { title: "Name", cell: c => c.name }, { title: "Type", cell: c => c.type },
        { title: "Redirect URIs", cell: c => (c.redirect_uris || []).join(" ") }, { title: "Scope", cell: c => c.scope },
        { title: "State", cell: c => c.disabled ? "revoked" : "active" },
        { title: "", cell: c => c.disabled ? "" : button("Revoke", () => { if (confirm("Revoke client " + c.client_id + "?")) act("/auth/clients/" + encodeURIComponent(c.client_id) + "/revoke", reload); }) },
      ], r.clients));
  } catch (e) { mount(clients, errorBox(e)); }
  try {
    const c = await api.get("/ehr/connections");
    mount(out, table([
      { title: "Id", cell: x => String(x.id) }, { title: "Vendor", cell: x => x.vendor }, { title: "Base URL", cell: x => x.base_url },
      { title: "Schedule", cell: x => x.schedule || "" },
      { title: "", cell: x => button("Sync now", () => act("/ehr/sync/" + encodeURIComponent(x.id), () => {})) },
    ], c.connections || c.items || (Array.isArray(c) ? c : [])));
  } catch (e) { mount(out, errorBox(e)); }
  try {
    const r = await api.get("/ehr/sync-history");
    mount(history, table([
      { title: "Run", cell: x => String(x.run_id || x.id) }, { title: "Connection", cell: x => String(x.connection || x.connection_id || "") },
      { title: "Status", cell: x => x.status }, { title: "Started", cell: x => fmtTime(x.started) },
      { title: "Fetched", cell: x => String(x.fetched ?? "") }, { title: "Created", cell: x => String(x.created ?? "") },
      { title: "Updated", cell: x => String(x.updated ?? "") }, { title: "Failed", cell: x => String(x.failed ?? "") },
    ], r.runs || r.items || (Array.isArray(r) ? r : [])));
  } catch (e) { mount(history, errorBox(e)); }
}
