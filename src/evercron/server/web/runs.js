// `/runs`: every run, newest first, filtered by job, status and scheduled time, page by
// page. Times here are UTC, named as such; the filters live in the address.

import { api, Unauthorized } from "/ui/api.js";
import { h, show } from "/ui/dom.js";
import { load, Pager, runRow, runTable, say, signedOut } from "/ui/parts.js";

const PAGE = 50;
const STATUSES = ["running", "succeeded", "failed", "timed_out", "killed", "lost", "skipped"];

export async function mount(view, params, query) {
  const page = new RunsPage(view, query);
  await page.refresh();
  return page;
}

class RunsPage {
  constructor(view, query) {
    this.view = view;
    const field = (name, label, control) => h("div", { class: "field" }, h("label", { for: `runs-${name}` }, label), control);
    this.job = h("input", { id: "runs-job", type: "search", list: "job-names", value: query.get("job") || "", autocomplete: "off" });
    this.names = h("datalist", { id: "job-names" });
    this.status = h(
      "select",
      { id: "runs-status" },
      h("option", { value: "" }, "all"),
      STATUSES.map((status) => h("option", { value: status }, status)),
    );
    this.status.value = STATUSES.includes(query.get("status")) ? query.get("status") : "";
    this.since = h("input", { id: "runs-since", type: "datetime-local", step: "1", value: local(query.get("since")) });
    this.until = h("input", { id: "runs-until", type: "datetime-local", step: "1", value: local(query.get("until")) });
    this.table = runTable("runs");
    this.pager = new Pager((before) => this.showPage(before));
    this.pager.before = query.get("before") ? Number(query.get("before")) : null;
    const form = h(
      "form",
      { id: "run-filters", class: "filters" },
      field("job", "job", this.job),
      field("status", "status", this.status),
      field("since", "scheduled since (UTC)", this.since),
      field("until", "scheduled before (UTC)", this.until),
      this.names,
    );
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("change", () => this.pager.go(null, []));
    show(view, h("h1", {}, "Runs"), form, h("div", { class: "scroll" }, this.table), this.pager.element);
  }

  filters(before) {
    const query = new URLSearchParams();
    if (this.job.value.trim()) query.set("job", this.job.value.trim());
    if (this.status.value) query.set("status", this.status.value);
    if (this.since.value) query.set("since", `${this.since.value}Z`);
    if (this.until.value) query.set("until", `${this.until.value}Z`);
    if (before !== null) query.set("before", String(before));
    return query;
  }

  async refresh() {
    await this.showPage(this.pager.before);
    const jobs = await load(this.view, () => api("GET", "/api/v1/jobs"));
    if (jobs) show(this.names, jobs.map((job) => h("option", { value: job.name })));
  }

  async showPage(before) {
    const query = this.filters(before);
    history.replaceState(history.state, "", query.size ? `/runs?${query}` : "/runs");
    query.set("limit", String(PAGE));
    let runs;
    try {
      runs = await api("GET", `/api/v1/runs?${query}`);
    } catch (error) {
      if (error instanceof Unauthorized) signedOut(error.message);
      else say(error.message); // a filter the daemon refuses: the form stays to fix it
      return;
    }
    say("");
    const rows = runs.map((run) => runRow(run, { onChange: () => this.refresh() }));
    show(this.table.tBodies[0], rows.length ? rows : h("tr", {}, h("td", { colspan: "8", class: "hint" }, "No runs.")));
    this.pager.shown(runs, runs.length === PAGE);
  }
}

// An address's UTC time as a datetime-local value (which has no zone).
function local(iso) {
  if (!iso) return "";
  const date = new Date(iso.endsWith("Z") || /[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().slice(0, 19);
}
