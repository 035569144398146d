// The form that adds a job or edits one made through the API. Its fields are labelled
// with the setting names; as the schedule is typed, the daemon's engine reads it
// (GET /api/v1/schedule/preview): its error, or its explanation and next fire times.

import { api, ApiError, quoted, Unauthorized } from "/ui/api.js";
import { debounce, h, show } from "/ui/dom.js";
import { signedOut } from "/ui/parts.js";
import { formatTime, relative } from "/ui/time.js";

const NUMBER = /^\d+(\.\d+)?$/;

// [setting, kind, hint]; kind: text, area, duration, size, integer, choice:a|b, flag, env, limits
const FIELDS = [
  ["schedule", "text", "cron expression: 5, 6 or 7 fields, or @daily, @every 90s..."],
  ["command", "area", "run by the shell"],
  ["timezone", "text", "IANA zone, e.g. Europe/Berlin (empty: the daemon's)"],
  ["timeout", "duration", "e.g. 90, 1.5s, 2m, 1h30m (empty: none)"],
  ["concurrency", "choice:allow|forbid|replace", "while a run of this job is still running"],
  ["misfire", "choice:skip|run-once|run-all", "firings missed while the daemon could not run them"],
  ["misfire_grace", "duration", "how late a firing may still start (default 60s)"],
  ["jitter", "duration", "random delay up to this"],
  ["retries", "integer", "0-100"],
  ["retry_backoff", "duration", "before the first retry, doubling each time"],
  ["env", "env", "one NAME=value per line"],
  ["cwd", "text", "working directory"],
  ["shell", "text", "default /bin/sh"],
  ["umask", "text", 'octal, e.g. "022"'],
  ["nice", "integer", "-20 to 19"],
  ["limits", "limits", "one limit=value per line, e.g. nofile=1024"],
  ["kill_grace", "duration", "between SIGTERM and SIGKILL (default 10s)"],
  ["kill_mode", "choice:group|main", "what a kill ends"],
  ["max_output", "size", "kept per run, e.g. 1MiB (the middle of more is dropped)"],
  ["log_output", "flag", "also write the output to the daemon's log"],
  ["enabled", "flag", "scheduled (off: runs only when asked)"],
  ["description", "area", ""],
];

let zoneList = null;

export function jobForm({ job = null, onSaved }) {
  const inputs = new Map();
  const errors = new Map();
  const fields = job ? FIELDS : [["name", "text", "letters, digits, . _ -"], ...FIELDS];
  const rows = fields.map(([name, kind, hint]) => {
    const input = control(name, kind, job);
    inputs.set(name, { input, kind });
    const error = h("span", { class: "field-error", id: `error-${name}`, role: "alert" });
    errors.set(name, error);
    input.setAttribute("aria-describedby", `hint-${name} error-${name}`);
    const label = h("label", { for: input.id }, name);
    const text = h("span", { class: "hint", id: `hint-${name}` }, hint);
    return h("div", { class: `field field-${kind.split(":")[0]}` }, label, input, text, error);
  });
  const preview = h("div", { id: "schedule-preview", class: "preview", "aria-live": "polite" });
  const message = h("p", { class: "error form-error", role: "alert" });
  const submit = h("button", { type: "submit" }, job ? "Save" : "Add job");
  const form = h("form", { class: "job-form", id: job ? "edit-form" : "add-form", novalidate: true }, rows, message, submit);
  rows[job ? 0 : 1].after(preview); // under the schedule
  const updatePreview = previewer(inputs, preview);
  for (const name of ["schedule", "timezone"]) inputs.get(name).input.addEventListener("input", updatePreview);
  if (job) updatePreview();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const error of errors.values()) error.textContent = "";
    for (const { input } of inputs.values()) input.removeAttribute("aria-invalid");
    message.textContent = "";
    let body;
    try {
      body = values(inputs, job === null);
    } catch (problem) {
      return mark(problem.message);
    }
    submit.disabled = true;
    try {
      const saved = job ? await api("PATCH", `/api/v1/jobs/${quoted(job.name)}`, body) : await api("POST", "/api/v1/jobs", body);
      if (!job) form.reset();
      await onSaved(saved);
    } catch (error) {
      if (error instanceof Unauthorized) signedOut(error.message);
      else mark(error.message);
    } finally {
      submit.disabled = false;
    }
  });

  // The daemon names the field of each problem ("schedule: hour field ..."): show each
  // under its field, the rest above the button.
  function mark(text) {
    const general = [];
    let first = null;
    for (const problem of text.split("; ")) {
      const name = /^([a-z_]+)(?=[.:])/.exec(problem)?.[1];
      const field = inputs.get(name);
      if (field) {
        errors.get(name).textContent = problem;
        field.input.setAttribute("aria-invalid", "true");
        first = first || field.input;
      } else general.push(problem);
    }
    message.textContent = general.join("; ");
    if (first) first.focus();
  }
  return form;
}

function control(name, kind, job) {
  const id = `field-${name}`;
  const current = job ? job[name] : null;
  if (kind.startsWith("choice:")) {
    const choices = kind.slice(7).split("|");
    const select = h("select", { id, name }, h("option", { value: "" }, "(default)"), choices.map((c) => h("option", { value: c }, c)));
    select.value = current || "";
    return select;
  }
  if (kind === "flag") return h("input", { id, name, type: "checkbox", checked: job ? Boolean(current) : name === "enabled" });
  if (kind === "area" || kind === "env" || kind === "limits") {
    const area = h("textarea", { id, name, rows: kind === "area" ? 2 : 3, spellcheck: "false" });
    area.value = kind === "env" || kind === "limits" ? pairs(current) : current || "";
    return area;
  }
  const input = h("input", { id, name, type: "text", autocomplete: "off", spellcheck: "false" });
  input.value = current === null || current === undefined ? "" : String(current);
  if (name === "timezone") input.setAttribute("list", zones());
  if (kind === "integer") input.inputMode = "numeric";
  return input;
}

function pairs(mapping) {
  return Object.entries(mapping || {})
    .map(([key, value]) => `${key}=${value}`)
    .join("\n");
}

function zones() {
  if (!zoneList) {
    zoneList = h("datalist", { id: "zones" }, Intl.supportedValuesOf("timeZone").map((zone) => h("option", { value: zone })));
    document.body.append(zoneList);
  }
  return "zones";
}

// The request body. A new job leaves out what was left empty (the defaults apply); an
// edit sends every field, null where empty (back to the default).
function values(inputs, creating) {
  const body = {};
  for (const [name, { input, kind }] of inputs) {
    let value;
    if (kind === "flag") value = input.checked;
    else {
      const text = kind === "area" || name === "command" ? input.value : input.value.trim();
      if (text === "") value = null;
      else if (kind === "env") value = parsePairs(name, text, (v) => v);
      else if (kind === "limits") value = parsePairs(name, text, (v) => (NUMBER.test(v.trim()) ? Number(v) : v));
      else if ((kind === "duration" || kind === "size" || kind === "integer") && NUMBER.test(text)) value = Number(text);
      else value = text;
    }
    if (value !== null || !creating) body[name] = value;
  }
  return body;
}

function parsePairs(name, text, convert) {
  const mapping = {};
  text.split("\n").forEach((line, index) => {
    if (!line.trim()) return;
    const at = line.indexOf("=");
    if (at <= 0) throw new Error(`${name}: line ${index + 1} is not NAME=value`);
    mapping[line.slice(0, at).trim()] = convert(line.slice(at + 1));
  });
  return mapping;
}

function previewer(inputs, preview) {
  let controller = null;
  const update = async () => {
    const expression = inputs.get("schedule").input.value.trim();
    const timezone = inputs.get("timezone").input.value.trim();
    if (controller) controller.abort();
    if (!expression) return show(preview);
    controller = new AbortController();
    const query = new URLSearchParams({ expression, count: "5" });
    if (timezone) query.set("timezone", timezone);
    try {
      const answer = await api("GET", `/api/v1/schedule/preview?${query}`, null, controller.signal);
      show(preview, fireTimes(answer));
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error instanceof Unauthorized) return signedOut(error.message);
      show(preview, h("p", { class: "error preview-error" }, error instanceof ApiError ? error.message : String(error)));
    }
  };
  return debounce(update, 250);
}

// The explanation and the fire times of a preview, DST changes marked.
export function fireTimes(answer) {
  return [
    h("p", { class: "explanation" }, answer.explanation, " ", h("span", { class: "hint" }, `(${answer.timezone})`)),
    h(
      "ol",
      { class: "fire-times" },
      answer.fire_times.map((fire, index) =>
        h(
          "li",
          { dataset: { dst: String(fire.dst_change) } },
          h("time", { datetime: fire.at, title: fire.local }, formatTime(fire.at, answer.timezone)),
          " ",
          h("span", { class: "relative" }, relative(fire.at)),
          fire.dst_change
            ? h(
                "span",
                { class: "dst", title: "a daylight saving change moves the zone's UTC offset before this time" },
                index ? `DST: ${answer.fire_times[index - 1].zone} → ${fire.zone}` : `DST: now ${fire.zone}`,
              )
            : null,
        ),
      ),
    ),
  ];
}
