// The evercron web page: jobs, runs and live output, through the daemon's own API.
// Everything shown comes from the API as text (textContent, never innerHTML), so a job's
// name, command or output can never turn into markup.
"use strict";

const REFRESH_MS = 2000;
const FOLLOW_RETRIES = 20; // a followed stream ends at each upgrade: resume from the successor
const TOKEN_KEY = "evercron-token";

const $ = (id) => document.getElementById(id);
let token = null;
let refreshTimer = null;
let follow = null; // {runId, controller}

// -- signing in -------------------------------------------------------------------------

function takeTokenFromLink() {
  // `evercron web` prints a link ending in #token=...: the fragment never reaches a server.
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  stopRefreshing();
  closeOutput();
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("status").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function signIn(candidate) {
  token = candidate;
  const outcome = await refresh();
  if (outcome === "unauthorized") return;
  if (outcome === "unreachable" && $("app").hidden) {
    $("login").hidden = false;
    $("login-error").textContent = $("error").textContent;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $("login").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  startRefreshing();
}

// -- the API ----------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(method, path, body = null) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== null) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === null ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) throw new Unauthorized((await errorOf(response)) || "wrong token");
  if (!response.ok) throw new Error(`${method} ${path}: ${(await errorOf(response)) || response.status}`);
  return response.status === 204 ? null : response.json();
}

async function errorOf(response) {
  try {
    return (await response.json()).error;
  } catch {
    return "";
  }
}

async function act(method, path, then = null, body = null) {
  try {
    const answer = await api(method, path, body);
    $("error").textContent = "";
    if (then) then(answer);
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    $("error").textContent = error.message;
  }
  await refresh();
}

function addJob(event) {
  event.preventDefault();
  const job = {
    name: $("add-name").value.trim(),
    schedule: $("add-schedule").value.trim(),
    command: $("add-command").value,
  };
  act("POST", "/api/v1/jobs", () => $("add-form").reset(), job);
}

function deleteJob(name) {
  if (!confirm(`Delete job ${name}? Its run history stays.`)) return;
  act("DELETE", `/api/v1/jobs/${encodeURIComponent(name)}`);
}

function runNow(name) {
  // The new run's output opens at once, live.
  act("POST", `/api/v1/jobs/${encodeURIComponent(name)}/trigger`, (run) => openOutput(run.id));
}

// -- refreshing the tables ("ok", "unauthorized" or "unreachable") ----------------------

async function refresh() {
  const query = new URLSearchParams({ limit: "50" });
  if ($("filter-job").value) query.set("job", $("filter-job").value);
  if ($("filter-status").value) query.set("status", $("filter-status").value);
  try {
    const [status, jobs, runs] = await Promise.all([
      api("GET", "/api/v1/status"),
      api("GET", "/api/v1/jobs"),
      api("GET", `/api/v1/runs?${query}`),
    ]);
    renderStatus(status);
    renderJobs(jobs);
    renderRuns(runs);
    return "ok";
  } catch (error) {
    if (error instanceof Unauthorized) {
      showLogin(error.message);
      return "unauthorized";
    }
    $("error").textContent = `cannot reach the daemon: ${error.message}`;
    return "unreachable";
  }
}

function startRefreshing() {
  stopRefreshing();
  refreshTimer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
}

function stopRefreshing() {
  if (refreshTimer !== null) clearInterval(refreshTimer);
  refreshTimer = null;
}

function renderStatus(status) {
  const running = status.running_runs.length;
  $("status").textContent =
    `version ${status.version} · pid ${status.pid} · up ${duration(status.uptime_seconds)} · ` +
    `${status.jobs} jobs (${status.paused_jobs} paused) · ${running} running`;
}

function renderJobs(jobs) {
  const rows = jobs.map((job) => {
    const state = job.paused ? "paused" : job.enabled ? "active" : "disabled";
    const row = tr([
      cell(job.name),
      cell(job.schedule, job.explanation),
      cell(job.next_fire_at ? when(job.next_fire_at) : "-"),
      cell(state, "", `state-${state}`),
      cell(job.command, "", "command"),
      buttons([
        ["Run now", () => runNow(job.name)],
        job.paused
          ? ["Resume", () => act("POST", `/api/v1/jobs/${encodeURIComponent(job.name)}/resume`)]
          : ["Pause", () => act("POST", `/api/v1/jobs/${encodeURIComponent(job.name)}/pause`)],
        ...(job.source === "api" ? [["Delete", () => deleteJob(job.name)]] : []),
      ]),
    ]);
    row.dataset.job = job.name;
    return row;
  });
  $("jobs").tBodies[0].replaceChildren(...rows);
  const select = $("filter-job");
  const chosen = select.value;
  const names = jobs.map((job) => job.name);
  if (chosen && !names.includes(chosen)) names.push(chosen);
  select.replaceChildren(option("", "all"), ...names.map((name) => option(name, name)));
  select.value = chosen;
}

function renderRuns(runs) {
  const rows = runs.map((run) => {
    const row = tr([
      cell(String(run.id)),
      cell(run.job),
      cell(run.trigger),
      cell(when(run.scheduled_at)),
      cell(runDuration(run)),
      cell(run.status, run.error || "", `status-${run.status}`),
      cell(run.signal || (run.exit_code === null ? "" : String(run.exit_code))),
      run.status === "running"
        ? buttons([["Kill", () => act("POST", `/api/v1/runs/${run.id}/kill`)]])
        : cell(""),
    ]);
    row.className = "run";
    row.dataset.run = String(run.id);
    if (follow && follow.runId === run.id) row.classList.add("selected");
    row.addEventListener("click", (event) => {
      if (event.target.tagName !== "BUTTON") openOutput(run.id);
    });
    return row;
  });
  $("runs").tBodies[0].replaceChildren(...rows);
}

// -- live output ------------------------------------------------------------------------

function openOutput(runId) {
  closeOutput();
  const controller = new AbortController();
  follow = { runId, controller };
  $("output").replaceChildren();
  $("output-run").textContent = String(runId);
  $("output-status").textContent = "";
  $("output-panel").hidden = false;
  for (const row of $("runs").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.run === String(runId));
  }
  followOutput(runId, controller.signal);
}

function closeOutput() {
  if (follow) follow.controller.abort();
  follow = null;
  $("output-panel").hidden = true;
}

async function followOutput(runId, signal) {
  let lastId = null;
  const text = new OutputText();
  for (let attempt = 0; attempt <= FOLLOW_RETRIES && !signal.aborted; attempt++) {
    const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    try {
      const response = await fetch(`/api/v1/runs/${runId}/output?follow=1`, { headers, signal });
      if (!response.ok) {
        note(`cannot read the output: ${(await errorOf(response)) || response.status}`);
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.id !== null) lastId = event.id;
          if (show(event, text)) return; // the run ended
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250)); // then resume where it stopped
  }
}

function parseEvent(text) {
  // The daemon writes one `data:` line of JSON per event; CR and LF inside are escaped.
  const event = { id: null, kind: "message", data: null };
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue; // a comment (heartbeat) or nothing
    const field = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") event.id = value;
    else if (field === "event") event.kind = value;
    else if (field === "data") event.data = JSON.parse(value);
  }
  return event;
}

// Output text as the API sends it: bytes that are not UTF-8 arrive as U+DC80..U+DCFF
// (one per byte). They become bytes again and each stream is decoded as one, so a
// character split across two chunks shows whole.
class OutputText {
  constructor() {
    this.decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    this.encoder = new TextEncoder();
  }

  decode(stream, text) {
    return this.decoders[stream].decode(this.bytes(text), { stream: true });
  }

  bytes(text) {
    if (!/[\uDC80-\uDCFF]/u.test(text)) return this.encoder.encode(text);
    const parts = [];
    let size = 0;
    for (const piece of text.split(/([\uDC80-\uDCFF]+)/u)) {
      const part = /^[\uDC80-\uDCFF]/u.test(piece)
        ? Uint8Array.from(piece, (c) => c.charCodeAt(0) - 0xdc00)
        : this.encoder.encode(piece);
      parts.push(part);
      size += part.length;
    }
    const joined = new Uint8Array(size);
    let at = 0;
    for (const part of parts) {
      joined.set(part, at);
      at += part.length;
    }
    return joined;
  }
}

function show(event, text) {
  const output = $("output");
  if (event.kind === "stdout" || event.kind === "stderr") {
    const span = document.createElement("span");
    span.className = event.kind;
    span.textContent = text.decode(event.kind, event.data.text);
    output.append(span);
    output.scrollTop = output.scrollHeight;
  } else if (event.kind === "truncated") {
    note(`[… ${event.data.dropped} bytes not kept …]`);
  } else if (event.kind === "end") {
    $("output-status").textContent = event.data.status;
    $("output-status").className = `status-${event.data.status}`;
    return true;
  }
  return false;
}

function note(text) {
  const span = document.createElement("span");
  span.className = "note";
  span.textContent = `${text}\n`;
  $("output").append(span);
}

// -- small helpers ----------------------------------------------------------------------

function tr(cells) {
  const row = document.createElement("tr");
  row.append(...cells);
  return row;
}

function cell(text, title = "", className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (title) td.title = title;
  if (className) td.className = className;
  return td;
}

function buttons(actions) {
  const td = document.createElement("td");
  for (const [label, handler] of actions) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.addEventListener("click", handler);
    td.append(button);
  }
  return td;
}

function option(value, label) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label;
  return element;
}

function when(iso) {
  return new Date(iso).toLocaleString();
}

function runDuration(run) {
  if (!run.started_at) return "";
  const end = run.finished_at ? new Date(run.finished_at) : new Date();
  return duration((end - new Date(run.started_at)) / 1000);
}

function duration(seconds) {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${Math.floor(seconds % 60)}s`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours}h${minutes % 60}m` : `${Math.floor(hours / 24)}d${hours % 24}h`;
}

// -- start ------------------------------------------------------------------------------

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim());
});
$("sign-out").addEventListener("click", () => showLogin(""));
$("add-form").addEventListener("submit", addJob);
$("output-close").addEventListener("click", closeOutput);
$("filter-job").addEventListener("change", refresh);
$("filter-status").addEventListener("change", refresh);

const saved = takeTokenFromLink();
if (saved) signIn(saved);
else showLogin("");
