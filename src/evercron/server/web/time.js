// Times as the page shows them: in a named zone on a 24-hour clock ("2026-12-07 02:30 CET"),
// with a relative time beside it ("in 3 h", "3 min ago") and the exact instant on hover.

import { h } from "/ui/dom.js";
import { session } from "/ui/api.js";

const formats = new Map();
const zoneNames = new Map(); // "zone offset" -> abbreviation

function format(zone, locale, parts) {
  const key = `${zone} ${locale} ${parts}`;
  let found = formats.get(key);
  if (!found) {
    const options =
      parts === "name"
        ? { timeZone: zone, timeZoneName: "short" }
        : {
            timeZone: zone,
            hourCycle: "h23",
            year: "numeric",
            month: "2-digit",
            day: "2-digit",
            hour: "2-digit",
            minute: "2-digit",
            second: "2-digit",
          };
    found = new Intl.DateTimeFormat(locale, options);
    formats.set(key, found);
  }
  return found;
}

function knownZone(zone) {
  try {
    format(zone, "en-GB", "clock");
    return zone;
  } catch {
    return "UTC"; // a zone this browser does not know: UTC, named as such
  }
}

// The zone's abbreviation at that instant (CET, EST, UTC) where the browser knows one,
// else the zone's own name (Asia/Tokyo): never an offset alone.
function zoneName(date, zone) {
  const names = ["en-US", "en-GB"].map(
    (locale) => format(zone, locale, "name").formatToParts(date).find((p) => p.type === "timeZoneName").value,
  );
  return names.find((name) => /^[A-Z]{2,5}$/.test(name)) || zone;
}

// "2026-12-07 02:30 CET" (seconds only when there are some).
export function formatTime(iso, zone = "UTC") {
  const date = new Date(iso);
  const shown = knownZone(zone);
  const parts = {};
  for (const part of format(shown, "en-GB", "clock").formatToParts(date)) parts[part.type] = part.value;
  const seconds = parts.second === "00" ? "" : `:${parts.second}`;
  // The zone's name depends on its offset at that instant only: ask Intl once for each.
  const wall = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  const key = `${shown} ${Math.round((wall - Math.floor(date.getTime() / 1000) * 1000) / 60000)}`;
  if (!zoneNames.has(key)) zoneNames.set(key, zoneName(date, shown));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}${seconds} ${zoneNames.get(key)}`;
}

// "in 3 h", "3 min ago", "now".
export function relative(iso, now = Date.now()) {
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const size = Math.abs(seconds);
  if (size < 1) return "now";
  let text;
  if (size < 60) text = `${Math.round(size)} s`;
  else if (size < 3600) text = `${Math.round(size / 60)} min`;
  else if (size < 48 * 3600) text = `${Math.round(size / 3600)} h`;
  else text = `${Math.round(size / 86400)} d`;
  return seconds > 0 ? `in ${text}` : `${text} ago`;
}

// A time for a table cell: the time in the zone, the relative time beside it.
export function when(iso, zone = session.timezone) {
  if (!iso) return h("span", { class: "none" }, "-");
  const exact = `${formatTime(iso, zone)} (${iso})`;
  return h(
    "span",
    { class: "when" },
    h("time", { datetime: iso, title: exact }, formatTime(iso, zone)),
    " ",
    h("span", { class: "relative", title: exact }, relative(iso)),
  );
}

// The zone a job's times are shown in.
export function zoneOf(job) {
  return (job && job.timezone) || session.timezone;
}

export function seconds(from, to) {
  if (!from || !to) return null;
  return (new Date(to) - new Date(from)) / 1000;
}

// "0 s", "4 ms", "1.25 s", "5.3 s", "2 min 5 s", "1 h", "2 d 3 h".
export function duration(value) {
  if (value === null || value === undefined) return "";
  if (value === 0) return "0 s";
  if (value < 0.001) return "< 1 ms";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 10) return `${value.toFixed(2)} s`;
  if (value < 60) return `${Number(value.toFixed(1))} s`;
  const minutes = Math.floor(value / 60);
  if (minutes < 60) return two(minutes, "min", Math.floor(value % 60), "s");
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return two(hours, "h", minutes % 60, "min");
  return two(Math.floor(hours / 24), "d", hours % 24, "h");
}

function two(big, bigUnit, small, smallUnit) {
  return small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`;
}

// An axis's top value, short: "40 ms", "1.2 s", "3 min".
export function brief(value) {
  if (value < 1) return `${Number((value * 1000).toPrecision(2))} ms`;
  if (value < 60) return `${Number(value.toPrecision(2))} s`;
  return duration(value);
}

export function bytes(count) {
  if (count < 1024) return `${count} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = count / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
