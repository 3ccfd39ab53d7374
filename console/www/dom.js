// dom.js — building the page without ever parsing data as HTML.
//
// h(tag, attrs, ...children) makes an element; children are nodes or strings, and a
// string always becomes a text node (textContent), so message content such as
// "<script>" is shown as text and never runs. attrs: "class", "for", "on<event>"
// (a function), "aria-*", "data-*" and ordinary attributes (set with setAttribute).

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function mount(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// A table from rows: columns = [{title, cell: row => node|string}].
export function table(columns, rows, caption) {
  return h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map(c => h("th", { scope: "col" }, c.title)))),
    h("tbody", {}, rows.map(r => h("tr", {}, columns.map(c => h("td", {}, c.cell(r)))))));
}

export function field(label, input) {
  const id = input.id || ("f-" + Math.random().toString(36).slice(2));
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return "";
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}
