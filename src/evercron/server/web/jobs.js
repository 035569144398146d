// `/`: every job at a glance - schedule and its reading, next run, the last 20 runs as a
// strip of status marks, last duration, state - with filters and bulk actions. Rows are
// built once and only changed cells are touched on refresh, rows out of view are not
// rendered and their strips are drawn when they come near: a thousand jobs stay fast.

import { api, canChange, eachLimited, quoted } from "/ui/api.js";
import { button, debounce, h, show } from "/ui/dom.js";
import { jobForm } from "/ui/jobform.js";
import { FAILED, jobState, load, say, signedOut } from "/ui/parts.js";
import { duration, formatTime, when, zoneOf } from "/ui/time.js";

const STRIP = 20;
const FILTERS = {
  "": ["all jobs", () => true],
  active: ["active", (job) => jobState(job) === "active"],
  paused: ["paused", (job) => job.paused],
  disabled: ["disabled", (job) => !job.enabled],
  failing: ["last run failed", (job, runs) => FAILED.has(lastFinished(runs)?.status)],
  running: ["running now", (job, runs) => runs.some((run) => run.status === "running")],
  never: ["never run", (job, runs) => runs.length === 0],
};

function lastFinished(runs) {
  return runs.find((run) => run.status !== "running");
}

let early = null; // the first data, asked for while the page signs in

// Ask for the jobs and their runs at once, before the sign-in's status answer.
export function prefetch() {
  early = fetchAll().catch(() => null);
}

function fetchAll() {
  return Promise.all([api("GET", "/api/v1/jobs"), api("GET", `/api/v1/runs/latest?per_job=${STRIP}`)]);
}

export async function mount(view, params, query) {
  const page = new JobsPage(view, query);
  await page.refresh();
  return page;
}

class JobsPage {
  constructor(view, query) {
    this.view = view;
    this.rows = new Map(); // name -> {row, cells, job, runs, shown}
    this.text = h("input", {
      id: "job-filter",
      type: "search",
      placeholder: "name, command or schedule",
      value: query.get("q") || "",
      "aria-label": "filter jobs by text",
    });
    this.status = h(
      "select",
      { id: "job-status", "aria-label": "filter jobs by status" },
      Object.entries(FILTERS).map(([value, [label]]) => h("option", { value }, label)),
    );
    this.status.value = query.get("status") in FILTERS ? query.get("status") : "";
    const refilter = () => this.filter();
    this.text.addEventListener("input", debounce(refilter, 120));
    this.status.addEventListener("change", refilter);
    this.count = h("span", { id: "job-count", class: "hint" });
    this.tbody = h("tbody");
    this.selectAll = canChange()
      ? h("input", { type: "checkbox", id: "select-all", "aria-label": "select every job shown", on: { change: () => this.selectShown() } })
      : null;
    const headings = ["name", "schedule", "next run", `last ${STRIP} runs`, "last duration", "state"];
    // Laid out as a grid of rows so that rows out of view are not rendered at all.
    this.table = h(
      "table",
      { id: "jobs", class: `table jobs${this.selectAll ? " selectable" : ""}` },
      h("thead", {}, h("tr", {}, this.selectAll ? h("th", { class: "select" }, this.selectAll) : null, headings.map((name) => h("th", { scope: "col" }, name)))),
      this.tbody,
    );
    this.tbody.addEventListener("change", (event) => event.target.matches("input.pick") && this.updateBulk());
    this.tbody.addEventListener("keydown", stripKeys);
    this.near = new IntersectionObserver((seen) => this.drawStrips(seen), { rootMargin: "600px 0px" });
    this.tbody.addEventListener("pointerover", explainMark);
    this.tbody.addEventListener("focusin", explainMark);
    this.bulk = canChange() ? this.bulkBar() : null;
    show(
      view,
      h("h1", {}, "Jobs"),
      h("div", { class: "toolbar" }, h("label", { for: "job-filter" }, "filter"), this.text, this.status, this.count),
      this.bulk,
      h("div", { class: "scroll" }, this.table),
      canChange() ? this.addSection() : null,
    );
  }

  bulkBar() {
    this.picked = h("span", { id: "picked" }, "0 selected");
    this.bulkResult = h("span", { id: "bulk-result", role: "status" });
    const action = (label, path) => button(label, () => this.everySelected(label, path), { class: "bulk" });
    return h(
      "div",
      { id: "bulk", class: "toolbar", hidden: true },
      this.picked,
      action("Run now", "trigger"),
      action("Pause", "pause"),
      action("Resume", "resume"),
      this.bulkResult,
    );
  }

  addSection() {
    const details = h("details", { id: "add-job" }, h("summary", {}, "Add a job"));
    // The form (with its list of every time zone) is made when first opened.
    details.addEventListener("toggle", () => {
      if (!details.open || details.querySelector("form")) return;
      details.append(
        jobForm({
          onSaved: async (job) => {
            say(`Added ${job.name}.`, "done");
            details.open = false;
            await this.refresh();
          },
        }),
      );
    });
    return details;
  }

  async refresh() {
    const ready = early;
    early = null;
    const data = (ready && (await ready)) || (await load(this.view, fetchAll));
    if (!data) return;
    const [jobs, latest] = data;
    const runsOf = new Map(latest.map((entry) => [entry.job, entry.runs]));
    const seen = new Set();
    let previous = null;
    for (const job of jobs) {
      seen.add(job.name);
      let entry = this.rows.get(job.name);
      if (!entry) {
        entry = this.row(job);
        this.rows.set(job.name, entry);
      }
      this.update(entry, job, runsOf.get(job.name) || []);
      // Keep the API's order (by name) with as few moves as possible.
      const expected = previous ? previous.nextSibling : this.tbody.firstChild;
      if (expected !== entry.row) this.tbody.insertBefore(entry.row, expected);
      previous = entry.row;
    }
    for (const [name, entry] of this.rows) {
      if (!seen.has(name)) {
        entry.row.remove();
        this.rows.delete(name);
      }
    }
    this.filter();
  }

  // A row is a copy of one made once (cheaper than building a thousand cell by cell).
  row(job) {
    if (!this.blank) {
      const pick = canChange() ? h("td", { class: "select" }, h("input", { type: "checkbox", class: "pick" })) : null;
      this.blank = h(
        "tr",
        {},
        pick,
        h("td", { "data-label": "name", class: "name" }, h("a"), h("div", { class: "command" })),
        h("td", { "data-label": "schedule", class: "schedule" }),
        h("td", { "data-label": "next run" }),
        h("td", { "data-label": `last ${STRIP} runs` }, h("span", { class: "strip", role: "list" })),
        h("td", { "data-label": "last duration" }),
        h("td", { "data-label": "state" }),
      );
    }
    const row = this.blank.cloneNode(true);
    row.dataset.job = job.name;
    const tds = [...row.children];
    const pick = canChange() ? tds.shift().firstChild : null;
    if (pick) {
      pick.value = job.name;
      pick.setAttribute("aria-label", `select ${job.name}`);
    }
    const [name, schedule, next, strip, last, state] = tds;
    name.firstChild.href = `/jobs/${quoted(job.name)}`;
    name.firstChild.textContent = job.name;
    const cells = { name, schedule, next, strip, last, state };
    const entry = { row, cells, pick, job: null, runs: null, marks: "", drawn: null, near: false };
    row.evercron = entry;
    this.near.observe(row);
    return entry;
  }

  update(entry, job, runs) {
    const { cells } = entry;
    const zone = zoneOf(job);
    if (!entry.job || entry.job.command !== job.command) cells.name.lastChild.textContent = job.command;
    if (!entry.job || entry.job.schedule !== job.schedule || entry.job.explanation !== job.explanation) {
      show(cells.schedule, h("code", {}, job.schedule), h("div", { class: "explain" }, job.explanation));
    }
    show(cells.next, job.paused ? h("span", { class: "none" }, "paused") : when(job.next_fire_at, zone));
    const ended = runs.find((run) => run.duration !== null);
    cells.last.textContent = ended ? duration(ended.duration) : "";
    const state = jobState(job);
    if (cells.state.textContent !== state) show(cells.state, h("span", { class: `state state-${state}` }, state));
    entry.row.dataset.state = state;
    entry.job = job;
    entry.runs = runs;
    entry.marks = runs.map((run) => `${run.id}:${run.status}`).join(",");
    if (entry.near) this.drawStrip(entry, zone);
  }

  drawStrips(seen) {
    for (const { target, isIntersecting } of seen) {
      const entry = target.evercron;
      entry.near = isIntersecting;
      if (isIntersecting && entry.job) this.drawStrip(entry, zoneOf(entry.job));
    }
  }

  drawStrip(entry, zone) {
    if (entry.drawn === entry.marks) return;
    entry.drawn = entry.marks;
    const marks = entry.cells.strip.firstChild;
    show(marks, strip(entry.runs, zone));
    marks.dataset.drawn = String(entry.runs.length);
  }

  unmount() {
    this.near.disconnect();
  }

  filter() {
    const text = this.text.value.trim().toLowerCase();
    const [, matches] = FILTERS[this.status.value];
    let shown = 0;
    for (const entry of this.rows.values()) {
      const { job, runs } = entry;
      const hit =
        (!text || job.name.toLowerCase().includes(text) || job.command.toLowerCase().includes(text) || job.schedule.toLowerCase().includes(text)) &&
        matches(job, runs);
      entry.row.hidden = !hit;
      shown += hit;
    }
    this.count.textContent = `${shown} of ${this.rows.size} jobs`;
    const query = new URLSearchParams();
    if (text) query.set("q", this.text.value.trim());
    if (this.status.value) query.set("status", this.status.value);
    const address = query.size ? `/?${query}` : "/";
    if (location.pathname === "/" && address !== location.pathname + location.search) history.replaceState(history.state, "", address);
    this.updateBulk();
  }

  selected() {
    return [...this.rows.values()].filter((entry) => entry.pick && entry.pick.checked && !entry.row.hidden).map((entry) => entry.job.name);
  }

  selectShown() {
    for (const entry of this.rows.values()) if (!entry.row.hidden && entry.pick) entry.pick.checked = this.selectAll.checked;
    this.updateBulk();
  }

  updateBulk() {
    if (!this.bulk) return;
    const shown = [...this.rows.values()].filter((entry) => !entry.row.hidden);
    const count = shown.filter((entry) => entry.pick.checked).length;
    this.picked.textContent = `${count} selected`;
    this.bulk.hidden = count === 0;
    this.selectAll.checked = count > 0 && count === shown.length;
    this.selectAll.indeterminate = count > 0 && count < shown.length;
  }

  async everySelected(label, action) {
    const names = this.selected();
    this.bulkResult.textContent = `${label}: ${names.length} jobs…`;
    try {
      const failures = await eachLimited(names, (name) => api("POST", `/api/v1/jobs/${quoted(name)}/${action}`));
      const done = names.length - failures.length;
      this.bulkResult.textContent = `${label}: done for ${done} of ${names.length} jobs.`;
      say(failures.map(([name, why]) => `${name}: ${why}`).join("; "));
    } catch (error) {
      signedOut(error.message);
      return;
    }
    await this.refresh();
  }
}

// The last runs as marks, oldest first; each links to its run. One tab stop per strip:
// the arrow keys move between its marks. (Built with the DOM directly: a thousand strips
// are twenty thousand marks.)
function strip(runs, zone) {
  const marks = [];
  for (let index = runs.length - 1; index >= 0; index--) {
    const run = runs[index];
    const mark = document.createElement("a");
    mark.className = `mark status-${run.status}`;
    mark.href = `/runs/${run.id}`;
    mark.setAttribute("role", "listitem");
    mark.tabIndex = index === 0 ? 0 : -1;
    mark.setAttribute("aria-label", `run ${run.id} ${run.status.replace("_", " ")}`);
    mark.dataset.at = run.scheduled_at;
    mark.dataset.zone = zone;
    marks.push(mark);
  }
  return marks;
}

function stripKeys(event) {
  const mark = event.target.closest(".mark");
  if (!mark || !["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
  const marks = [...mark.parentElement.children];
  const at = marks.indexOf(mark);
  const to = { ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: marks.length - 1 }[event.key];
  const next = marks[Math.max(0, Math.min(marks.length - 1, to))];
  event.preventDefault();
  mark.tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
}

// A mark's time is written on demand: a thousand strips need twenty thousand of them.
function explainMark(event) {
  const mark = event.target.closest && event.target.closest(".mark");
  if (!mark || mark.title) return;
  mark.title = `${mark.getAttribute("aria-label")} · ${formatTime(mark.dataset.at, mark.dataset.zone)}`;
}
