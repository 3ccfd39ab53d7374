// app.js — the console's shell: navigation by role, the hash router, periodic
// refresh of live views, and the session (sign-in, expiry, sign-out).
//
// Routes (location.hash): #/dashboard, #/channels, #/channels/ID, #/channels/ID/edit,
// #/channels/ID/test, #/messages/ID?filters, #/message/ID/MID, #/deadletter/ID,
// #/fhir?type=&params=, #/fhir/TYPE/ID, #/audit, #/admin, #/login.

import { h, mount } from "./dom.js";
import * as api from "./api.js";
import * as v from "./views.js";

const NAV = [
  { href: "#/dashboard", label: "Dashboard", roles: ["admin", "integrator", "auditor"] },
  { href: "#/channels", label: "Channels", roles: ["admin", "integrator"] },
  { href: "#/fhir", label: "FHIR", roles: ["admin", "integrator", "clinician"] },
  { href: "#/audit", label: "Audit", roles: ["admin", "auditor"] },
  { href: "#/admin", label: "Administration", roles: ["admin"] },
];

const ROUTES = [
  [/^\/dashboard$/, v.dashboardView, []],
  [/^\/channels$/, v.channelsView, []],
  [/^\/channels\/([^/]+)$/, v.channelView, ["id"]],
  [/^\/channels\/([^/]+)\/edit$/, v.channelEditView, ["id"]],
  [/^\/channels\/([^/]+)\/test$/, v.channelTestView, ["id"]],
  [/^\/messages\/([^/]+)$/, v.messagesView, ["id"]],
  [/^\/message\/([^/]+)\/([^/]+)$/, v.messageView, ["id", "mid"]],
  [/^\/deadletter\/([^/]+)$/, v.deadLetterView, ["id"]],
  [/^\/fhir$/, v.fhirView, []],
  [/^\/fhir\/([A-Za-z]+)\/([^/]+)$/, v.resourceView, ["type", "rid"]],
  [/^\/audit$/, v.auditView, []],
  [/^\/admin$/, v.adminView, []],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const banner = document.getElementById("banner");
let timer = null;
let generation = 0;

function allowed(item, role) { return role === "admin" || item.roles.includes(role); }

function shell() {
  const s = api.session.get();
  mount(nav, s ? h("ul", {}, NAV.filter(i => allowed(i, s.role)).map(i =>
    h("li", {}, h("a", { href: i.href, "aria-current": location.hash.startsWith(i.href) ? "page" : null }, i.label)))) : null);
  mount(who, s ? [s.user + " (" + s.role + ") ", h("button", { type: "button", onclick: signOut }, "Sign out")] : "");
}

async function signOut() {
  await api.logout();
  location.hash = "#/login";
}

function home(role) {
  return role === "clinician" ? "#/fhir" : role === "auditor" ? "#/audit" : "#/dashboard";
}

async function render() {
  const gen = ++generation;
  clearTimeout(timer);
  const s = api.session.get();
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  if (!s || path === "/login") {
    shell();
    // The note (why the session ended) stays until the next sign-in.
    v.loginView(main, () => { banner.dataset.note = ""; location.hash = home(api.session.get().role); }, banner.dataset.note);
    return;
  }
  shell();
  for (const [re, view, names] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    const params = {};
    names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
    const rerender = () => { if (gen === generation) render(); };
    try {
      // The view fills its own element, shown only if no newer render started meanwhile
      // (a slow answer for a view the user has left must not cover the current one).
      const el = h("div");
      const r = await view(el, params, rerender, query);
      if (gen !== generation) return;
      mount(main, el);
      banner.textContent = "";
      if (r && r.refresh && gen === generation) {
        const tick = async () => {
          if (gen !== generation) return;
          await api.keepAlive();
          // A live view refreshes only while nobody is typing in it.
          const a = document.activeElement;
          if (a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) timer = setTimeout(tick, r.refresh);
          else rerender();
        };
        timer = setTimeout(tick, r.refresh);
      }
    } catch (e) {
      if (e.status === 401 || gen !== generation) return;
      mount(main, v.errorBox(e));
      // The engine went away: try again until it answers.
      if (e.status === 0 && gen === generation) timer = setTimeout(rerender, 3000);
    }
    return;
  }
  location.hash = home(s.role);
}

api.setUnauthorizedHandler(note => {
  banner.dataset.note = note;
  // The hash change renders the login view; render here only if it is already there.
  if (location.hash === "#/login") render();
  else location.hash = "#/login";
});
window.addEventListener("hashchange", render);
render();
