// `/runs/{id}`: one run - status, times, exit, CPU and memory, trigger, the node that ran
// it and its fence, its attempt chain - and its output, live while it runs (resuming
// across a hot upgrade), with follow/pause, search and a download of everything stored.

import { api, canChange, request } from "/ui/api.js";
import { button, debounce, h, show } from "/ui/dom.js";
import { HEAD_CHARS, OutputView, TAIL_CHARS } from "/ui/output.js";
import { act, badge, exitOf, load, runDuration, say } from "/ui/parts.js";
import { followOutput, OutputText } from "/ui/stream.js";
import { bytes, duration, seconds, when, zoneOf } from "/ui/time.js";

export async function mount(view, params) {
  const page = new RunPage(view, Number(params[0]));
  await page.start();
  return page;
}

class RunPage {
  constructor(view, id) {
    this.view = view;
    this.id = id;
    this.controller = new AbortController();
  }

  async start() {
    const run = await load(this.view, () => api("GET", `/api/v1/runs/${this.id}`));
    if (!run) return;
    this.job = await api("GET", `/api/v1/jobs/${encodeURIComponent(run.job)}`).catch(() => null);
    document.title = `run ${run.id} of ${run.job} · evercron`;
    this.heading = h("h1", {}, `Run ${run.id} of `, h("a", { href: `/jobs/${encodeURIComponent(run.job)}` }, run.job));
    this.status = h("span", { id: "run-status" });
    this.actions = h("div", { class: "toolbar", id: "run-actions" });
    this.details = h("dl", { id: "run-details", class: "settings" });
    this.chain = h("p", { id: "attempts" });
    this.output = new OutputView();
    this.outputState = h("span", { id: "output-state", role: "status" });
    show(
      this.view,
      h("div", { class: "title" }, this.heading, this.status),
      this.actions,
      this.details,
      this.chain,
      h("section", { class: "output-section" }, h("h2", {}, "Output ", this.outputState), this.toolbar(), this.output.pre),
    );
    this.show(run);
    await this.showChain(run);
    this.follow(run);
  }

  async refresh() {
    if (!this.run || this.run.status !== "running") return;
    const run = await api("GET", `/api/v1/runs/${this.id}`).catch(() => null);
    if (run) this.show(run);
  }

  unmount() {
    this.controller.abort();
  }

  show(run) {
    this.run = run;
    show(this.status, badge(run.status));
    show(
      this.actions,
      run.status === "running" && canChange()
        ? button("Kill", async () => {
            const killed = await act("POST", `/api/v1/runs/${run.id}/kill`);
            if (killed) say(`Killing run ${run.id} and every process it started.`, "done");
          })
        : null,
    );
    const zone = zoneOf(this.job);
    const delay = seconds(run.scheduled_at, run.started_at);
    const fields = [
      ["status", badge(run.status)],
      ["job", h("a", { href: `/jobs/${encodeURIComponent(run.job)}` }, run.job)],
      ["trigger", run.trigger],
      ["attempt", String(run.attempt)],
      ["scheduled", when(run.scheduled_at, zone)],
      ["started", when(run.started_at, zone)],
      ["finished", when(run.finished_at, zone)],
      ["start delay", delay === null ? "" : duration(Math.max(0, delay))],
      ["duration", runDuration(run)],
      [run.signal ? "signal" : "exit code", exitOf(run) || "-"],
      ["CPU", run.cpu_user === null ? "-" : `${duration(run.cpu_user)} user, ${duration(run.cpu_system)} system`],
      ["memory", run.max_rss_kb === null ? "-" : `${bytes(run.max_rss_kb * 1024)} peak resident`],
      ["process", run.pid === null ? "-" : `pid ${run.pid}`],
      ["output", `${bytes(run.output_bytes)}${run.output_truncated ? " (the middle was not kept: max_output)" : ""}`],
      run.node ? ["node", h("a", { href: "/nodes", title: "every node and its state" }, run.node)] : null,
      run.fence === null || run.fence === undefined ? null : ["fence", String(run.fence)],
      run.error ? ["error", h("span", { class: "error" }, run.error)] : null,
    ];
    show(
      this.details,
      fields.filter(Boolean).map(([name, value]) => [h("dt", {}, name), h("dd", { dataset: { field: name } }, value)]),
    );
  }

  // The attempts of one firing: the original run and its retries, each linked.
  async showChain(run) {
    const original = run.retry_of ?? run.id;
    const retries = await api("GET", `/api/v1/runs?retry_of=${original}&limit=100`).catch(() => []);
    if (!retries.length) return show(this.chain);
    const attempts = [{ id: original, attempt: 1 }, ...retries.reverse()];
    show(
      this.chain,
      "Attempts: ",
      attempts.map((attempt, index) => [
        index ? " → " : "",
        attempt.id === run.id
          ? h("strong", { "aria-current": "page" }, `#${attempt.id} (attempt ${attempt.attempt})`)
          : h("a", { href: `/runs/${attempt.id}` }, `#${attempt.id} (attempt ${attempt.attempt})`),
      ]),
    );
  }

  toolbar() {
    const followButton = h("button", { type: "button", id: "follow", "aria-pressed": "true" }, "Follow");
    followButton.addEventListener("click", () => this.output.setFollow(!this.output.follow));
    this.output.onFollow = (on) => followButton.setAttribute("aria-pressed", String(on));
    const count = h("span", { id: "search-count", class: "hint", role: "status" });
    const search = h("input", { id: "output-search", type: "search", placeholder: "search the output", "aria-label": "search the output" });
    this.output.onMatches = (at, total) => (count.textContent = search.value ? `${at} of ${total}` : "");
    search.addEventListener("input", debounce(() => this.output.search(search.value), 200));
    search.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      this.output.step(event.shiftKey ? -1 : 1);
    });
    return h(
      "div",
      { class: "toolbar output-tools" },
      followButton,
      search,
      button("Previous", () => this.output.step(-1), { "aria-label": "previous match" }),
      button("Next", () => this.output.step(1), { "aria-label": "next match" }),
      count,
      button("Download", () => this.download(), { id: "download" }),
      h("span", { class: "legend" }, h("span", { class: "stdout" }, "stdout"), " ", h("span", { class: "stderr" }, "stderr")),
    );
  }

  // Live while it runs; for a large finished output its head, then its tail.
  async follow(run) {
    const { signal } = this.controller;
    const big = run.status !== "running" && run.output_bytes > HEAD_CHARS + TAIL_CHARS;
    this.outputState.textContent = run.status === "running" ? "live" : "";
    const text = new OutputText();
    let outcome;
    if (big) {
      // Stop reading once the page holds the head; then read the tail only.
      const head = new AbortController();
      signal.addEventListener("abort", () => head.abort());
      let cut = false;
      outcome = await followOutput(run.id, {
        signal: head.signal,
        onEvent: (event) => {
          this.take(event, text);
          if (!this.output.headFull) return undefined;
          cut = true;
          head.abort();
          return "stop";
        },
      });
      if (cut && !signal.aborted) {
        this.output.gap(`The middle of this ${bytes(run.output_bytes)} output is not shown here (the page keeps its first and last MiB). `);
        const tail = new OutputText();
        outcome = await followOutput(run.id, { tail: TAIL_CHARS, signal, onEvent: (event) => this.take(event, tail) });
      }
    } else {
      outcome = await followOutput(run.id, { signal, onEvent: (event) => this.take(event, text) });
    }
    if (outcome !== "end" && outcome !== "aborted") this.output.note(`cannot read the output: ${outcome}`);
  }

  take(event, text) {
    const { kind, data } = event;
    if (kind === "stdout" || kind === "stderr") {
      this.output.write(kind, text.decode(kind, data.text));
    } else if (kind === "truncated") {
      for (const [stream, rest] of Object.entries(text.flush())) this.output.write(stream, rest);
      this.output.note(`[… ${bytes(data.dropped)} not kept here: the job's max_output …]`);
    } else if (kind === "end") {
      for (const [stream, rest] of Object.entries(text.flush())) this.output.write(stream, rest);
      this.outputState.textContent = `ended: ${data.status.replace("_", " ")}`;
      this.outputState.dataset.status = data.status;
      api("GET", `/api/v1/runs/${this.id}`)
        .then((run) => this.show(run))
        .catch(() => {});
    }
    return undefined;
  }

  async download() {
    try {
      const response = await request(`/api/v1/runs/${this.id}/output?download=1`);
      const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const link = h("a", { href: URL.createObjectURL(await response.blob()), download: name ? name[1] : `run-${this.id}.log` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    } catch (error) {
      say(error.message);
    }
  }
}
