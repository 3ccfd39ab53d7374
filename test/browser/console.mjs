// console.mjs — the admin console in a real browser: Debian's Chromium, headless,
// driven by playwright-core (executablePath: the system Chromium; nothing downloaded).
//
// Run by test/integration/test_console.py, which starts the engine (authentication
// on), the users, the channels, an HTTP sink and the messages; this script gets
// them through the environment and checks what a person would see. Each check
// prints "ok - name" or "not ok - name: reason"; the exit status is the number of
// failures (0: all passed). Screenshots of the main views go to $SHOTS.

import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const env = process.env;
const BASE = env.BASE;
const SHOTS = env.SHOTS;
const SINK = env.SINK;
const CHANNEL = env.CHANNEL;
const JSON_CHANNEL = env.JSON_CHANNEL;
const CHROMIUM = env.CHROMIUM || "/usr/bin/chromium";
let failures = 0;

async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log("ok - " + name + " (" + (Date.now() - t0) + " ms)");
  } catch (e) {
    failures++;
    console.log("not ok - " + name + ": " + (e && e.message ? e.message.split("\n")[0] : e));
    try { await shot(page, "failed-" + failures); } catch { /* the page may be gone */ }
  }
}

function assert(cond, msg) { if (!cond) throw new Error(msg); }

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

async function sink(status) {
  const r = await fetch(SINK + "/__status/" + status, { method: "POST" });
  assert(r.ok, "sink control failed");
}

async function sinkCount() {
  const r = await fetch(SINK + "/__count");
  return Number(await r.text());
}

async function waitFor(fn, what, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await new Promise(r => setTimeout(r, 200));
  }
  throw new Error("timed out waiting for " + what + (last instanceof Error ? ": " + last.message : ""));
}

async function login(page, user, pass) {
  await page.goto(BASE + "/console/#/login");
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(pass);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const consoleErrors = [];
page.on("pageerror", e => consoleErrors.push(e.message));
page.on("console", m => { if (m.type() === "error") consoleErrors.push(m.text()); });

await check("the console is served with a strict Content-Security-Policy", async () => {
  const r = await page.goto(BASE + "/console");
  assert(page.url().endsWith("/console/"), "GET /console does not lead to /console/: " + page.url());
  const csp = r.headers()["content-security-policy"] || "";
  assert(csp.includes("script-src 'self'") && !csp.includes("unsafe-inline"), "CSP: " + csp);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
});

await check("a wrong password is refused with a message", async () => {
  await login(page, env.ADMIN_USER, "not-the-password");
  await page.getByText("Wrong user name or password.").waitFor();
});

await check("an admin signs in and sees the dashboard with the channel", async () => {
  await login(page, env.ADMIN_USER, env.ADMIN_PASS);
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await page.getByRole("link", { name: CHANNEL, exact: true }).first().waitFor();
  const health = await page.getByTestId("health").textContent();
  assert(["pass", "warn", "fail"].includes(health), "health shown as " + health);
  const token = await page.evaluate(() => document.cookie);
  assert(token === "", "the console set a cookie: " + token);
  await shot(page, "dashboard");
});

await check("messages are found by control id and by text", async () => {
  await page.goto(BASE + "/console/#/messages/" + CHANNEL + "?control=" + env.CONTROL_ID);
  await waitFor(async () => (await page.getByTestId("messages").locator("tbody tr").count()) === 1, "one row for the control id");
  await page.goto(BASE + "/console/#/messages/" + CHANNEL + "?text=" + env.WORD);
  await waitFor(async () => (await page.getByTestId("messages").locator("tbody tr").count()) === 1, "one row for the word");
  await page.goto(BASE + "/console/#/messages/" + CHANNEL);
  await waitFor(async () => (await page.getByTestId("messages").locator("tbody tr").count()) >= 3, "all messages");
  await shot(page, "messages");
});

await check("a message shows its segments with field names, and <script> in it is only text", async () => {
  await page.goto(BASE + "/console/#/message/" + CHANNEL + "/" + env.XSS_ID);
  const seg = page.getByTestId("segments");
  await seg.waitFor();
  const msh10 = seg.locator('span[title^="MSH-10 "]');
  assert((await msh10.getAttribute("title")) === "MSH-10 Message Control ID", "MSH-10 title");
  assert((await msh10.textContent()) === env.XSS_CONTROL_ID, "MSH-10 value " + (await msh10.textContent()));
  await page.getByText("<script>window.__xss=1</script>").first().waitFor();
  // The FHIR output of the hl7v2-to-fhir step: a transaction Bundle with the Patient.
  await page.getByRole("heading", { name: "Output (after the steps)" }).waitFor();
  await page.getByText('"resourceType": "Bundle"').first().waitFor();
  await page.getByText('"family": "<script>window.__xss=1</script>"').first().waitFor();
  const ran = await page.evaluate(() => window.__xss);
  assert(ran === undefined, "the script in the message ran");
  assert((await page.locator("main script").count()) === 0, "a script element was created");
  await shot(page, "message");
});

await check("a C-CDA document is shown indented, its markup as text", async () => {
  await page.goto(BASE + "/console/#/message/docs/" + env.DOC_ID);
  const xml = page.getByTestId("xml");
  await xml.waitFor();
  const text = await xml.textContent();
  assert(text.includes('\n  <title>Summary</title>\n'), "not indented: " + text.slice(0, 200));
  assert(text.includes("<script>window.__xss2=1</script>"), "the script element is not shown as text");
  assert((await page.evaluate(() => window.__xss2)) === undefined, "the script in the document ran");
});

await check("a JSON message shows its output after the steps", async () => {
  await page.goto(BASE + "/console/#/message/" + JSON_CHANNEL + "/" + env.JSON_ID);
  await page.getByRole("heading", { name: "Output (after the steps)" }).waitFor();
  await page.getByText('"stamped": "by-the-set-step"').waitFor();
});

await check("a failing destination's queue grows, then drains when it recovers", async () => {
  await page.goto(BASE + "/console/#/channels/" + CHANNEL);
  await waitFor(async () => Number(await page.getByTestId("queued-downstream").textContent()) >= 1, "queued > 0");
  await shot(page, "channel");
  await sink(200);
  await waitFor(async () => Number(await page.getByTestId("queued-downstream").textContent()) === 0, "queue drained", 20000);
});

await check("dead letters are requeued from the dead-letter view", async () => {
  await page.goto(BASE + "/console/#/channels/" + CHANNEL);
  await waitFor(async () => Number(await page.getByTestId("dead-fragile").textContent()) >= 1, "dead-lettered > 0");
  const before = await sinkCount();
  await page.goto(BASE + "/console/#/deadletter/" + CHANNEL);
  await page.getByRole("button", { name: "Requeue all" }).click();
  await page.getByTestId("dlq-empty").waitFor({ timeout: 20000 });
  await waitFor(async () => (await sinkCount()) > before, "requeued messages delivered");
  await shot(page, "deadletter");
});

await check("an invalid channel edit is shown at its line and not saved", async () => {
  await page.goto(BASE + "/console/#/channels/" + CHANNEL + "/edit");
  const area = page.getByLabel("Channel file");
  await area.waitFor();
  const text = await area.inputValue();
  const broken = text.replace('"retry_interval_ms": 300', '"retry_interval_ms": "soon"');
  assert(broken !== text, "the file lacks the expected key");
  const line = broken.split("\n").findIndex(l => l.includes('"soon"')) + 1;
  await area.fill(broken);
  await page.getByRole("button", { name: "Validate" }).click();
  const result = page.getByTestId("edit-result");
  await result.getByText(new RegExp("^line " + line + ", column \\d+: ")).waitFor();
  await page.getByRole("button", { name: "Save" }).click();
  await result.getByText(new RegExp("^line " + line + ",")).waitFor();
  await shot(page, "channel-edit");
  const again = await fetch(BASE + "/channels/" + CHANNEL + "/file", { headers: { Authorization: "Bearer " + await page.evaluate(() => JSON.parse(sessionStorage.getItem("holovitals.session")).token) } });
  assert(!(await again.json()).text.includes('"soon"'), "the invalid text was saved");
});

await check("test with a sample message shows each stage", async () => {
  await page.goto(BASE + "/console/#/channels/" + JSON_CHANNEL + "/test");
  await page.getByLabel("Sample message").fill('{"resourceType": "Patient", "id": "t1"}');
  await page.getByRole("button", { name: "Run" }).click();
  await page.getByText("Step 1 (set): ok").waitFor();
  await page.getByText("would receive the message").first().waitFor();
});

await check("the FHIR browser searches and shows a resource with its references as links", async () => {
  await page.goto(BASE + "/console/#/fhir?type=Observation&params=" + encodeURIComponent("subject=Patient/" + env.PATIENT_ID));
  const link = page.getByTestId("fhir-results").getByRole("link", { name: /^Observation\// });
  await link.first().waitFor();
  await link.first().click();
  await page.getByTestId("resource").getByRole("link", { name: "Patient/" + env.PATIENT_ID }).click();
  await page.getByText(env.PATIENT_FAMILY).first().waitFor();
  await page.getByRole("button", { name: "History" }).click();
  await page.getByRole("cell", { name: "1", exact: true }).first().waitFor();
  await shot(page, "fhir");
});

await check("the audit chain is verified from the audit view, and the log lists what was done", async () => {
  await page.goto(BASE + "/console/#/audit");
  await page.getByRole("button", { name: "Verify the audit chain" }).click();
  await page.getByTestId("verify-result").getByText(/^The audit chain is intact \(\d+ records/).waitFor();
  await page.getByTestId("audit-results").locator("tbody tr").first().waitFor();
  await shot(page, "audit");
});

await check("the administration view lists users with their roles", async () => {
  await page.goto(BASE + "/console/#/admin");
  const users = page.getByTestId("users");
  await users.getByRole("cell", { name: env.CLIN_USER, exact: true }).waitFor();
  const role = users.getByLabel("role of " + env.CLIN_USER);
  assert((await role.inputValue()) === "clinician", "role shown as " + (await role.inputValue()));
  // Register a confidential SMART app: its secret is shown once, and it is listed.
  await page.getByLabel("Name", { exact: true }).fill("Console app");
  await page.getByLabel("Type", { exact: true }).selectOption({ label: "confidential" });
  await page.getByLabel("Redirect URI", { exact: true }).fill("https://app.example.org/cb");
  await page.getByRole("button", { name: "Register client" }).click();
  await page.getByTestId("client-result").getByText(/secret \(shown once\)/).waitFor();
  await page.goto(BASE + "/console/#/dashboard");
  await page.goto(BASE + "/console/#/admin");
  await page.getByTestId("clients").getByRole("cell", { name: "Console app" }).waitFor();
  await shot(page, "admin");
});

await check("a large message opens truncated with a download link", async () => {
  await page.goto(BASE + "/console/#/message/" + JSON_CHANNEL + "/" + env.BIG_ID);
  await page.getByText(/^Shown truncated/).first().waitFor({ timeout: 30000 });
  await page.getByRole("link", { name: "Download the whole message" }).first().waitFor();
});

await check("the dashboard says when the engine goes away and recovers when it is back", async () => {
  await page.goto(BASE + "/console/#/dashboard");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await fetch(SINK + "/__stop", { method: "POST" });
  await page.getByText("The engine is not answering; retrying shortly.").first().waitFor({ timeout: 20000 });
  await fetch(SINK + "/__start", { method: "POST" });
  await page.getByRole("heading", { name: "Dashboard" }).waitFor({ timeout: 30000 });
  await page.getByRole("link", { name: CHANNEL, exact: true }).first().waitFor({ timeout: 30000 });
});

await check("a clinician sees only what the role allows", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await login(page, env.CLIN_USER, env.CLIN_PASS);
  await page.getByRole("heading", { name: "FHIR browser" }).waitFor();
  assert((await page.getByRole("navigation").getByRole("link", { name: "Channels" }).count()) === 0, "Channels in the nav");
  await page.goto(BASE + "/console/#/channels");
  await page.getByText("Your role may not do this.").waitFor();
});

await check("an ended session returns to the login with a note", async () => {
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem("holovitals.session")).token);
  const r = await fetch(BASE + "/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + token } });
  assert(r.status === 204 || r.status === 200, "logout " + r.status);
  // Revocations reach every request path within a couple of seconds (docs/security.md).
  await waitFor(async () => (await fetch(BASE + "/fhir/Patient", { headers: { Authorization: "Bearer " + token } })).status === 401,
                "the ended session's token to be refused");
  await page.goto(BASE + "/console/#/fhir?type=Patient");
  await page.getByText("Your session has ended; please sign in again.").waitFor();
});

await check("no script errors in the page", async () => {
  // Refused answers the views expect, and the connections refused while the engine was stopped.
  const real = consoleErrors.filter(e => !/status of (401|403|404|422)|net::ERR_CONNECTION_(REFUSED|RESET)/.test(e));
  assert(real.length === 0, real.join(" | "));
});

await browser.close();
console.log(failures === 0 ? "console: all checks passed" : `console: ${failures} check(s) failed`);
process.exit(failures);
