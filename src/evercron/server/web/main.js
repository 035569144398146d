// The evercron web page: signing in, the routes (deep links that survive a reload), the
// status line and the refresh of the page shown. Everything comes from the daemon's API.

import { api, canChange, keepToken, savedToken, session, Unauthorized } from "/ui/api.js";
import * as jobPage from "/ui/job.js";
import * as jobsPage from "/ui/jobs.js";
import { h, show } from "/ui/dom.js";
import * as nodesPage from "/ui/nodes.js";
import * as notificationsPage from "/ui/notifications.js";
import { navigate, say } from "/ui/parts.js";
import * as runPage from "/ui/run.js";
import * as runsPage from "/ui/runs.js";

const REFRESH_MS = 3000;
const ROUTES = [
  [/^\/$/, jobsPage, "Jobs"],
  [/^\/jobs\/([^/]+)$/, jobPage, "Job"],
  [/^\/runs$/, runsPage, "Runs"],
  [/^\/runs\/(\d+)$/, runPage, "Run"],
  [/^\/nodes$/, nodesPage, "Nodes"],
  [/^\/notifications$/, notificationsPage, "Notifications"],
];
// The navigation link of each page's section: a job is among the jobs, a run among the runs.
const SECTIONS = [
  [/^\/runs(\/|$)/, "/runs"],
  [/^\/nodes$/, "/nodes"],
  [/^\/notifications$/, "/notifications"],
];

const $ = (id) => document.getElementById(id);
let current = null; // the page shown: {refresh(), unmount()}
let timer = null;
let drawing = 0;

// -- signing in -------------------------------------------------------------------------

function showLogin(message) {
  stop();
  keepToken(null);
  $("app").hidden = true;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("status").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function signIn(candidate) {
  session.token = candidate;
  const route = ROUTES.find(([pattern]) => pattern.test(location.pathname));
  if (route && route[1].prefetch) route[1].prefetch();
  try {
    showStatus(await api("GET", "/api/v1/status"));
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    $("login").hidden = false;
    $("login-error").textContent = `cannot reach the daemon: ${error.message}`;
    return;
  }
  keepToken(candidate);
  $("login").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  document.body.classList.toggle("read-only", !canChange());
  await draw();
  timer = setInterval(() => document.hidden || refresh(), REFRESH_MS);
}

function stop() {
  clearInterval(timer);
  timer = null;
  if (current && current.unmount) current.unmount();
  current = null;
}

function showStatus(status) {
  session.access = status.access;
  session.timezone = status.timezone;
  const running = status.running_runs.length;
  const viewer = status.access === "read-only" ? " · read-only" : "";
  $("status").textContent = `${status.jobs} jobs (${status.paused_jobs} paused) · ${running} running · v${status.version}${viewer}`;
}

// -- pages ------------------------------------------------------------------------------

async function draw(keepMessage = false) {
  const ticket = ++drawing;
  if (current && current.unmount) current.unmount();
  current = null;
  if (!keepMessage) say("");
  const view = $("view");
  const found = ROUTES.map(([pattern, page, title]) => [pattern.exec(location.pathname), page, title]).find(([match]) => match);
  const section = (SECTIONS.find(([pattern]) => pattern.test(location.pathname)) || [null, "/"])[1];
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!found) return show(view, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "/" }, "See the jobs.")));
  const [match, page, title] = found;
  document.title = `${title} · evercron`;
  // Each page draws into a holder of its own: one still loading when another is asked for
  // (Back pressed at once) finishes into a holder no longer shown, never over the next.
  const holder = h("div", { class: "page" }, h("p", { class: "hint" }, "Loading…"));
  show(view, holder);
  const shown = await page.mount(holder, match.slice(1), new URLSearchParams(location.search));
  if (ticket !== drawing) {
    if (shown && shown.unmount) shown.unmount(); // another page was asked for meanwhile
    return;
  }
  current = shown;
}

// One refresh at a time: when the daemon answers slower than the timer ticks, refreshes
// must not pile up and take every connection the browser allows the daemon's address
// (an action of the user - a preview, a save - would wait behind them).
let refreshing = false;

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    showStatus(await api("GET", "/api/v1/status"));
    if (current && current.refresh) await current.refresh();
  } catch (error) {
    if (error instanceof Unauthorized) showLogin(error.message);
    else $("status").textContent = `cannot reach the daemon: ${error.message}`;
  } finally {
    refreshing = false;
  }
}

// Links inside the page change the view without a reload (the address stays shareable).
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.hasAttribute("download") || link.target) return;
  const href = link.getAttribute("href");
  if (!href.startsWith("/") || href.startsWith("//") || href.startsWith("/api/")) return;
  event.preventDefault();
  if (href !== location.pathname + location.search) navigate(href);
  $("view").focus({ preventScroll: true });
});
window.addEventListener("popstate", () => session.token && draw());
window.addEventListener("evercron:navigate", (event) => session.token && draw(event.detail.keep));
window.addEventListener("evercron:signed-out", (event) => showLogin(event.detail));

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim());
});
$("sign-out").addEventListener("click", () => showLogin(""));

const saved = savedToken();
if (saved) signIn(saved);
else showLogin("");
