// Pieces several pages share: status badges, run rows, messages, actions.

import { api, canChange, Unauthorized } from "/ui/api.js";
import { button, h, show } from "/ui/dom.js";
import { duration, seconds, when } from "/ui/time.js";

export const FAILED = new Set(["failed", "timed_out", "lost", "killed"]);

export function badge(status) {
  return h("span", { class: `status status-${status}` }, status.replace("_", " "));
}

export function jobState(job) {
  return job.paused ? "paused" : job.enabled ? "active" : "disabled";
}

// The page-wide message line (errors from actions; cleared by the next success).
export function say(message, kind = "error") {
  const line = document.getElementById("error");
  line.textContent = message || "";
  line.className = kind;
}

// Run an action against the API; its failure becomes the page's message. Resolves to the
// answer, or undefined when it failed.
export async function act(method, path, body = null) {
  try {
    const answer = await api(method, path, body);
    say("");
    return answer;
  } catch (error) {
    if (error instanceof Unauthorized) signedOut(error.message);
    else say(error.message);
    return undefined;
  }
}

// Show another page (the address changes as with a link); `keep` keeps the message line.
export function navigate(path, keep = false) {
  history.pushState(null, "", path);
  window.dispatchEvent(new CustomEvent("evercron:navigate", { detail: { keep } }));
}

export function signedOut(message) {
  window.dispatchEvent(new CustomEvent("evercron:signed-out", { detail: message }));
}

// Load data for a view; a failure shows in the view instead of its content.
export async function load(view, loader) {
  try {
    return await loader();
  } catch (error) {
    if (error instanceof Unauthorized) signedOut(error.message);
    else show(view, h("p", { class: "error", role: "alert" }, error.message));
    return null;
  }
}

export function runDuration(run) {
  if (!run.started_at) return "";
  return duration(seconds(run.started_at, run.finished_at || new Date().toISOString()));
}

export function exitOf(run) {
  return run.signal || (run.exit_code === null ? "" : String(run.exit_code));
}

// A row of a run table: id, (job,) trigger, scheduled, duration, status, exit, kill.
export function runRow(run, { zone = "UTC", withJob = true, onChange = null } = {}) {
  const cells = [
    h("td", { "data-label": "run" }, h("a", { href: `/runs/${run.id}` }, `#${run.id}`)),
    withJob ? h("td", { "data-label": "job" }, h("a", { href: `/jobs/${encodeURIComponent(run.job)}` }, run.job)) : null,
    h("td", { "data-label": "trigger" }, run.trigger, run.attempt > 1 ? ` (attempt ${run.attempt})` : ""),
    h("td", { "data-label": "scheduled" }, when(run.scheduled_at, zone)),
    h("td", { "data-label": "duration" }, runDuration(run)),
    h("td", { "data-label": "status", title: run.error || "" }, badge(run.status)),
    h("td", { "data-label": "exit" }, exitOf(run)),
    h(
      "td",
      { class: "actions" },
      run.status === "running" && canChange()
        ? button("Kill", async () => {
            await act("POST", `/api/v1/runs/${run.id}/kill`);
            if (onChange) await onChange();
          })
        : null,
    ),
  ];
  return h("tr", { dataset: { run: String(run.id), status: run.status } }, cells);
}

export function runTable(id, withJob = true) {
  const names = ["run", withJob ? "job" : null, "trigger", "scheduled", "duration", "status", "exit", ""];
  return h(
    "table",
    { id, class: "table runs" },
    h("thead", {}, h("tr", {}, names.filter((n) => n !== null).map((name) => h("th", { scope: "col" }, name)))),
    h("tbody"),
  );
}

// Older/newer pages of runs, by id: `before` is the last id of the page shown.
export class Pager {
  constructor(onPage) {
    this.onPage = onPage;
    this.stack = [];
    this.before = null;
    this.last = null;
    this.newest = button("Newest", () => this.go(null, []));
    this.newer = button("Newer", () => this.go(this.stack[this.stack.length - 1] ?? null, this.stack.slice(0, -1)));
    this.older = button("Older", () => this.go(this.last, [...this.stack, this.before]));
    this.element = h("nav", { class: "pager", "aria-label": "pages" }, this.newest, this.newer, this.older);
  }

  go(before, stack) {
    this.before = before;
    this.stack = stack;
    return this.onPage(before);
  }

  // After a page is shown: its runs and whether a full page came (more may follow).
  shown(runs, full) {
    this.last = runs.length ? runs[runs.length - 1].id : null;
    this.older.hidden = !full;
    this.newer.hidden = this.before === null || this.stack.length === 0;
    this.newest.hidden = this.before === null;
  }
}
