// `/jobs/{name}`: one job - every setting, the next 10 fire times (DST changes marked), the
// success rate and a chart of its last 100 runs, its history page by page, the actions,
// and the edit form for jobs made through the API (config-file jobs say where they are
// defined instead).

import { api, canChange, quoted, session } from "/ui/api.js";
import { button, h, show } from "/ui/dom.js";
import { runChart } from "/ui/chart.js";
import { fireTimes, jobForm } from "/ui/jobform.js";
import { act, FAILED, jobState, load, navigate, Pager, runRow, runTable, say } from "/ui/parts.js";
import { bytes, duration, relative, when, zoneOf } from "/ui/time.js";

const PAGE = 20;
const CHARTED = 100;

export async function mount(view, params, query) {
  const page = new JobPage(view, decodeURIComponent(params[0]), query);
  await page.refresh();
  return page;
}

class JobPage {
  constructor(view, name, query) {
    this.view = view;
    this.name = name;
    this.path = `/api/v1/jobs/${quoted(name)}`;
    this.before = query.get("before") ? Number(query.get("before")) : null;
    this.built = false;
    this.editing = false;
  }

  build(job) {
    this.title = h("h1", {}, job.name);
    this.state = h("span", { id: "job-state" });
    this.actions = h("div", { class: "toolbar", id: "job-actions" });
    this.where = h("p", { id: "job-source", class: "hint" });
    this.fires = h("div", { id: "next-fires" });
    this.rate = h("p", { id: "success-rate" });
    this.chart = h("div", { id: "run-chart" });
    this.history = runTable("history", false);
    this.pager = new Pager((before) => this.showHistory(before));
    this.pager.before = this.before;
    this.settings = h("dl", { id: "settings", class: "settings" });
    this.edit = h("section", { id: "edit", hidden: true });
    show(
      this.view,
      h("div", { class: "title" }, this.title, this.state),
      this.actions,
      this.where,
      this.edit,
      h("section", {}, h("h2", {}, "Next 10 fire times"), this.fires),
      h("section", {}, h("h2", {}, `Last ${CHARTED} runs`), this.rate, this.chart),
      h("section", {}, h("h2", {}, "History"), h("div", { class: "scroll" }, this.history), this.pager.element),
      h("section", {}, h("h2", {}, "Settings"), this.settings),
    );
    this.built = true;
  }

  async refresh() {
    const data = await load(this.view, () =>
      Promise.all([api("GET", this.path), api("GET", `/api/v1/runs?job=${quoted(this.name)}&limit=${CHARTED}`)]),
    );
    if (!data) return;
    const [job, recent] = data;
    document.title = `${job.name} · evercron`;
    const scheduleChanged = !this.job || this.job.schedule !== job.schedule || this.job.timezone !== job.timezone;
    if (!this.built) this.build(job);
    this.job = job;
    show(this.state, h("span", { class: `state state-${jobState(job)}` }, jobState(job)));
    this.showActions(job);
    this.where.textContent =
      job.source === "api" ? "Made through the API." : `Defined in ${job.source}: change it there (then reload the daemon).`;
    this.showSettings(job);
    this.showRate(recent);
    show(this.chart, runChart(recent));
    if (scheduleChanged || !this.fires.firstChild) await this.showFires(job);
    else this.refreshRelative();
    if (this.pager.before === null) this.showPage(recent.slice(0, PAGE), recent.length >= PAGE);
    else if (!this.historyShown) await this.showHistory(this.pager.before);
  }

  showActions(job) {
    if (!canChange()) return show(this.actions);
    const post = (action) => async () => {
      const answer = await act("POST", `${this.path}/${action}`);
      if (answer && action === "trigger") return navigate(`/runs/${answer.id}`); // watch it live
      await this.refresh();
    };
    const fromApi = job.source === "api";
    show(
      this.actions,
      button("Run now", post("trigger")),
      job.paused ? button("Resume", post("resume")) : button("Pause", post("pause")),
      fromApi ? button(this.editing ? "Close the form" : "Edit", () => this.toggleEdit()) : null,
      fromApi ? button("Delete", () => this.remove()) : null,
    );
  }

  toggleEdit() {
    this.editing = !this.editing;
    this.edit.hidden = !this.editing;
    if (this.editing) {
      show(
        this.edit,
        h("h2", {}, "Edit"),
        jobForm({
          job: this.job,
          onSaved: async () => {
            say(`Saved ${this.name}.`, "done");
            this.toggleEdit();
            await this.refresh();
          },
        }),
      );
      this.edit.querySelector("textarea, input").focus();
    } else show(this.edit);
    this.showActions(this.job);
  }

  async remove() {
    if (!confirm(`Delete job ${this.name}? Its run history stays.`)) return;
    if ((await act("DELETE", this.path)) !== undefined) {
      say(`Deleted ${this.name}.`, "done");
      navigate("/", true);
    }
  }

  async showFires(job) {
    const query = new URLSearchParams({ expression: job.schedule, count: "10" });
    if (job.timezone) query.set("timezone", job.timezone);
    try {
      const answer = await api("GET", `/api/v1/schedule/preview?${query}`);
      show(this.fires, answer.fire_times.length ? fireTimes(answer) : h("p", { class: "hint" }, answer.explanation));
    } catch (error) {
      show(this.fires, h("p", { class: "error" }, error.message));
    }
  }

  refreshRelative() {
    for (const time of this.fires.querySelectorAll("li")) {
      const at = time.querySelector("time").getAttribute("datetime");
      time.querySelector(".relative").textContent = relative(at);
    }
  }

  showRate(runs) {
    const finished = runs.filter((run) => run.status !== "running" && run.status !== "skipped");
    if (!finished.length) return (this.rate.textContent = "No finished runs yet.");
    const good = finished.filter((run) => run.status === "succeeded").length;
    const failed = finished.filter((run) => FAILED.has(run.status)).length;
    const percent = Math.round((good / finished.length) * 1000) / 10;
    this.rate.textContent = `Success rate ${percent}%: ${good} of the last ${finished.length} finished runs succeeded, ${failed} failed.`;
  }

  async showHistory(before) {
    const query = new URLSearchParams({ job: this.name, limit: String(PAGE) });
    if (before !== null) query.set("before", String(before));
    const address = before === null ? location.pathname : `${location.pathname}?before=${before}`;
    history.replaceState(history.state, "", address);
    try {
      const runs = await api("GET", `/api/v1/runs?${query}`);
      this.historyShown = true;
      this.showPage(runs, runs.length === PAGE);
    } catch (error) {
      say(error.message);
    }
  }

  showPage(runs, full) {
    const zone = zoneOf(this.job);
    const rows = runs.map((run) => runRow(run, { zone, withJob: false, onChange: () => this.refresh() }));
    show(this.history.tBodies[0], rows.length ? rows : h("tr", {}, h("td", { colspan: "7", class: "hint" }, "No runs.")));
    this.pager.shown(runs, full);
  }

  showSettings(job) {
    const shown = {
      schedule: [h("code", {}, job.schedule), " ", h("span", { class: "hint" }, job.explanation)],
      command: h("code", { class: "command" }, job.command),
      timezone: job.timezone || `(the daemon's: ${session.timezone})`,
      timeout: job.timeout === null ? "none" : duration(job.timeout),
      concurrency: job.concurrency,
      misfire: job.misfire,
      misfire_grace: duration(job.misfire_grace),
      jitter: duration(job.jitter),
      retries: String(job.retries),
      retry_backoff: duration(job.retry_backoff),
      env: Object.keys(job.env).length
        ? h("ul", { class: "pairs" }, Object.entries(job.env).map(([name, value]) => h("li", {}, h("code", {}, name), " = ", h("code", {}, value))))
        : "(none)",
      cwd: job.cwd || "(the daemon's)",
      user: job.user || "(the daemon's)",
      group: job.group || "(the daemon's)",
      shell: job.shell,
      umask: job.umask || "(inherited)",
      nice: job.nice === null ? "(inherited)" : String(job.nice),
      limits: Object.keys(job.limits).length ? Object.entries(job.limits).map(([n, v]) => `${n}=${v}`).join(", ") : "(none)",
      kill_grace: duration(job.kill_grace),
      kill_mode: job.kill_mode,
      max_output: bytes(job.max_output),
      log_output: String(job.log_output),
      enabled: String(job.enabled),
      description: job.description || "",
      source: job.source,
      created_at: when(job.created_at, zoneOf(job)),
      updated_at: when(job.updated_at, zoneOf(job)),
    };
    show(
      this.settings,
      Object.entries(shown).map(([name, value]) => [h("dt", {}, name), h("dd", { dataset: { setting: name } }, value)]),
    );
  }
}
