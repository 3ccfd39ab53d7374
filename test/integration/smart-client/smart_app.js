// smart_app.js — a SMART App Launch 2.0 standalone launch driven by the real `fhirclient`
// library (npm) under Node, with a scripted, browser-less user agent.
//
//   node smart_app.js ISS CLIENT_ID APP_PORT USER PASSWORD PATIENT
//
// The app side is fhirclient's Node adapter: GET /launch calls authorize() (discovery at
// ISS/.well-known/smart-configuration, PKCE S256, state), GET /callback calls ready() (code
// exchange at the token endpoint). The "browser" follows the redirects, fills the engine's
// login and consent form, and submits it. Prints the outcome as one JSON line.
"use strict";
const http = require("http");
const smart = require("fhirclient");

const [iss, clientId, appPort, user, password, patient] = process.argv.slice(2);
const redirectUri = `http://127.0.0.1:${appPort}/callback`;
const session = {};

const app = http.createServer((req, res) => {
  req.session = session;
  const url = new URL(req.url, `http://127.0.0.1:${appPort}`);
  if (url.pathname === "/launch") {
    smart(req, res).authorize({
      clientId, iss, redirectUri, pkceMode: "required",
      scope: "launch/patient openid fhirUser offline_access patient/Observation.rs",
    }).catch(e => { res.writeHead(500); res.end(String(e)); });
  } else if (url.pathname === "/callback") {
    smart(req, res).ready().then(client => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ patient: client.getPatientId(), user: client.getUserId(),
                               fhirUser: client.getFhirUser(), tokenResponse: client.state.tokenResponse }));
    }).catch(e => { res.writeHead(500); res.end("ready failed: " + String(e)); });
  } else {
    res.writeHead(404); res.end();
  }
});

async function browse() {
  // 1. open the app's launch page: it redirects to the authorization endpoint
  let r = await fetch(`http://127.0.0.1:${appPort}/launch`, { redirect: "manual" });
  if (r.status !== 302) throw new Error("launch: " + r.status + " " + await r.text());
  const authorizeUrl = r.headers.get("location");
  // 2. the engine's login and consent page
  r = await fetch(authorizeUrl, { redirect: "manual" });
  if (r.status !== 200) throw new Error("authorize page: " + r.status + " " + await r.text());
  const page = await r.text();
  const form = new URLSearchParams();
  for (const m of page.matchAll(/<input type=hidden name="([^"]+)" value="([^"]*)">/g)) {
    form.append(m[1], m[2].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">").replace(/&amp;/g, "&"));
  }
  form.append("username", user);
  form.append("password", password);
  form.append("patient", patient);
  form.append("decision", "allow");
  const action = new URL("/auth/authorize", authorizeUrl).toString();
  // 3. submit: the engine redirects back to the app with code and state
  r = await fetch(action, { method: "POST", body: form, redirect: "manual",
                            headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  if (r.status !== 302) throw new Error("consent: " + r.status + " " + await r.text());
  // 4. the app's callback exchanges the code
  r = await fetch(r.headers.get("location"), { redirect: "manual" });
  const body = await r.text();
  if (r.status !== 200) throw new Error("callback: " + r.status + " " + body);
  return { authorizeUrl, result: JSON.parse(body) };
}

app.listen(Number(appPort), "127.0.0.1", () => {
  browse().then(out => { console.log(JSON.stringify(out)); app.close(); process.exit(0); })
    .catch(e => { console.error(String(e && e.stack || e)); process.exit(1); });
});
