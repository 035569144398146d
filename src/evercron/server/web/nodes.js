// `/nodes`: every node sharing the store - name, tags, state, heartbeat, version, pid and
// its running runs (each linked) - with drain and undrain, and the job definitions that
// nodes' config files disagree on; refreshed live while shown. A daemon on SQLite is the
// only node there is: it shows itself and says what several nodes need. Rows whose node
// did not change are kept as they are, so a refresh leaves the keyboard's focus alone.

import { api, canChange, Unauthorized } from "/ui/api.js";
import { button, h, placeRows, show } from "/ui/dom.js";
import { act, say, signedOut } from "/ui/parts.js";
import { when } from "/ui/time.js";

const COLUMNS = ["node", "state", "tags", "heartbeat", "version", "pid", "running", ""];
// Running runs linked in a row; more are counted (they are all in /runs).
const RUNS_SHOWN = 20;
const STATES = {
  alive: "renews its lease and claims firings",
  draining: "claims nothing new while its running commands finish (undrain to resume)",
  expired: "stopped renewing its lease: its running runs are marked lost",
  left: "stopped gracefully after its runs finished",
};
const README_SECTION = "Several nodes on one PostgreSQL";

export async function mount(view) {
  const page = new NodesPage(view);
  await page.refresh();
  return page;
}

class NodesPage {
  constructor(view) {
    this.rows = new Map(); // node name -> {key, row}: the row and the JSON it shows
    this.asked = 0; // the latest request: an older answer arriving late is dropped
    this.store = h("p", { id: "nodes-store", class: "hint" });
    this.note = h("div", { id: "nodes-note", class: "hint", hidden: true });
    this.tbody = h("tbody");
    this.table = h(
      "table",
      { id: "nodes", class: "table nodes" },
      h("thead", {}, h("tr", {}, COLUMNS.map((name) => h("th", { scope: "col" }, name)))),
      this.tbody,
    );
    this.disagreements = h("section", { id: "disagreements", hidden: true });
    show(view, h("h1", {}, "Nodes"), this.store, h("div", { class: "scroll" }, this.table), this.note, this.disagreements);
  }

  async refresh() {
    const ticket = ++this.asked;
    let status; // it holds the nodes and the disagreements: one request, one moment
    try {
      status = await api("GET", "/api/v1/status");
    } catch (error) {
      if (error instanceof Unauthorized) signedOut(error.message);
      else say(error.message);
      return;
    }
    if (ticket !== this.asked) return;
    this.showStore(status);
    this.showNodes(status.nodes, status.node);
    this.showDisagreements(status.disagreements);
  }

  showStore(status) {
    const sqlite = status.store.startsWith("sqlite ");
    this.note.hidden = !sqlite;
    if (sqlite) {
      const path = status.store.slice("sqlite ".length);
      show(this.store, "This daemon keeps its store in SQLite (", h("code", {}, path), "), so it is the only node there is.");
      if (!this.note.childElementCount) show(this.note, ...severalNodes());
      return;
    }
    const live = status.nodes.filter((node) => node.state === "alive" || node.state === "draining").length;
    show(this.store, `${live} of ${status.nodes.length} nodes live on `, h("code", {}, status.store), `; this page comes from node ${status.node}.`);
  }

  showNodes(nodes, here) {
    if (!nodes.length) {
      this.rows.clear();
      return show(this.tbody, h("tr", {}, h("td", { colspan: String(COLUMNS.length), class: "hint" }, "No node has joined yet.")));
    }
    const rows = nodes.map((node) => this.rowOf(node, here));
    this.rows = new Map(nodes.map((node, index) => [node.name, { key: keyOf(node, here), row: rows[index] }]));
    placeRows(this.tbody, rows);
    // The heartbeat moves on every renewal: its cell alone is redrawn (it holds no control).
    nodes.forEach((node, index) => show(rows[index].querySelector("td.heartbeat"), when(node.heartbeat_at)));
  }

  // The row shown for this node: the same element while it has not changed.
  rowOf(node, here) {
    const kept = this.rows.get(node.name);
    if (kept && kept.key === keyOf(node, here)) return kept.row;
    return this.nodeRow(node, here);
  }

  nodeRow(node, here) {
    const tags = node.tags.length ? node.tags.map((tag) => [h("code", { class: "tag" }, tag), " "]) : h("span", { class: "none" }, "-");
    const cells = [
      h("td", { "data-label": "node", class: "name" }, node.name, node.name === here ? h("span", { class: "hint" }, " (this node)") : null),
      h("td", { "data-label": "state" }, h("span", { class: `state node-${node.state}`, title: STATES[node.state] || "" }, node.state)),
      h("td", { "data-label": "tags" }, tags),
      h("td", { "data-label": "heartbeat", class: "heartbeat" }),
      h("td", { "data-label": "version" }, node.version),
      h("td", { "data-label": "pid" }, String(node.pid)),
      h("td", { "data-label": "running", class: "running" }, runningRuns(node)),
      h("td", { class: "actions" }, canChange() ? this.action(node) : null),
    ];
    return h("tr", { dataset: { node: node.name, state: node.state } }, cells);
  }

  // Drain a node that claims, undrain a draining one; a node gone (expired, left) has none.
  action(node) {
    const drain = node.state === "alive";
    if (!drain && node.state !== "draining") return null;
    const verb = drain ? "drain" : "undrain";
    return button(
      drain ? "Drain" : "Undrain",
      async () => {
        const changed = await act("POST", `/api/v1/nodes/${encodeURIComponent(node.name)}/${verb}`);
        if (!changed) return;
        say(
          drain
            ? `Node ${node.name} is draining: it claims nothing new while its running commands finish.`
            : `Node ${node.name} claims firings again.`,
          "done",
        );
        await this.refresh();
        // The button pressed is gone (its row changed): keep the focus on the row's new one.
        const kept = this.rows.get(node.name);
        const next = kept && kept.row.querySelector("td.actions button");
        if (next) next.focus();
      },
      { "aria-label": `${verb} node ${node.name}` },
    );
  }

  showDisagreements(disagreements) {
    this.disagreements.hidden = !disagreements.length;
    if (!disagreements.length) return show(this.disagreements);
    show(
      this.disagreements,
      h("h2", {}, "Definitions that disagree"),
      h(
        "p",
        { class: "hint" },
        "These nodes' config files define a job otherwise than the definition in force (the one applied last wins). ",
        h("code", {}, "evercron apply FILE..."),
        " on a node makes its files the definition.",
      ),
      h(
        "ul",
        { id: "disagreement-list" },
        disagreements.map((item) =>
          h(
            "li",
            { dataset: { job: item.job, node: item.node } },
            `node ${item.node}'s files define job `,
            h("a", { href: `/jobs/${encodeURIComponent(item.job)}` }, item.job),
            " otherwise: ",
            item.applied_by ? `node ${item.applied_by}'s definition, applied last, is in force.` : "it is not stored.",
          ),
        ),
      ),
    );
  }
}

// What a row shows, but its heartbeat (redrawn on its own).
function keyOf(node, here) {
  return JSON.stringify([{ ...node, heartbeat_at: null }, node.name === here, canChange()]);
}

function runningRuns(node) {
  if (!node.running.length) return h("span", { class: "none" }, "-");
  const shown = node.running.slice(0, RUNS_SHOWN).map((id) => [h("a", { href: `/runs/${id}` }, `#${id}`), " "]);
  const more = node.running.length - RUNS_SHOWN;
  return [
    shown,
    more > 0 ? h("a", { href: "/runs?status=running" }, `and ${more} more`) : null,
    node.max_running ? h("span", { class: "hint" }, ` (at most ${node.max_running})`) : null,
  ];
}

// What several nodes take: the README's section says the rest.
function severalNodes() {
  return [
    h("p", {}, "Several nodes need PostgreSQL: they share one database, each node started with it, for example:"),
    h("pre", { class: "example" }, "evercron serve --database-url postgresql://evercron@db:5432/evercron --node-name worker-1"),
    h(
      "p",
      {},
      h("code", {}, "evercron migrate-store --to postgresql://..."),
      ` moves this node's jobs and history there. The README's section "${README_SECTION}" says how.`,
    ),
  ];
}
