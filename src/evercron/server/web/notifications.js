// `/notifications`: the recent deliveries of notification events to their channels,
// newest first - event, channel, job, run, state, attempts, the receiver's answer or last
// error, and times - filtered by state and channel (kept in the address) and refreshed
// live while shown. Rows whose delivery did not change are kept as they are, so a refresh
// leaves the keyboard's focus where it was.

import { api, Unauthorized } from "/ui/api.js";
import { h, placeRows, show } from "/ui/dom.js";
import { say, signedOut } from "/ui/parts.js";
import { relative, when } from "/ui/time.js";

const LIMIT = 100;
const STATES = ["pending", "sent", "failed", "suppressed"];
const COLUMNS = ["event", "channel", "job", "run", "state", "attempts", "answer", "last error", "event at", "sent", "next try"];

export async function mount(view, params, query) {
  const page = new NotificationsPage(view, query);
  await page.refresh();
  return page;
}

class NotificationsPage {
  constructor(view, query) {
    this.view = view;
    this.rows = new Map(); // delivery id -> {key, row}: the row and the JSON it shows
    this.channels = new Set(); // every channel name seen, for the channel filter's list
    this.asked = 0; // the latest request: an older answer arriving late is dropped
    const field = (name, label, control) => h("div", { class: "field" }, h("label", { for: `notifications-${name}` }, label), control);
    this.state = h(
      "select",
      { id: "notifications-state" },
      h("option", { value: "" }, "all"),
      STATES.map((state) => h("option", { value: state }, state)),
    );
    this.state.value = STATES.includes(query.get("state")) ? query.get("state") : "";
    this.channel = h("input", {
      id: "notifications-channel",
      type: "search",
      list: "channel-names",
      value: query.get("channel") || "",
      autocomplete: "off",
      maxlength: "128",
      placeholder: "every channel",
    });
    this.names = h("datalist", { id: "channel-names" });
    const form = h(
      "form",
      { id: "notification-filters", class: "filters" },
      field("state", "state", this.state),
      field("channel", "channel", this.channel),
      this.names,
    );
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("change", () => this.refresh());
    this.tbody = h("tbody");
    this.table = h(
      "table",
      { id: "notifications", class: "table notifications" },
      h("thead", {}, h("tr", {}, COLUMNS.map((name) => h("th", { scope: "col" }, name)))),
      this.tbody,
    );
    this.note = h("div", { id: "notifications-note", class: "hint" });
    show(view, h("h1", {}, "Notifications"), form, h("div", { class: "scroll" }, this.table), this.note);
  }

  filters() {
    const query = new URLSearchParams();
    if (this.state.value) query.set("state", this.state.value);
    if (this.channel.value.trim()) query.set("channel", this.channel.value.trim());
    return query;
  }

  async refresh() {
    const query = this.filters();
    history.replaceState(history.state, "", query.size ? `/notifications?${query}` : "/notifications");
    query.set("limit", String(LIMIT));
    const ticket = ++this.asked;
    let deliveries;
    try {
      deliveries = await api("GET", `/api/v1/notifications?${query}`);
    } catch (error) {
      if (error instanceof Unauthorized) signedOut(error.message);
      else say(error.message); // a filter the daemon refuses: the form stays to fix it
      return;
    }
    if (ticket !== this.asked) return;
    say("");
    this.showDeliveries(deliveries, query.has("state") || query.has("channel"));
  }

  showDeliveries(deliveries, filtered) {
    const known = this.channels.size;
    for (const delivery of deliveries) this.channels.add(delivery.channel);
    if (this.channels.size !== known) {
      show(this.names, [...this.channels].sort().map((name) => h("option", { value: name })));
    }
    if (!deliveries.length) {
      this.rows.clear();
      show(this.tbody);
      this.table.hidden = true;
      return show(this.note, ...(filtered ? ["No deliveries match these filters."] : howToConfigure()));
    }
    this.table.hidden = false;
    const rows = deliveries.map((delivery) => this.rowOf(delivery));
    this.rows = new Map(deliveries.map((delivery, index) => [delivery.id, { key: JSON.stringify(delivery), row: rows[index] }]));
    placeRows(this.tbody, rows);
    for (const time of this.tbody.querySelectorAll(".when time")) {
      time.nextElementSibling.textContent = relative(time.getAttribute("datetime"));
    }
    show(this.note, deliveries.length === LIMIT ? `The ${LIMIT} most recent deliveries.` : "");
  }

  // The row shown for this delivery: the same element while it has not changed.
  rowOf(delivery) {
    const kept = this.rows.get(delivery.id);
    if (kept && kept.key === JSON.stringify(delivery)) return kept.row;
    return deliveryRow(delivery);
  }
}

function deliveryRow(delivery) {
  const channelLink = `/notifications?${new URLSearchParams({ channel: delivery.channel })}`;
  const cells = [
    h("td", { "data-label": "event" }, delivery.event, delivery.summary ? h("span", { class: "hint" }, " (hour's summary)") : null),
    h("td", { "data-label": "channel", class: "channel" }, h("a", { href: channelLink, title: `only ${delivery.channel}` }, delivery.channel)),
    h("td", { "data-label": "job" }, h("a", { href: `/jobs/${encodeURIComponent(delivery.job)}` }, delivery.job)),
    h("td", { "data-label": "run" }, h("a", { href: `/runs/${delivery.run}` }, `#${delivery.run}`)),
    h("td", { "data-label": "state" }, stateOf(delivery)),
    h("td", { "data-label": "attempts" }, String(delivery.attempts)),
    h("td", { "data-label": "answer" }, delivery.outcome || ""),
    h("td", { "data-label": "last error", class: "last-error" }, delivery.last_error || ""),
    h("td", { "data-label": "event at" }, when(delivery.created_at)),
    h("td", { "data-label": "sent" }, delivery.sent_at ? when(delivery.sent_at) : ""),
    h("td", { "data-label": "next try" }, delivery.next_attempt_at ? when(delivery.next_attempt_at) : ""),
  ];
  return h("tr", { dataset: { delivery: String(delivery.id), state: delivery.state, channel: delivery.channel } }, cells);
}

function stateOf(delivery) {
  const retrying = delivery.state === "pending" && delivery.attempts > 0;
  return [
    h("span", { class: `state delivery-${delivery.state}` }, delivery.state),
    retrying ? h("span", { class: "hint" }, " (retrying)") : null,
  ];
}

// The empty page: how a channel is made, since no delivery exists before there is one.
function howToConfigure() {
  return [
    h("strong", {}, "No notifications yet."),
    " Deliveries show here once a channel sends one. A channel is a ",
    h("code", {}, "[[notify]]"),
    " table in evercron.toml, for example:",
    h("pre", { class: "example" }, '[[notify]]\nname = "ops"\nurl = "https://example.com/hook"'),
    "Its ",
    h("code", {}, "url"),
    " is a webhook (a Slack one too) or ",
    h("code", {}, "mailto:ADDRESS"),
    " with an ",
    h("code", {}, "[smtp]"),
    " table; ",
    h("code", {}, "on"),
    " picks the events (by default failed, recovered, lost and missed). Then ",
    h("code", {}, "evercron upgrade"),
    " loads it and ",
    h("code", {}, "evercron notify test ops"),
    " sends a test. Every key is described in docs/CONFIGURATION.md.",
  ];
}
